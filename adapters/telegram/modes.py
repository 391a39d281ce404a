"""How Telegram reaches the bot: long polling (``run``) or a webhook route in the web process (``open_webhook``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from telegram import Bot, BotCommand, BotCommandScopeChat, Update
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application

from adapters.telegram.bot import bot_of, build_application
from bot import i18n, messages
from bot.config import Settings, SettingsError
from bot.core import Service

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE]  # edits, channel posts and the rest never reach us
FLOOD_RETRIES = 5  # 429s waited out (retry_after + 0.1 s, every request paused) before a call gives up
SERVER_ERROR_BACKOFF = (0.5, 1.5)  # Telegram's own 5xx and dropped connections: retried after these pauses
POLL_TIMEOUT = 30  # seconds a getUpdates long poll may wait
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_WEBHOOK_PATH = "/telegram"
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook accepts as secret_token


class _Pacer(AIORateLimiter):
    """PTB's flood pacing (30/s overall, 20/min per group) and RetryAfter retries, plus a short retry of
    Telegram's own hiccups: a 5xx or a dropped connection. A 400 is an answer, not a hiccup; a timeout is not
    retried either: the request may have been delivered, and a second upload would be a second document.
    Chat actions are not messages: they skip the pacing, or "sending a file…" every 4.5 s would use up most
    of a group's 20 messages a minute."""

    async def process_request(
        self, callback: Callable[..., Coroutine[Any, Any, Any]], args: Any, kwargs: dict[str, Any],
        endpoint: str, data: dict[str, Any], rate_limit_args: int | None,
    ) -> Any:
        if endpoint == "sendChatAction":
            return await callback(*args, **kwargs)
        for pause in (*SERVER_ERROR_BACKOFF, None):
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except (BadRequest, TimedOut):  # NetworkErrors to PTB, but neither is worth repeating
                raise
            except NetworkError as exc:
                if pause is None:
                    raise
                logger.warning("Telegram %s failed (%s); retrying in %.1f s", endpoint, exc.message, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")


def pacer() -> AIORateLimiter:
    """The rate limiter every Bot API call goes through."""
    return _Pacer(max_retries=FLOOD_RETRIES)


async def run(service: Service, settings: Settings, *, application: Application | None = None) -> None:
    """Long polling (``unmark run``): fetch updates until cancelled, then let running jobs finish."""
    application = application or build_application(service, settings)
    async with _running(application, settings):
        assert application.updater is not None
        await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES, timeout=POLL_TIMEOUT)
        logger.info("Telegram: polling as @%s", application.bot.username)
        try:
            await asyncio.Event().wait()
        finally:
            await application.updater.stop()  # no new updates; _running then lets the jobs finish


@contextlib.asynccontextmanager
async def open_webhook(service: Service, settings: Settings) -> AsyncIterator[Sequence[BaseRoute]]:
    """Webhook mode, for the web process: register the webhook and yield its route; on exit let jobs finish."""
    url, path, secret = webhook_settings(settings)
    application = build_application(service, settings, webhook=True)
    async with _running(application, settings):
        try:
            await application.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        except BadRequest as exc:  # e.g. "HTTPS url must be provided for webhook"
            raise SettingsError(f"TELEGRAM_WEBHOOK_URL: Telegram refused it ({exc.message})") from None
        logger.info("Telegram: webhook set for @%s", application.bot.username)

        async def receive_update(request: Request) -> Response:
            """Telegram's POST: checked against the secret, queued for the handlers, answered at once."""
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), secret.encode()):
                return Response(status_code=403)
            try:
                update = Update.de_json(await request.json(), application.bot)
            except Exception:  # not JSON, or not an update: nothing Telegram would send
                return Response(status_code=400)
            await application.update_queue.put(update)
            return Response()

        yield [Route(path, receive_update, methods=["POST"])]


@contextlib.asynccontextmanager
async def open_sender(service: Service, settings: Settings) -> AsyncIterator[Application]:
    """A worker's Telegram: the Bot API client, and the bot as the core's platform, receiving no updates."""
    application = build_application(service, settings, webhook=True)
    async with _initialized(application):
        await bot_of(application).resume()  # the core may now answer Telegram jobs through it
        yield application


