"""The HTTP face of `unmark serve`: PicWish's routes, envelopes, keys and rate limits over the TaskRunner.

Where shared/picwish-api.md is silent, the server answers as the PicWish fake in tests/fakes does
(message texts, ``state_detail`` texts, which envelopes carry ``message``), so one client suite passes
against both (tests/test_contract.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from http import HTTPStatus
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from bot.config import Settings, SettingsError
from bot.images import MAX_BYTES
from bot.server.openapi import OPENAPI
from bot.server.runner import TaskRunner
from bot.server.storage import MEDIA_TYPES, RESULTS_PATH, FileStore
from bot.server.tasks import DONE, STATE_DETAILS, TASKS_PATH, TaskRecord, TaskStore
from bot.server.workers import WorkerPool

logger = logging.getLogger(__name__)

MESSAGES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    413: "File too large", 429: "Request frequency exceeds the QPS limit", 500: "Internal server error",
}
MULTIPART_SLACK = 1024 * 1024  # boundaries, part headers and the small fields around a file of MAX_BYTES
MAX_JSON_BODY = 64 * 1024
SYNC_GRACE = 1.0  # seconds a sync=1 request waits past the cap, so a task stopped at the cap reports -8
FETCH_TIMEOUT = httpx.Timeout(10.0)  # PicWish's 10 s download limit for a source URL (S4)


class KeyRing:
    """The accepted API keys; an offered key is compared with each in constant time, without early exit."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)

    def owner(self, offered: str | None) -> str | None:
        """The key's fingerprint (who owns its tasks), or None if it is not one of ours."""
        digest = hashlib.sha256((offered or "").encode()).digest()
        found = None
        for known in self._digests:  # every key is compared, so the time says nothing about which matched
            if hmac.compare_digest(digest, known):
                found = known
        return found.hex() if found is not None and offered else None


