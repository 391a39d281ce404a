"""Run an ASGI app on a real loopback port for the length of an ``async with``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

READY_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
GRACEFUL_SHUTDOWN = 1  # seconds given to requests still running (e.g. a fake's hang()) before they are cancelled


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", ready_timeout: float = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT
) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on `host`, port 0, in this event loop; yields its base URL."""
    config = uvicorn.Config(
        app, host=host, port=0, lifespan="off", access_log=False, log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn {host}")
    try:
        async with asyncio.timeout(ready_timeout):
            while not server.started:
                if task.done():
                    raise RuntimeError("uvicorn stopped before it started") from task.exception()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, stop_timeout)  # cancels the task if it overruns
        except (TimeoutError, asyncio.CancelledError):
            pass
