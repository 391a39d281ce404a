"""PicWishClient: create a watermark-removal task (sync=1), poll it, download the result at once.

This module is the one place where PicWish's HTTP statuses and task states become our errors
(``_raise_for_status`` and ``_raise_for_state``). The API key travels only in the ``X-API-KEY``
header of API calls: never in a URL, a log line, or the result download (which goes to a third-party
object store).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from bot import images
from bot.errors import (
    FileTooLarge,
    InvalidApiKey,
    NotAnImage,
    RemovalFailed,
    RemovalTimedOut,
    RemoverBusy,
    RemoverUnavailable,
    ResultExpired,
    UnreachableLink,
)
from bot.images import Image

logger = logging.getLogger(__name__)

TASK_PATH = "/api/tasks/visual/external/watermark-remove"
DONE = 1
PENDING_STATES = frozenset({0, 2, 3, 4})
FAILED_STATES = {
    -1: RemovalFailed,
    -2: RemoverUnavailable,  # the result could not be stored: transient on their side
    -3: UnreachableLink,
    -5: FileTooLarge,
    -7: NotAnImage,
    -8: RemovalTimedOut,
}
POLL_INTERVAL = 1.0  # PicWish's own advice
POLL_DEADLINE = 60.0  # their 30 s processing cap plus room for queueing at state 0
SYNC_TIMEOUT = 45.0  # a sync request should answer within the 30 s cap; past this we assume it dropped
REQUESTS_PER_SECOND = 2.0  # PicWish's default QPS per key
# One request per 1.1/qps seconds, never a burst: PicWish counts any one-second window, and a bucket that allows a
# burst of two would let a third request into the same window. The 10 % leaves a tenth of a second per window for
# the jitter between our turn and PicWish counting the request: with 2 %, workers on a loaded 2-core machine had
# about one request in 50 refused (docs/scaling.md).
PACING_MARGIN = 1.1


class Limiter(Protocol):
    """Waits until the next request may go: this process's own pacing, or one shared by processes."""

    async def acquire(self) -> None: ...
ATTEMPTS = 5  # one try plus four retries on 429 and 5xx
BACKOFF = 0.5  # seconds; the base of the jittered exponential back-off
MAX_RETRY_AFTER = 30.0
MAX_RESULT_BYTES = 4 * images.MAX_BYTES  # a PNG result may be larger than its JPEG source
MIME = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp"}

Progress = Callable[[int], Awaitable[None]]
TaskStarted = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Task:
    """PicWish's view of one task (``data`` of the envelope)."""

    task_id: str
    state: int
    progress: int
    file: str | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Task:
        """Parse ``data``; an async create answers with a task id only, which means 'queued'."""
        return cls(
            task_id=str(data["task_id"]),
            state=int(data.get("state", 0)),
            progress=int(data.get("progress") or 0),
            file=data.get("file") or None,
        )


class _SyncDropped(Exception):
    """The sync=1 request timed out or lost its connection; the task may exist anyway."""