class RateLimiter:
    """At most ``qps`` accepted requests per key in any sliding window (1 s for whole numbers), as PicWish counts.

    Refused requests do not count, so a client that backs off gets in (like the fake). A fractional rate
    becomes its whole part per proportionally longer window: 0.5 → 1 request per 2 s, 2.5 → 2 per 0.8 s.
    """

    def __init__(self, qps: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = max(1, int(qps))
        self._window = self._burst / qps
        self._clock = clock
        self._accepted: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        """Count one request for ``key`` if it fits in the window; False means answer 429."""
        now, seen = self._clock(), self._accepted[key]
        while seen and seen[0] <= now - self._window:
            seen.popleft()
        if len(seen) >= self._burst:
            return False
        seen.append(now)
        return True


class Api:
    """The endpoints, as bound methods over one TaskRunner, which the lifespan opens and closes."""

    def __init__(self, settings: Settings, *, pool: WorkerPool | None = None, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._pool, self._http, self._clock = pool, http, clock
        self._keys = KeyRing(key.get_secret_value() for key in settings.api_keys)
        self._limiter = RateLimiter(settings.server_qps)
        self._runner: TaskRunner | None = None

    @property
    def runner(self) -> TaskRunner:
        """The task runner; exists between the lifespan's start and end."""
        if self._runner is None:
            raise RuntimeError("the app's lifespan has not started")
        return self._runner

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Open files, the tasks database, the workers (unless given) and the runner; close them in reverse."""
        settings = self.settings
        async with contextlib.AsyncExitStack() as stack:
            files = await asyncio.to_thread(FileStore.open, settings.data_dir)
            store = await stack.enter_async_context(TaskStore.open(settings.data_dir / "tasks.sqlite3"))
            pool = self._pool or await stack.enter_async_context(WorkerPool.open(settings.workers))
            http = self._http or await stack.enter_async_context(
                httpx.AsyncClient(timeout=FETCH_TIMEOUT, headers={"User-Agent": "unmark-server"}))
            runner = TaskRunner(store, files, pool, http, processing_timeout=settings.processing_timeout,
                                allow_private_urls=settings.allow_private_urls, clock=self._clock)
            self._runner = await stack.enter_async_context(runner.running())
            try:
                yield
            finally:
                self._runner = None

    # --- endpoints -------------------------------------------------------------------------

    async def create_task(self, request: Request) -> Response:
        """POST: a task from ``file`` xor ``url`` (multipart, or JSON for ``url``); ``sync=1`` waits for it."""
        owner = self._admit(request)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            url, sync = _json_source(await _limited(request, MAX_JSON_BODY).body())
            task = await self.runner.create(owner, url=url)
        elif content_type.startswith("multipart/form-data"):
            form = await _form(_limited(request, MAX_BYTES + MULTIPART_SLACK))
            try:
                upload, url, sync = _form_source(form)
                task = await self.runner.create(owner, upload=upload.file if upload else None, url=url)
            finally:
                await form.close()
        else:
            raise HTTPException(400, "Content-Type must be multipart/form-data")
        if not sync:
            return _json({"data": {"task_id": task.task_id}, "message": "success", "status": 200})
        waited = await self.runner.wait(task.task_id, self.settings.processing_timeout + SYNC_GRACE)
        return _json({"data": self._data(waited or task, request), "message": "success", "status": 200})

    async def show_task(self, request: Request) -> Response:
        """GET: the task's state, progress and, once done, its signed result URL."""
        owner = self._admit(request)
        task = await self.runner.store.get(request.path_params["task_id"])
        if task is None or task.owner != owner or self.runner.now() >= task.expires_at:
            raise HTTPException(404, "Task not found")
        return _json({"data": self._data(task, request), "status": 200})

    async def download_result(self, request: Request) -> Response:
        """GET a result by its signed URL, without a key; refused as the object store would (XML)."""
        name = request.path_params["name"]
        expires = request.query_params.get("Expires", "")
        path = self.runner.files.result_path(name)
        if path is None:
            return _oss_error(404, "NoSuchKey", "The specified key does not exist.")
        if not self.runner.files.verify(name, expires, request.query_params.get("Signature", "")):
            return _oss_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        if self.runner.now() >= int(expires):
            return _oss_error(403, "AccessDenied", "Request has expired.")
        if not await asyncio.to_thread(path.is_file):
            return _oss_error(404, "NoSuchKey", "The specified key does not exist.")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix[1:]])

    async def health(self, request: Request) -> Response:
        """Liveness for load balancers and `unmark serve` users; no key needed."""
        return JSONResponse({"queued": self.runner.queued, "status": "ok", "workers": self.runner.workers})

    async def schema(self, request: Request) -> Response:
        """The OpenAPI document."""
        return JSONResponse(OPENAPI)

    # --- helpers ---------------------------------------------------------------------------

    def _admit(self, request: Request) -> str:
        """The caller's key fingerprint; 401 for an unknown key, 429 past its QPS."""
        owner = self._keys.owner(request.headers.get("x-api-key"))
        if owner is None:
            raise HTTPException(401, "Unauthorized: check X-API-KEY")
        if not self._limiter.allow(owner):
            raise HTTPException(429)
        return owner

    def _data(self, task: TaskRecord, request: Request) -> dict[str, Any]:
        """PicWish's ``data`` for a task: optional stamps only once they happened, ``file`` only when done."""
        data: dict[str, Any] = {
            "created_at": task.created_at, "progress": task.progress, "state": task.state,
            "state_detail": STATE_DETAILS[task.state], "task_id": task.task_id,
        }
        if task.processed_at is not None:
            data["processed_at"] = task.processed_at
        if task.completed_at is not None:
            data["completed_at"] = task.completed_at
        if task.state == DONE and task.result:
            base = self.settings.public_url or str(request.base_url)
            data["file"] = self.runner.files.signed_url(base, task.result, task.expires_at)
        return data


