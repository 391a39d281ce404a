"""A loopback fake of PicWish's watermark-removal API (shared/picwish-api.md), as a Starlette app.

Mount it in-process with ``httpx.ASGITransport(app=fake.app)`` or on a real port with
``tests.fakes.servers.serve(fake.app)``. Nothing takes real time: each GET of a task moves it one
step along its scripted states, and the clock only moves when a test calls ``fake.advance()``.

Scripting, all on a ``FakePicWish`` instance:
- ``fake.script(0, 2, 4, -7)``: the next created task shows these states, one per view (a GET, or the
  sync=1 answer); several calls queue for successive tasks. The default is 2, 4, 1.
- ``fake.sync_returns_early = True``: sync=1 answers with the task's first state, so the client polls.
- ``fake.fail("POST", "/api/tasks", 429, times=3, retry_after=1)``: the next matching requests get an
  error envelope instead of being handled (no task is created).
- ``fake.hang("POST", "/api/tasks", 2.0)``: the next matching requests are handled (a task is still
  created) and then sleep before answering. Timeouts need ``serve()``: ASGITransport enforces none.
- ``fake.qps = None`` turns the 2 requests/s per key limit off; ``fake.advance(s)`` moves the clock.
- ``fake.requests`` is the wire traffic, ``fake.tasks`` what was created, ``fake.credits_used`` the
  tasks that succeeded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TASKS_PATH = "/api/tasks/visual/external/watermark-remove"
DEFAULT_STATES = (2, 4, 1)
PENDING_STATES = frozenset({0, 2, 3, 4})
FAILED_STATES = frozenset({-1, -2, -3, -5, -7, -8})
STATE_DETAILS = {
    1: "Complete", 0: "Queued", 2: "Preparing", 3: "Waiting", 4: "Processing",
    -1: "Failed", -2: "Upload failed", -3: "Download failed", -5: "Image too large",
    -7: "Invalid image", -8: "Processing timeout",
}
MESSAGES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    413: "File too large", 429: "Request frequency exceeds the QPS limit", 500: "Internal server error",
}
MAX_UPLOAD = 50 * 1024 * 1024  # S7: "max 50MB"
MIN_SIDE, MAX_SIDE = 20, 10_000  # S7: "20-10000px resolution"
RESULT_TTL = 3600  # S1: results are valid for 1 hour
URL_FETCH_TIMEOUT = 10.0  # S4 (scale-pro): 10 s download timeout
Handler = Callable[[Request, FormData | None], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class FilePart:
    """An uploaded file as recorded: its name and size, not its bytes."""

    filename: str | None
    size: int
    content_type: str | None


@dataclass(slots=True)
class RecordedRequest:
    """One request the fake received, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    form: dict[str, str | FilePart]
    status: int | None = None


@dataclass(slots=True)
class Task:
    """A created task: how it was made, the states it will show, and its result."""

    task_id: str
    key: str
    source: str  # "file" or "url"
    sync: bool
    created: float
    states: list[int]
    filename: str | None = None
    url: str | None = None
    cursor: int = 0  # index in `states` of the state the next view shows
    processed_at: int | None = None
    completed_at: int | None = None
    result: bytes = b""
    ext: str = ""
    hung: bool = False  # the request that created it was held by hang(): the client may never see it

    @property
    def outcome(self) -> int:
        """The state the task ends in."""
        return self.states[-1]


@dataclass(slots=True)
class _Rule:
    """A fail() or hang() instruction and how many more requests it applies to."""

    method: str
    path_startswith: str
    times: int
    status: int = 0
    retry_after: float | None = None
    seconds: float = 0.0


