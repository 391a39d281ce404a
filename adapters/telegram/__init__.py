"""Telegram (python-telegram-bot v22): photos, image files, albums and typed links become ImageJobs; the
cleaned image comes back as a document replying to the original.

``bot.py`` holds ``TelegramBot``, one handler per intent (``clean_photo``, ``clean_document``, ``clean_album``,
``clean_link``, ``clean_reply``, ``show_help``, ``show_usage``, ``show_stats``), wired in
``build_application``. ``replies.py`` holds ``TelegramReplies`` and the chat's one ``StatusLine``.
``modes.py`` connects: long polling (``run``, for ``unmark run``) or ``open_webhook``, the route that
``adapters.web`` mounts for ``unmark run --webhook``::

    await run(service, settings)                            # polling until cancelled
    async with open_webhook(service, settings) as routes:   # webhook set; routes checks the secret header
        ...
"""

import os

# PTB 22.2+ warns on every RetryAfter (each 429) unless time periods are opted in as timedeltas, as they
# will be in PTB 23. Nothing here reads a time period as a number, so opt in for the whole process.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from adapters.telegram.bot import TelegramBot, build_application  # noqa: E402
from adapters.telegram.modes import open_webhook, run, webhook_settings  # noqa: E402
from adapters.telegram.replies import StatusLine, TelegramReplies  # noqa: E402

__all__ = [
    "StatusLine", "TelegramBot", "TelegramReplies", "build_application", "open_webhook", "run", "webhook_settings",
]