def create_app(settings: Settings, *, pool: WorkerPool | None = None, http: httpx.AsyncClient | None = None,
               clock: Callable[[], float] = time.time) -> Starlette:
    """The Starlette app of `unmark serve`; ``pool``, ``http`` and ``clock`` are for tests and benchmarks."""
    _require_keys(settings)
    api = Api(settings, pool=pool, http=http, clock=clock)
    app = Starlette(
        routes=[
            Route(TASKS_PATH, api.create_task, methods=["POST"]),
            Route(TASKS_PATH + "/{task_id}", api.show_task, methods=["GET"]),
            Route(RESULTS_PATH + "/{name}", api.download_result, methods=["GET"]),
            Route("/healthz", api.health, methods=["GET"]),
            Route("/openapi.json", api.schema, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=api.lifespan,
    )
    app.state.api = api
    return app


class ServerNotStarted(Exception):
    """uvicorn could not start the app (it has logged why)."""


async def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the API with uvicorn until interrupted; the workers start first, so a broken engine fails fast."""
    _require_keys(settings)  # before the workers spend a second loading the engine
    async with WorkerPool.open(settings.workers) as pool:
        # No access log: a result URL carries its signature, and stays usable for an hour.
        config = uvicorn.Config(create_app(settings, pool=pool), host=host, port=port, lifespan="on",
                                log_config=None, server_header=False, access_log=False)
        server = uvicorn.Server(config)
        announcer = asyncio.create_task(_announce(server, host, settings.workers))
        try:
            await server.serve()
        except SystemExit:  # uvicorn's way of saying it could not bind; it has logged why
            raise ServerNotStarted(f"could not listen on {host}:{port}; see the log above") from None
        finally:
            announcer.cancel()
        if not server.started:
            raise ServerNotStarted("the API did not start; see the log above")


async def _announce(server: uvicorn.Server, host: str, workers: int) -> None:
    """Log the real URL once uvicorn listens (with ``--port 0`` only the socket knows the port)."""
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    logger.info("serving the PicWish-compatible API on http://%s:%d with %d worker(s)", host, port, workers)


def _require_keys(settings: Settings) -> None:
    if not settings.api_keys:
        raise SettingsError("UNMARK_API_KEYS: set at least one key (comma-separated) to serve the API")


# --- envelopes ---------------------------------------------------------------------------------


def _json(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # PicWish's keys come out alphabetical at every level (S2, S8).
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return Response(body, status, headers, media_type="application/json")


def _envelope(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """PicWish's error body: the HTTP status repeated in ``status``, and a ``message``."""
    text = message or MESSAGES.get(status) or MESSAGES[500 if status >= 500 else 400]
    return _json({"message": text, "status": status}, status, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = None if exc.detail == HTTPStatus(status).phrase else exc.detail
    if status == 404 and message is None:
        message = f"{request.url.hostname} not found"  # the gateway's wording for an unknown path (S10)
    return _envelope(status, message, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _envelope(500)  # Starlette logs the exception itself


def _oss_error(status: int, code: str, message: str) -> Response:
    """An Aliyun OSS error document, as PicWish's result bucket answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
        f"  <RequestId>{uuid.uuid4().hex.upper()[:24]}</RequestId>\n</Error>\n"
    )
    return Response(body, status, media_type="application/xml")


# --- request bodies ----------------------------------------------------------------------------


def _limited(request: Request, limit: int) -> Request:
    """The same request, answering 413 as soon as its body (declared or streamed) passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413)
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise HTTPException(413)
        return message

    return Request(request.scope, receive)


async def _form(request: Request) -> FormData:
    """The multipart body, parsed (files spool to disk); a broken body is a 400 in PicWish's envelope."""
    try:
        return await request.form(max_files=4, max_fields=32)
    except HTTPException as exc:
        if exc.status_code == 400:  # Starlette's MultiPartException
            raise HTTPException(400, f"Malformed multipart body: {exc.detail}") from exc
        raise


def _form_source(form: FormData) -> tuple[UploadFile | None, str | None, bool]:
    """(upload, url, sync) from a multipart body; 400 unless exactly one source, 413 for a big file."""
    files, urls = form.getlist("file"), form.getlist("url")
    upload = files[0] if len(files) == 1 and files[0] != "" else None
    url = urls[0] if len(urls) == 1 and urls[0] != "" else None
    if (len(files) > 1 or len(urls) > 1 or isinstance(upload, str) or not isinstance(url, str | None)
            or (upload is None) == (url is None)):
        raise HTTPException(400, "Exactly one of file and url is required")
    sync = form.get("sync", "0")
    if sync not in ("0", "1"):
        raise HTTPException(400, "sync must be 0 or 1")
    if upload is not None and (upload.size or 0) > MAX_BYTES:
        raise HTTPException(413)
    return upload, url, sync == "1"


def _json_source(body: bytes) -> tuple[str, bool]:
    """(url, sync) from a JSON body; a file upload needs multipart."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(400, "Malformed JSON body") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "The JSON body must be an object")
    url, sync = payload.get("url"), payload.get("sync", 0)
    if not isinstance(url, str) or not url:
        raise HTTPException(400, "Exactly one of file and url is required")
    if not (type(sync) is int and sync in (0, 1)) and sync not in ("0", "1"):
        raise HTTPException(400, "sync must be 0 or 1")
    return url, sync in (1, "1")
