"""Platform adapters: each turns its platform's events into ImageJobs and implements Replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.config import Settings, SettingsError
from bot.core import Service

Runner = Callable[[Service, Settings], Awaitable[None]]


def plan(settings: Settings) -> list[Runner]:
    """The long-running adapters ``unmark run`` starts: each configured platform, else the shell."""
    if settings.telegram_mode is not None:
        raise SettingsError("TELEGRAM_BOT_TOKEN: the Telegram adapter is not part of this version yet")
    if settings.slack_mode is not None:
        raise SettingsError("SLACK_BOT_TOKEN: the Slack adapter is not part of this version yet")
    from adapters import shell

    return [shell.run]
