"""Slack (slack-bolt, async): events, the shortcut and /unmark become ImageJobs; answers go back where they came from.

Ways in, one listener each on ``SlackBot`` (``bot.py``): a direct message with images, a channel message that
mentions the bot, the "Remove watermark" message shortcut, ``/unmark <link | usage | help>`` and the App Home
tab. Listeners ack and start a task; ``Service.handle`` does the work; ``SlackReplies`` (``replies.py``) answers
in the thread; ``SlackFiles`` (``files.py``) downloads with the bot token. ``modes.py`` connects: Socket Mode
(``run``) with SLACK_APP_TOKEN, else ``open_webhook`` (``adapters.web``'s part) serves ``POST /slack/events``::

    async with open_slack(service, settings) as bot:      # checks the token; drains jobs on exit
        app = Starlette(routes=[*slack_routes(bot), ...])   # what open_webhook yields
"""

from adapters.slack.bot import COMMAND, SHORTCUT_ID, SlackBot, build_app
from adapters.slack.modes import EVENTS_PATH, open_slack, open_webhook, run, slack_routes
from adapters.slack.replies import Place, SlackReplies

__all__ = [
    "COMMAND", "EVENTS_PATH", "SHORTCUT_ID", "Place", "SlackBot", "SlackReplies", "build_app", "open_slack",
    "open_webhook", "run", "slack_routes",
]
