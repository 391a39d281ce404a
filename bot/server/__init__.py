"""`unmark serve`: a self-hosted, PicWish-compatible watermark removal API over the local engine.

    app.py      routes, envelopes, API keys and rate limits (Starlette); serve() runs it under uvicorn
    runner.py   TaskRunner: queue → fetch → worker → result; restart recovery; the hourly sweep
    tasks.py    TaskStore: tasks and their states in SQLite; PicWish's state table
    workers.py  WorkerPool: engine processes, one image each at a time, with progress and a kill switch
    storage.py  FileStore: uploads, results and their signed one-hour URLs
    openapi.py  the OpenAPI document served at /openapi.json
"""

from __future__ import annotations

from bot.server.app import ServerNotStarted, create_app, serve
from bot.server.workers import WorkerPool

__all__ = ["ServerNotStarted", "WorkerPool", "create_app", "serve"]