class PicWishClient:
    """An async client for PicWish's watermark removal; it is itself a Remover."""

    name = "picwish"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://techhk.aoscdn.com",
        http: httpx.AsyncClient | None = None,
        poll_interval: float = POLL_INTERVAL,
        deadline: float = POLL_DEADLINE,
        sync_timeout: float = SYNC_TIMEOUT,
        requests_per_second: float | None = REQUESTS_PER_SECOND,
        limiter: Limiter | None = None,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
    ) -> None:
        self._key = api_key
        self._base = base_url.rstrip("/")
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        if limiter is None and requests_per_second:
            limiter = AsyncLimiter(1, PACING_MARGIN / requests_per_second)
        self._limiter = limiter
        self.poll_interval, self.deadline, self.sync_timeout = poll_interval, deadline, sync_timeout
        self._attempts, self._backoff = attempts, backoff

    async def __aenter__(self) -> PicWishClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_http:
            await self._http.aclose()

    async def remove(self, image: Image, progress: Progress | None = None, *,
                     on_task: TaskStarted | None = None, source_url: str | None = None) -> Image:
        """Clean one image: create with sync=1, poll while pending, download the result.

        ``source_url`` (a public link the person typed, whose bytes are ``image``) lets PicWish fetch
        the image itself instead of us uploading it; if PicWish cannot reach it we upload after all.
        """
        try:
            task = await self._create_sync(image, source_url)
        except UnreachableLink:
            if source_url is None:
                raise
            logger.info("PicWish could not fetch the link; uploading the bytes instead")
            task = await self._create_sync(image, None)
        if on_task is not None:
            await on_task(task.task_id)
        return await self._finish(task, progress)

    async def resume(self, task_id: str, progress: Progress | None = None) -> Image:
        """Pick up a task created before a restart: poll it and download its result."""
        return await self._finish(await self.get(task_id), progress)

    async def create(self, *, image: Image | None = None, url: str | None = None, sync: bool = False) -> Task:
        """POST a task with exactly one source; with ``sync`` PicWish answers when it is done."""
        if (image is None) == (url is None):
            raise ValueError("give exactly one of image or url")
        fields: dict[str, Any] = {"sync": (None, "1" if sync else "0")}
        if image is not None:
            fields["file"] = (f"image.{image.extension}", image.data, MIME[image.format])
        else:
            fields["url"] = (None, url)
        timeout = httpx.Timeout(self.sync_timeout, connect=10.0) if sync else httpx.USE_CLIENT_DEFAULT
        data = await self._call("POST", TASK_PATH, files=fields, timeout=timeout, sync=sync)
        task = Task.from_data(data)
        _raise_for_state(task)
        return task

    async def get(self, task_id: str) -> Task:
        """GET a task's current state."""
        task = Task.from_data(await self._call("GET", f"{TASK_PATH}/{task_id}"))
        _raise_for_state(task)
        return task

    async def wait(self, task: Task, progress: Progress | None = None) -> Task:
        """Poll about once a second until the task is done, failed, or our deadline passes."""
        deadline = time.monotonic() + self.deadline
        while task.state in PENDING_STATES:
            if progress is not None:
                await progress(task.progress)
            if time.monotonic() + self.poll_interval > deadline:
                raise RemovalTimedOut(f"task {task.task_id} still in state {task.state} after {self.deadline:.0f} s")
            await asyncio.sleep(self.poll_interval)
            task = await self.get(task.task_id)
        if task.state != DONE or not task.file:
            raise RemovalFailed(f"task {task.task_id} ended in state {task.state} without a file")
        return task

    async def download(self, file_url: str) -> Image:
        """Fetch a result URL (valid one hour) without our key: it points at a third-party store."""
        async for attempt in self._retrying():
            with attempt:
                data = await self._fetch_result(file_url)
        try:
            # Hashing a result of tens of MB takes tens of ms: keep it off the event loop.
            return await asyncio.to_thread(images.inspect, data)
        except NotAnImage as exc:
            raise RemovalFailed("the result is not an image") from exc

    async def _fetch_result(self, file_url: str) -> bytes:
        try:
            async with self._http.stream("GET", file_url) as response:
                if response.status_code in {401, 403, 404, 410}:
                    raise ResultExpired(f"result answered HTTP {response.status_code}")
                if response.status_code >= 500 or response.status_code == 429:
                    await response.aread()
                    _raise_for_status(response, {})
                if response.status_code != 200:
                    raise RemovalFailed(f"result answered HTTP {response.status_code}")
                # BytesIO hands its buffer over without a copy, so the result is held once, not twice.
                buffer = io.BytesIO()
                async for chunk in response.aiter_bytes():
                    buffer.write(chunk)
                    if buffer.tell() > MAX_RESULT_BYTES:
                        raise RemovalFailed("the result is larger than any image we accept")
                return buffer.getvalue()
        except httpx.TransportError as exc:
            raise RemoverUnavailable(f"result download failed: {type(exc).__name__}") from exc

    async def _create_sync(self, image: Image, source_url: str | None) -> Task:
        source: dict[str, Any] = {"url": source_url} if source_url else {"image": image}
        try:
            return await self.create(sync=True, **source)
        except _SyncDropped:
            # The first task may still be processing and be billed: this retry can cost a second credit.
            logger.warning("sync request to PicWish timed out or dropped; retrying once with sync=0")
            return await self.create(sync=False, **source)

    async def _finish(self, task: Task, progress: Progress | None) -> Image:
        task = await self.wait(task, progress)
        result = await self.download(task.file or "")
        if progress is not None:
            await progress(100)
        return result

    def _retrying(self) -> AsyncRetrying:
        """Bounded retries with jittered exponential back-off, honouring Retry-After."""
        jitter = wait_random_exponential(multiplier=self._backoff, max=8.0)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            hinted = min(getattr(error, "retry_after", None) or 0.0, MAX_RETRY_AFTER)
            return max(hinted, jitter(state))

        return AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, (RemoverBusy, RemoverUnavailable))),
            stop=stop_after_attempt(self._attempts),
            wait=wait,
            reraise=True,
        )

    async def _call(self, method: str, path: str, *, sync: bool = False, **kwargs: Any) -> dict[str, Any]:
        """One API request through the rate limiter and the retry policy; returns the envelope's data."""
        async for attempt in self._retrying():
            with attempt:
                if self._limiter is not None:
                    await self._limiter.acquire()
                try:
                    response = await self._http.request(
                        method, self._base + path, headers={"X-API-KEY": self._key}, **kwargs
                    )
                except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    if sync:
                        raise _SyncDropped() from exc
                    raise RemoverUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
                except httpx.TransportError as exc:
                    raise RemoverUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
                body = _json(response)
                _raise_for_status(response, body)
                data = body.get("data")
                if not isinstance(data, dict) or "task_id" not in data:
                    raise RemoverUnavailable(f"{method} {path}: answer without data.task_id")
                return data
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _raise_for_status(response: httpx.Response, body: dict[str, Any]) -> None:
    """Map PicWish's HTTP status (and the envelope's ``status``, which should agree) to our errors."""
    status = response.status_code
    if status == 200:
        status = int(body.get("status", 200) or 200)
    if status == 200:
        return
    message = str(body.get("message", ""))[:200]
    match status:
        case 401:
            logger.error("PicWish rejected the API key (HTTP 401): check PICWISH_API_KEY and that the service is enabled")
            raise InvalidApiKey("HTTP 401")
        case 413:
            raise FileTooLarge(None, images.MAX_BYTES)
        case 404:
            raise ResultExpired(f"HTTP 404: {message}")
        case 429:
            raise RemoverBusy("HTTP 429", retry_after=_retry_after(response))
        case _ if status >= 500:
            raise RemoverUnavailable(f"HTTP {status}: {message}")
        case _:
            logger.error("PicWish refused our request (HTTP %s): %s", status, message)
            raise RemovalFailed(f"HTTP {status}: {message}")


def _raise_for_state(task: Task) -> None:
    """A negative ``data.state`` is a terminal failure of the task."""
    if task.state >= 0:
        return
    error = FAILED_STATES.get(task.state, RemovalFailed)
    logger.info("PicWish task %s failed with state %s", task.task_id, task.state)
    if error is FileTooLarge:
        raise FileTooLarge(None, images.MAX_BYTES)
    if error is NotAnImage:
        raise NotAnImage(None)
    raise error(f"task {task.task_id} state {task.state}")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