class FakePicWish:
    """PicWish's watermark-removal endpoints, scriptable, with a clock tests can move."""

    def __init__(self, keys: Iterable[str] = ("test-key",)) -> None:
        self.keys: set[str] = set(keys)
        self.qps: int | None = 2
        self.sync_returns_early = False
        self.max_upload = MAX_UPLOAD
        self.fetch_transport: httpx.AsyncBaseTransport | None = None  # for `url` sources, if set
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, Task] = {}
        self._offset = 0.0
        self._scripts: deque[tuple[int, ...]] = deque()
        self._fails: list[_Rule] = []
        self._hangs: list[_Rule] = []
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._secret = secrets.token_bytes(16)
        self.app = Starlette(
            routes=[
                Route(TASKS_PATH, self._wrap(self._create), methods=["POST"]),
                Route(TASKS_PATH + "/{task_id}", self._wrap(self._query), methods=["GET"]),
                Route("/results/{name}", self._wrap(self._result), methods=["GET"]),
                Route("/{rest:path}", self._wrap(self._not_found), methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    # --- scripting -------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock: real time plus whatever advance() added."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (expiry, timestamps, rate-limit window)."""
        self._offset += seconds

    def script(self, *states: int) -> None:
        """Make the next created task show these states, one per view."""
        if not states or any(s not in PENDING_STATES | FAILED_STATES | {1} for s in states):
            raise ValueError(f"not a PicWish task state sequence: {states}")
        if any(s not in PENDING_STATES for s in states[:-1]):
            raise ValueError(f"only the last state may be final: {states}")
        self._scripts.append(states)

    def fail(
        self, method: str, path_startswith: str, status: int, *, times: int = 1, retry_after: float | None = None
    ) -> None:
        """Answer the next `times` matching requests with `status` and an error envelope."""
        self._fails.append(_Rule(method.upper(), path_startswith, times, status=status, retry_after=retry_after))

    def hang(self, method: str, path_startswith: str, seconds: float, *, times: int = 1) -> None:
        """Hold the answer to the next `times` matching requests for `seconds` (after handling them)."""
        self._hangs.append(_Rule(method.upper(), path_startswith, times, seconds=seconds))

    @property
    def credits_used(self) -> int:
        """Tasks that end in success, which is what PicWish charges for, seen by the client or not."""
        return sum(t.outcome == 1 for t in self.tasks.values())

    # --- plumbing --------------------------------------------------------------------------

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Record the request, apply fail()/hang() rules, and parse multipart once for the handler."""

        async def endpoint(request: Request) -> Response:
            record = RecordedRequest(
                request.method, request.url.path, dict(request.headers), dict(request.query_params), {}
            )
            self.requests.append(record)
            if rule := _take(self._fails, request):
                headers = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after is not None else {}
                response = _envelope(rule.status, headers=headers)
            elif request.headers.get("content-type", "").startswith("multipart/form-data"):
                try:
                    async with request.form() as form:
                        record.form = {k: _recorded(v) for k, v in form.multi_items()}
                        response = await handler(request, form)
                except HTTPException as exc:  # malformed multipart: starlette's own answer is plain text
                    response = _envelope(400, f"Malformed multipart body: {exc.detail}")
            else:
                response = await handler(request, None)
            if rule := _take(self._hangs, request):
                await asyncio.sleep(rule.seconds)
            record.status = response.status_code
            return response

        return endpoint

    def _gate(self, request: Request) -> tuple[str, Response | None]:
        """Authenticate and rate-limit a task-endpoint request."""
        key = request.headers.get("x-api-key", "")
        if key not in self.keys:
            return key, _envelope(401, "Unauthorized: check X-API-KEY")
        if self.qps is not None:
            # Sliding one-second window; refused requests do not count, so a client that backs off gets in.
            window, now = self._windows[key], self.now()
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.qps:
                return key, _envelope(429)
            window.append(now)
        return key, None

    # --- endpoints -------------------------------------------------------------------------

    async def _create(self, request: Request, form: FormData | None) -> Response:
        key, refused = self._gate(request)
        if refused:
            return refused
        if form is None:
            return _envelope(400, "Content-Type must be multipart/form-data")
        upload, url, sync = form.get("file"), form.get("url") or None, form.get("sync", "0")
        if upload == "":
            upload = None
        if (upload is None) == (url is None) or isinstance(upload, str) or not isinstance(url, str | None):
            return _envelope(400, "Exactly one of file and url is required")
        if sync not in ("0", "1"):
            return _envelope(400, "sync must be 0 or 1")
        if upload is not None and (upload.size or 0) > self.max_upload:
            return _envelope(413)
        states = list(self._scripts.popleft() if self._scripts else DEFAULT_STATES)
        task = Task(
            str(uuid.uuid4()), key, "file" if upload else "url", sync == "1", self.now(), states,
            filename=upload.filename if upload else None, url=url,
        )
        self.tasks[task.task_id] = task
        task.hung = any(_matches(rule, request) for rule in self._hangs)
        data = await upload.read() if upload else await self._download(url or "")
        outcome, task.result, task.ext = -3, b"", ""
        if data is not None:
            outcome, task.result, task.ext = await asyncio.to_thread(_process, data, self.max_upload)
        if states[-1] == 1:
            states[-1] = outcome  # a real failure beats a scripted success
        if not task.sync:
            return _json({"data": {"task_id": task.task_id}, "message": "success", "status": 200})
        if not self.sync_returns_early:
            task.cursor = len(states) - 1
        return _json({"data": self._view(task, request), "message": "success", "status": 200})

    async def _query(self, request: Request, form: FormData | None) -> Response:
        _, refused = self._gate(request)
        if refused:
            return refused
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or self.now() >= task.created + RESULT_TTL:
            return _envelope(404, "Task not found")
        return _json({"data": self._view(task, request), "status": 200})

    async def _result(self, request: Request, form: FormData | None) -> Response:
        name = request.path_params["name"]
        task = self.tasks.get(name.rpartition(".")[0])
        if task is None or not task.result or name != f"{task.task_id}.{task.ext}":
            return _oss_error(404, "NoSuchKey", "The specified key does not exist.")
        expires = request.query_params.get("expires", "")
        if not hmac.compare_digest(request.query_params.get("sig", ""), self._sign(name, expires)):
            return _oss_error(403, "AccessDenied", "The request signature we calculated does not match.")
        if self.now() > int(expires):
            return _oss_error(403, "AccessDenied", "Request has expired.")
        return Response(task.result, media_type="image/jpeg" if task.ext == "jpg" else "image/png")

    async def _not_found(self, request: Request, form: FormData | None) -> Response:
        return _envelope(404, f"{request.url.hostname} not found")  # the gateway's wording (S10)

    # --- helpers ---------------------------------------------------------------------------

    def _view(self, task: Task, request: Request) -> dict[str, object]:
        """Show the task's current state to the client and move it one step on."""
        i, state = task.cursor, task.states[task.cursor]
        task.cursor = min(i + 1, len(task.states) - 1)
        now = int(self.now())
        if state not in (0, 2, 3) and task.processed_at is None:
            task.processed_at = now
        final = state not in PENDING_STATES
        if final and task.completed_at is None:
            task.completed_at = now
        progress = 100 if state == 1 else 0 if state == 0 else min(99, 100 * (i + 1) // len(task.states))
        data: dict[str, object] = {
            "created_at": int(task.created), "progress": progress, "state": state,
            "state_detail": STATE_DETAILS[state], "task_id": task.task_id,
        }
        if task.processed_at is not None:
            data["processed_at"] = task.processed_at
        if final:
            data["completed_at"] = task.completed_at
        if state == 1:
            name, expires = f"{task.task_id}.{task.ext}", str(int(task.created) + RESULT_TTL)
            base = str(request.base_url).rstrip("/")
            data["file"] = f"{base}/results/{name}?expires={expires}&sig={self._sign(name, expires)}"
        return data

    def _sign(self, name: str, expires: str) -> str:
        return hmac.new(self._secret, f"{name}:{expires}".encode(), hashlib.sha256).hexdigest()

    async def _download(self, url: str) -> bytes | None:
        """Fetch a `url` source as PicWish would; None stands for state -3."""
        try:
            async with httpx.AsyncClient(
                timeout=URL_FETCH_TIMEOUT, follow_redirects=True, transport=self.fetch_transport
            ) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return None
        return response.content if response.is_success else None


def _process(data: bytes, max_bytes: int) -> tuple[int, bytes, str]:
    """Decode, check and mirror an image; returns (state 1 or the failure state, result bytes, extension)."""
    if len(data) > max_bytes:
        return -5, b"", ""  # only reachable through `url`: uploads get a 413 first
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > MAX_SIDE:
                return -5, b"", ""
            if min(image.size) < MIN_SIDE:
                return -7, b"", ""
            fmt = image.format
            mirrored = ImageOps.mirror(image)
    except Image.DecompressionBombError:
        return -5, b"", ""
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError... for broken files: all mean -7
        return -7, b"", ""
    out = io.BytesIO()
    if fmt == "JPEG":
        mirrored.save(out, "JPEG", quality=95)
        return 1, out.getvalue(), "jpg"
    if mirrored.mode not in {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}:
        mirrored = mirrored.convert("RGBA")
    mirrored.save(out, "PNG")
    return 1, out.getvalue(), "png"


def _matches(rule: _Rule, request: Request) -> bool:
    return rule.times > 0 and rule.method == request.method and request.url.path.startswith(rule.path_startswith)


def _take(rules: list[_Rule], request: Request) -> _Rule | None:
    """Use up one turn of the first rule matching the request."""
    for rule in rules:
        if _matches(rule, request):
            rule.times -= 1
            return rule
    return None


def _recorded(value: str | UploadFile) -> str | FilePart:
    if isinstance(value, str):
        return value
    return FilePart(value.filename, value.size or 0, value.content_type)


def _json(payload: dict[str, object], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # PicWish's keys come out alphabetical at every level (S2, S8): a byte-for-byte client test can rely on it.
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return Response(body, status, headers, media_type="application/json")


def _envelope(status: int, message: str | None = None, *, headers: dict[str, str] | None = None) -> Response:
    """PicWish's error body: the HTTP status repeated in `status`, and a `message`."""
    text = message or MESSAGES.get(status) or MESSAGES[500 if status >= 500 else 400]
    return _json({"message": text, "status": status}, status, headers)


def _oss_error(status: int, code: str, message: str) -> Response:
    """An Aliyun OSS error document, as the result bucket answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
        f"  <RequestId>{uuid.uuid4().hex.upper()[:24]}</RequestId>\n</Error>\n"
    )
    return Response(body, status, media_type="application/xml")
