"""Platform adapters: each turns its platform's events into ImageJobs and implements Replies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.config import Settings, SettingsError
from bot.core import Service

Runner = Callable[[Service, Settings], Awaitable[None]]


def plan(settings: Settings, *, webhook: bool = False) -> list[Runner]:
    """The long-running adapters ``unmark run`` starts: each configured platform, else the shell.

    With ``webhook`` (``unmark run --webhook``, the Procfile's one process) it is the one web server, which
    serves /healthz on $PORT and mounts the webhook routes of every platform configured for them
    (``adapters.web``), beside the platforms that poll or hold a socket: so one process serves any setup, and
    a platform that expects a web process on $PORT gets one whichever modes are chosen.
    """
    if webhook:
        from adapters import web

        web.check(settings)
        runners: list[Runner] = [web.run]
        if settings.telegram_mode == "polling":
            from adapters import telegram

            runners.append(telegram.run)
        if settings.slack_mode == "socket":
            from adapters import slack

            runners.append(slack.run)
        return runners
    runners: list[Runner] = []
    if settings.telegram_mode == "polling":
        from adapters import telegram

        runners.append(telegram.run)
    elif settings.telegram_mode == "webhook" and settings.slack_mode is None:
        raise SettingsError("TELEGRAM_WEBHOOK_URL: set, so Telegram is served by `unmark run --webhook` "
                            "(unset it to poll with `unmark run`)")
    if settings.slack_mode is not None:
        from adapters import slack

        if settings.slack_mode == "socket":
            return [*runners, slack.run]
        if settings.slack_signing_secret is None:
            raise SettingsError("SLACK_SIGNING_SECRET: needed for Slack's HTTP mode (or set SLACK_APP_TOKEN "
                                "for Socket Mode)")
        if not runners:  # HTTP mode lives in the web process (slack.open_webhook), not in a runner of its own
            raise SettingsError("SLACK_APP_TOKEN: not set, so Slack is in HTTP mode, served by "
                                "`unmark run --webhook`")
    if runners:
        return runners
    from adapters import shell

    return [shell.run]


@contextlib.asynccontextmanager
async def open_platforms(service: Service, settings: Settings) -> AsyncIterator[list[str]]:
    """A worker's platforms (``unmark worker``): each configured chat platform, able to fetch a job's image and
    answer it, receiving nothing (the web or run process receives). Yields their names."""
    async with contextlib.AsyncExitStack() as stack:
        names: list[str] = []
        if settings.telegram_bot_token is not None:
            from adapters.telegram.modes import open_sender

            await stack.enter_async_context(open_sender(service, settings))
            names.append("telegram")
        if settings.slack_bot_token is not None:
            from adapters.slack.modes import open_slack

            await stack.enter_async_context(open_slack(service, settings))
            names.append("slack")
        if not names:
            raise SettingsError("TELEGRAM_BOT_TOKEN or SLACK_BOT_TOKEN: a worker answers chats, and no chat "
                                "platform is configured")
        yield names