def webhook_settings(settings: Settings) -> tuple[str, str, str]:
    """(the URL Telegram posts to, the route's path, the secret), or a SettingsError naming what is wrong.

    The route is the URL's path, so TELEGRAM_WEBHOOK_URL alone says where updates arrive; a bare host gets
    ``/telegram``.
    """
    if settings.telegram_bot_token is None or settings.telegram_webhook_url is None:
        raise SettingsError("TELEGRAM_WEBHOOK_URL: webhook mode needs it and TELEGRAM_BOT_TOKEN")
    secret = settings.telegram_webhook_secret
    if secret is None or not SECRET_PATTERN.fullmatch(secret.get_secret_value()):
        raise SettingsError("TELEGRAM_WEBHOOK_SECRET: webhook mode needs one: 1-256 of A-Z, a-z, 0-9, _ and -")
    url = settings.telegram_webhook_url
    path = urlsplit(url).path.rstrip("/")
    if not path:
        path = DEFAULT_WEBHOOK_PATH
        url = url.rstrip("/") + path
    return url, path, secret.get_secret_value()


@contextlib.asynccontextmanager
async def _running(application: Application, settings: Settings) -> AsyncIterator[None]:
    """Initialise (getMe checks the token), show the commands, take up the jobs the last stop left, and process
    updates; on the way out, after the caller has stopped the updates coming in, give running jobs
    UNMARK_SHUTDOWN_GRACE seconds, then shut down (what is left is finished at the next start)."""
    async with _initialized(application):
        await _show_commands(application.bot, settings)
        await bot_of(application).resume()  # before the first update, so each chat's old jobs go first
        await application.start()
        try:
            yield
        finally:
            await bot_of(application).aclose(settings.shutdown_grace)
            await application.stop()


@contextlib.asynccontextmanager
async def _initialized(application: Application) -> AsyncIterator[None]:
    """Initialise the application (getMe checks the token: a refusal is one line naming the setting), and shut it
    down however we leave."""
    try:
        await application.initialize()
    except (InvalidToken, NetworkError) as exc:
        await application.shutdown()
        raise _start_up_error(exc) from None
    try:
        yield
    finally:
        await application.shutdown()


def _start_up_error(exc: TelegramError) -> SettingsError:
    if isinstance(exc, InvalidToken):
        return SettingsError("TELEGRAM_BOT_TOKEN: Telegram refused it (check it with @BotFather)")
    return SettingsError(f"TELEGRAM_API_URL: could not reach the Bot API ({exc.message})")


async def _show_commands(bot: Bot, settings: Settings) -> None:
    """The command menu: /clean, /usage, /help for everyone, and /stats as well in each admin's own chat.

    Telegram shows each person the list for their app's language, else the one without a language: so one list
    per catalog, and the default list in English (or, with UNMARK_LANGUAGE, every list in that language).
    """
    admins = _admin_ids(settings)
    for language in (None, *_menu_languages()):
        tr = i18n.translations(language, forced=settings.language)
        public = [BotCommand(name, description) for name, description in messages.telegram_commands(tr=tr)]
        admin = [BotCommand(name, description) for name, description in messages.telegram_commands(admin=True, tr=tr)]
        try:
            await bot.set_my_commands(public, language_code=language)
        except TelegramError as exc:  # a menu is a convenience; the commands work without it
            logger.warning("could not register the command menu: %s", exc.message)
            return
        for user_id in admins:
            try:
                await bot.set_my_commands(admin, scope=BotCommandScopeChat(user_id), language_code=language)
            except TelegramError as exc:  # typically: that admin has not opened a chat with the bot yet
                logger.info("could not show /stats to admin %d: %s", user_id, exc.message)


def _menu_languages() -> list[str]:
    """Telegram's two-letter codes of the languages we have catalogs for (``zh`` for ``zh_Hans``)."""
    return sorted({i18n.platform_code(locale) for locale in i18n.available().values()} - {i18n.ENGLISH_LOCALE})


def _admin_ids(settings: Settings) -> list[int]:
    ids = []
    for entry in sorted(settings.admins):
        platform, _, user = entry.partition(":")
        if platform == "telegram" and user.lstrip("-").isdigit():
            ids.append(int(user))
    return ids
