"""How Slack reaches the bot: ``open_slack`` (client, checked at start), Socket Mode ``run``, HTTP ``slack_routes``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.slack.bot import SlackBot
from adapters.slack.files import DOWNLOAD_TIMEOUT
from adapters.slack.replies import STATUS_INTERVAL
from bot.config import Settings, SettingsError
from bot.core import Service

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
RATE_LIMIT_RETRIES = 3  # 429s waited out (per Retry-After) before a Web API call gives up
API_TIMEOUT = 60.0
REFUSED_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})


@contextlib.asynccontextmanager
async def open_slack(service: Service, settings: Settings, *,
                     status_interval: float = STATUS_INTERVAL) -> AsyncIterator[SlackBot]:
    """Check the bot token, open the Web API client and the downloader, take up the jobs the last stop left;
    on the way out, let running jobs finish (UNMARK_SHUTDOWN_GRACE) and leave the rest for the next start."""
    if settings.slack_bot_token is None:
        raise SettingsError("SLACK_BOT_TOKEN: not set")
    async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT)) as session,
                httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as http):
        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, session=session,
            retry_handlers=[AsyncConnectionErrorRetryHandler(),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)])
        await _check_token("SLACK_BOT_TOKEN", client.auth_test)
        bot = SlackBot(service, settings, client=client, http=http, status_interval=status_interval)
        try:
            await bot.resume()  # before the first event, so each conversation's old jobs go first
            yield bot
        finally:
            await bot.aclose(settings.shutdown_grace)


async def run(service: Service, settings: Settings) -> None:
    """Socket Mode (``unmark run`` with SLACK_APP_TOKEN): connect out to Slack and serve until cancelled."""
    if settings.slack_app_token is None:
        raise SettingsError("SLACK_APP_TOKEN: Socket Mode needs an app-level token (xapp-…)")
    app_token = settings.slack_app_token.get_secret_value()
    async with open_slack(service, settings) as bot:
        opener = AsyncWebClient(token=app_token, base_url=settings.slack_api_url)
        # Asking for the WebSocket URL ourselves turns a bad app token into one clear line; the SDK retries forever.
        opened = await _check_token("SLACK_APP_TOKEN", lambda: opener.apps_connections_open(app_token=app_token))
        handler = AsyncSocketModeHandler(bot.app, app_token, web_client=opener)
        if opened is not None:
            handler.client.wss_uri = opened["url"]
        try:
            await handler.connect_async()
            logger.info("Slack: connected in Socket Mode")
            await asyncio.Event().wait()
        finally:
            await handler.close_async()  # no new events; open_slack then lets running jobs finish


@contextlib.asynccontextmanager
async def open_webhook(service: Service, settings: Settings) -> AsyncIterator[list[BaseRoute]]:
    """Slack's part of the web process (``adapters.web``): the bot opened, its routes yielded, its jobs drained."""
    async with open_slack(service, settings) as bot:
        yield slack_routes(bot)


def slack_routes(bot: SlackBot) -> list[BaseRoute]:
    """HTTP mode: ``POST /slack/events`` for events, the shortcut and /unmark; Bolt checks every signature."""
    if bot.settings.slack_signing_secret is None:
        raise SettingsError("SLACK_SIGNING_SECRET: Slack's HTTP mode needs the app's signing secret "
                            "(or set SLACK_APP_TOKEN to use Socket Mode)")
    handler = AsyncSlackRequestHandler(bot.app)

    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    return [Route(EVENTS_PATH, slack_events, methods=["POST"])]


async def _check_token(variable: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """A refused token stops start-up with one line naming the variable; a network hiccup only warns."""
    try:
        return await call()
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in REFUSED_TOKEN_ERRORS:
            raise SettingsError(f"{variable}: Slack refused it ({error})") from None
        logger.warning("Slack answered %s at start-up; going on", error)
    except aiohttp.ClientError as exc:
        logger.warning("could not reach Slack (%s); going on", type(exc).__name__)
    return None
