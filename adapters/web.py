"""The web process (``unmark run --webhook``): one Starlette app on $PORT with ``GET /healthz`` and the webhook
routes of every platform configured to be reached over HTTP.

Each such platform contributes a *web part*: an async context manager ``part(service, settings)`` that starts
what the routes need, yields the routes, and on exit lets running jobs finish. The app enters every part in
its lifespan, so the routes exist before the first request and the jobs are drained after the last one.
Adding a platform is one branch in ``web_parts``, e.g. for Slack's HTTP mode::

    if settings.slack_mode == "http":
        parts.append(slack_web_part)   # async with open_slack(...) as bot: yield slack_routes(bot)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.config import Settings, SettingsError
from bot.core import Service

HOST = "0.0.0.0"  # platforms route $PORT from outside the container
BACKLOG = 128
GRACEFUL_SHUTDOWN = 10.0  # seconds open requests get once the server stops; webhooks answer at once anyway

WebPart = Callable[[Service, Settings], AbstractAsyncContextManager[Sequence[BaseRoute]]]


def web_parts(settings: Settings) -> list[WebPart]:
    """The platforms this configuration serves over HTTP."""
    parts: list[WebPart] = []
    if settings.telegram_mode == "webhook":
        from adapters.telegram import open_webhook

        parts.append(open_webhook)
    if settings.slack_mode == "http":
        from adapters import slack

        parts.append(slack.open_webhook)
    return parts


def check(settings: Settings) -> None:
    """Refuse, with one line naming the variable, a web process with nothing to serve or a bad webhook setting."""
    if not web_parts(settings) and settings.telegram_mode is None and settings.slack_mode is None:
        raise SettingsError("TELEGRAM_WEBHOOK_URL: `unmark run --webhook` serves webhooks, and none is configured")
    if settings.telegram_mode == "webhook":
        from adapters.telegram import webhook_settings

        webhook_settings(settings)


def create_web_app(service: Service, settings: Settings) -> Starlette:
    """The Starlette app: ``GET /healthz`` now, each web part's routes once its lifespan has started it."""
    parts = web_parts(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for part in parts:
                app.router.routes.extend(await stack.enter_async_context(part(service, settings)))
            yield

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])], lifespan=lifespan)


async def healthz(request: Request) -> JSONResponse:
    """Liveness for the platform's router: the process is up and serving."""
    return JSONResponse({"status": "ok"})


async def run(service: Service, settings: Settings) -> None:
    """Serve the app on $PORT until cancelled: stop taking requests first, then let the parts drain their jobs."""
    app = create_web_app(service, settings)
    # Listening before the parts start means an update Telegram sends the moment its webhook is set waits in
    # the backlog instead of being refused; and a part that fails (a refused token) stops start-up in one line.
    with _listen(settings.port) as sock:
        async with app.router.lifespan_context(app):
            server = _Server(uvicorn.Config(
                app, lifespan="off", access_log=False, log_config=None, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
            ))
            serving = asyncio.create_task(server.serve([sock]), name="web server")
            try:
                await asyncio.shield(serving)
            except asyncio.CancelledError:
                server.should_exit = True
                await serving
                raise


def _listen(port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is one line naming PORT (uvicorn would exit)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise SettingsError(f"PORT: cannot listen on {port} ({exc.strerror})") from None
    sock.listen(BACKLOG)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handlers: `unmark run` owns SIGINT and SIGTERM and cancels ``run``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
