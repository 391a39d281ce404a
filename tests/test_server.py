"""bot.server against PicWish's contract (shared/picwish-api.md): every status and state, keys, QPS, expiry,
SSRF refusals and restarts, through httpx.ASGITransport with the real engine in a worker process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import PIL.Image
import pytest
from starlette.applications import Starlette

from bot.config import Settings, SettingsError
from bot.images import MAX_BYTES
from bot.server import WorkerPool, create_app
from bot.server.app import Api, KeyRing, RateLimiter
from bot.server.runner import RESULT_TTL
from bot.server.tasks import TASKS_PATH
from tests.conftest import encode, jpeg
from tests.watermarks import add_text_watermark, photo
from tests.watermarks import encode as encode_array

KEY, OTHER_KEY = "server-key-1", "server-key-2"
BASE = "http://unmark.test"
WAIT = 60.0  # seconds any one task may take here; the engine needs well under one on these images
PENDING = {0, 2, 3, 4}


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 12 MP watermarked photo: long enough in the engine (about a second) to be seen running."""
    marked, _ = add_text_watermark(photo(4000, 3000, seed=5), seed=5)
    return encode_array(marked, "jpeg")


class Clock:
    """Real time plus whatever a test adds, like the fake's advance()."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Running:
    """A started app and an httpx client on it that sends KEY unless told otherwise."""

    app: Starlette
    http: httpx.AsyncClient
    clock: Clock
    settings: Settings
    fetched: list[str] = field(default_factory=list)

    @property
    def api(self) -> Api:
        return self.app.state.api

    async def create(self, content: bytes | None = None, *, sync: str = "0", filename: str = "photo.jpg",
                     key: str = KEY) -> httpx.Response:
        files = {"file": (filename, content if content is not None else jpeg(320, 240), "image/jpeg")}
        return await self.http.post(TASKS_PATH, data={"sync": sync}, files=files, headers={"X-API-KEY": key})

    async def get(self, task_id: str, *, key: str = KEY) -> httpx.Response:
        return await self.http.get(f"{TASKS_PATH}/{task_id}", headers={"X-API-KEY": key})

    async def views(self, task_id: str, *, until: set[int] | None = None) -> list[dict[str, Any]]:
        """Poll every 10 ms, bounded, until the task's state is outside PENDING (or in ``until``)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            data = (await self.get(task_id)).json()["data"]
            seen.append(data)
            if data["state"] not in PENDING or (until and data["state"] in until):
                return seen
            await asyncio.sleep(0.01)
        raise AssertionError(f"task {task_id} still pending after {WAIT} s: {seen[-1]}")

    async def finished(self, task_id: str) -> dict[str, Any]:
        return (await self.views(task_id))[-1]


Source = bytes | httpx.Response | Callable[[], Awaitable[httpx.Response]]  # what a source URL answers


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"api_keys": [KEY, OTHER_KEY], "data_dir": tmp_path / "data", "workers": 1,
                              "server_qps": 1000, **overrides}
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running(settings: Settings, pool: WorkerPool, *,
                  sources: dict[str, Source] | None = None, raise_errors: bool = True) -> AsyncIterator[Running]:
    """Start the app's lifespan; ``sources`` are the only URLs its fetcher can reach (others: connection refused)."""
    fetched: list[str] = []

    async def fetch(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        answer = (sources or {}).get(str(request.url))
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        if callable(answer):
            answer = await answer()
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, content=answer)

    clock = Clock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fetch)) as fetcher:
        app = create_app(settings, pool=pool, http=fetcher, clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                yield Running(app, http, clock, settings, fetched)


@pytest.fixture
async def server(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[Running]:
    async with running(server_settings(tmp_path), pool) as started:
        yield started


def picture(result: bytes) -> PIL.Image.Image:
    return PIL.Image.open(io.BytesIO(result))


# --- creating and reading tasks ---------------------------------------------------------------


async def test_sync_upload_answers_the_finished_task_in_picwish_envelope(server: Running) -> None:
    answer = await server.create(jpeg(640, 480), sync="1")

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    data = body["data"]
    assert answer.text.startswith('{"data":{"completed_at":')  # alphabetical keys, compact, like S8
    assert list(data) == sorted(data) and list(body) == ["data", "message", "status"]
    assert (body["message"], body["status"]) == ("success", 200)
    assert set(data) == {"completed_at", "created_at", "file", "processed_at", "progress", "state",
                         "state_detail", "task_id"}
    assert (data["state"], data["progress"], data["state_detail"]) == (1, 100, "Complete")
    assert all(type(data[k]) is int for k in ("completed_at", "created_at", "processed_at"))
    assert data["created_at"] <= data["processed_at"] <= data["completed_at"] <= time.time() + 1
    assert data["file"].startswith(f"{BASE}/tasks/output/visual_external_watermark_remove/{data['task_id']}.jpg?")

    result = await server.http.get(data["file"])  # no key: the URL is signed
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    assert picture(result.content).format == "JPEG" and picture(result.content).size == (640, 480)


async def test_async_create_answers_the_task_id_then_polls_through_real_progress_to_done(
        server: Running, big_jpeg: bytes) -> None:
    created = await server.create(big_jpeg)

    assert created.status_code == 200
    task_id = created.json()["data"]["task_id"]
    assert created.json() == {"data": {"task_id": task_id}, "message": "success", "status": 200}
    assert created.text == json.dumps(created.json(), separators=(",", ":"))
    views = await server.views(task_id)
    states = [v["state"] for v in views]
    progress = [v["progress"] for v in views]
    assert states[-1] == 1 and progress[-1] == 100 and "message" not in (await server.get(task_id)).json()
    assert set(states) <= {0, 2, 3, 4, 1} and states == sorted(states, key=[0, 2, 3, 4, 1].index)
    assert progress == sorted(progress)
    assert any(v["state"] == 4 and 0 < v["progress"] < 100 for v in views), views  # the engine's own progress
    assert all("file" not in v and "completed_at" not in v for v in views[:-1])
    assert all(("processed_at" in v) == (v["state"] in {4, 1}) for v in views)


async def test_a_task_waits_in_the_queue_at_state_0_while_the_worker_is_busy(
        server: Running, big_jpeg: bytes) -> None:
    first = (await server.create(big_jpeg)).json()["data"]["task_id"]
    second = (await server.create()).json()["data"]["task_id"]

    queued = (await server.get(second)).json()["data"]
    assert (queued["state"], queued["progress"], queued["state_detail"]) == (0, 0, "Queued")
    assert set(queued) == {"created_at", "progress", "state", "state_detail", "task_id"}
    assert (await server.http.get("/healthz")).json()["queued"] >= 1
    assert (await server.finished(first))["state"] == 1
    assert (await server.finished(second))["state"] == 1


@pytest.mark.parametrize("fmt, mode, media", [("PNG", "RGBA", "image/png"), ("BMP", "RGB", "image/bmp")])
async def test_results_keep_the_input_format(server: Running, fmt: str, mode: str, media: str) -> None:
    rgb = photo(300, 200, seed=2)
    image = PIL.Image.fromarray(rgb).convert(mode)
    if mode == "RGBA":
        image.putalpha(PIL.Image.linear_gradient("L").resize(image.size))
    data = (await server.create(encode(image, fmt), sync="1", filename="x.bin")).json()["data"]

    assert data["state"] == 1 and data["file"].split("?")[0].endswith("." + fmt.lower())
    result = await server.http.get(data["file"])
    assert result.headers["content-type"] == media
    out = picture(result.content)
    assert (out.format, out.mode, out.size) == (fmt, mode, (300, 200))
    if mode == "RGBA":  # transparency survives untouched
        assert np.array_equal(np.asarray(out)[..., 3], np.asarray(image)[..., 3])


async def test_the_engine_really_removes_a_watermark(server: Running) -> None:
    clean = photo(640, 480, seed=3)
    marked, mask = add_text_watermark(clean, text="SAMPLE", alpha=0.6, seed=3)
    data = (await server.create(encode(PIL.Image.fromarray(marked), "PNG"), sync="1")).json()["data"]

    result = np.asarray(picture((await server.http.get(data["file"])).content).convert("RGB")).astype(int)
    assert np.abs(result - clean)[mask].mean() < np.abs(marked.astype(int) - clean)[mask].mean() / 2


async def test_a_json_body_with_a_url_is_accepted(tmp_path: Path, pool: WorkerPool) -> None:
    url = "http://images.test/cat.jpg"
    settings = server_settings(tmp_path, allow_private_urls=True)  # lets the fetcher reach images.test
    async with running(settings, pool, sources={url: jpeg(200, 100)}) as server:
        answer = await server.http.post(TASKS_PATH, json={"url": url, "sync": 1}, headers={"X-API-KEY": KEY})
        data = answer.json()["data"]
        assert (answer.status_code, data["state"]) == (200, 1)
        assert picture((await server.http.get(data["file"])).content).size == (200, 100)
        assert server.fetched == [url]
        created = await server.http.post(TASKS_PATH, json={"url": url}, headers={"X-API-KEY": KEY})
        assert set(created.json()["data"]) == {"task_id"}


async def test_public_url_goes_into_data_file(tmp_path: Path, pool: WorkerPool) -> None:
    settings = server_settings(tmp_path, public_url="https://api.example.org/unmark")
    async with running(settings, pool) as server:
        data = (await server.create(sync="1")).json()["data"]
        assert data["file"].startswith("https://api.example.org/unmark/tasks/output/")
        path = urlsplit(data["file"])
        assert (await server.http.get(path.path.removeprefix("/unmark") + "?" + path.query)).status_code == 200


# --- failed tasks: state < 0 -----------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"not an image at all",
    b"",
    jpeg(640, 480)[:3000],  # truncated
    encode(PIL.Image.new("RGB", (64, 64)), "GIF"),  # a real image, not jpg/png/bmp
    encode(PIL.Image.new("RGB", (64, 64)), "WEBP"),
    jpeg(19, 300),  # under 20 px
], ids=["text", "empty", "truncated", "gif", "webp", "19px"])
async def test_invalid_images_fail_with_state_minus_7(server: Running, content: bytes) -> None:
    data = (await server.create(content, sync="1")).json()["data"]
    assert (data["state"], data["state_detail"]) == (-7, "Invalid image")
    assert "file" not in data and isinstance(data["completed_at"], int)


async def test_more_than_10000_px_fails_with_state_minus_5(server: Running) -> None:
    content = encode(PIL.Image.new("L", (10_001, 20)), "PNG")
    data = (await server.create(content, sync="1", filename="wide.png")).json()["data"]
    assert (data["state"], data["state_detail"]) == (-5, "Image too large")


async def test_over_the_processing_cap_fails_with_minus_8_and_the_worker_is_replaced(
        tmp_path: Path, pool: WorkerPool, big_jpeg: bytes) -> None:
    async with running(server_settings(tmp_path, processing_timeout=0.3), pool) as server:
        started = time.monotonic()
        data = (await server.create(big_jpeg, sync="1")).json()["data"]
        assert (data["state"], data["state_detail"]) == (-8, "Processing timeout")
        assert time.monotonic() - started < 5
        assert not list((tmp_path / "data" / "uploads").iterdir())
    async with running(server_settings(tmp_path), pool) as server:  # a fresh worker takes the next task
        assert (await server.create(sync="1")).json()["data"]["state"] == 1


async def test_a_worker_that_dies_fails_its_task_with_minus_1_and_is_replaced(
        server: Running, pool: WorkerPool, big_jpeg: bytes) -> None:
    task_id = (await server.create(big_jpeg)).json()["data"]["task_id"]
    await server.views(task_id, until={3, 4})
    pid = pool.workers[0].pid
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)

    assert (await server.finished(task_id))["state"] == -1
    assert (await server.create(sync="1")).json()["data"]["state"] == 1


# --- url sources and SSRF --------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/cat.jpg",
    "http://localhost:8080/cat.jpg",
    "http://[::1]/cat.jpg",
    "http://10.0.0.7/cat.jpg",
    "http://192.168.1.1/cat.jpg",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata: link-local
    "http://0.0.0.0/cat.jpg",
    "file:///etc/passwd",
    "ftp://example.org/cat.jpg",
    "gopher://127.0.0.1:25/",
], ids=lambda url: url.split("/")[2] or url.split(":")[0])
async def test_private_and_non_http_sources_fail_with_minus_3_without_a_request(server: Running, url: str) -> None:
    answer = await server.http.post(TASKS_PATH, json={"url": url, "sync": 1}, headers={"X-API-KEY": KEY})
    data = answer.json()["data"]
    assert (data["state"], data["state_detail"]) == (-3, "Download failed")
    assert server.fetched == []  # refused before any connection


async def test_private_sources_are_fetched_when_allowed(tmp_path: Path, pool: WorkerPool) -> None:
    url = "http://127.0.0.1:9/cat.png"
    settings = server_settings(tmp_path, allow_private_urls=True)
    async with running(settings, pool, sources={url: encode(PIL.Image.new("RGB", (50, 40)), "PNG")}) as server:
        answer = await server.http.post(TASKS_PATH, data={"url": url, "sync": "1"}, files={"_": ("", b"")},
                                        headers={"X-API-KEY": KEY})  # multipart, as PicWish's samples send it
        data = answer.json()["data"]
        assert data["state"] == 1 and data["file"].split("?")[0].endswith(".png")


async def test_a_url_source_shows_state_2_while_it_downloads(tmp_path: Path, pool: WorkerPool) -> None:
    url, release = "http://images.test/slow.jpg", asyncio.Event()

    async def slow() -> httpx.Response:
        await release.wait()
        return httpx.Response(200, content=jpeg(100, 100))

    async with running(server_settings(tmp_path, allow_private_urls=True), pool, sources={url: slow}) as server:
        task_id = (await server.http.post(TASKS_PATH, json={"url": url}, headers={"X-API-KEY": KEY})).json()[
            "data"]["task_id"]
        preparing = (await server.views(task_id, until={2}))[-1]
        assert (preparing["state"], preparing["state_detail"], preparing["progress"]) == (2, "Preparing", 0)
        release.set()
        assert (await server.finished(task_id))["state"] == 1


async def test_a_result_that_cannot_be_stored_fails_with_minus_2(server: Running) -> None:
    results = server.settings.data_dir / "results"
    results.rmdir()
    results.write_bytes(b"")  # a file where the folder was: every write under it fails, even for root
    try:
        data = (await server.create(sync="1")).json()["data"]
    finally:
        results.unlink()
        results.mkdir()
    assert (data["state"], data["state_detail"]) == (-2, "Upload failed")


@pytest.mark.parametrize("answer, state", [
    (httpx.Response(404), -3),
    (httpx.Response(200, headers={"content-length": str(MAX_BYTES + 1)}, content=b"\xff\xd8\xff"), -5),
    (httpx.Response(200, content=b"<html>not an image</html>"), -7),
], ids=["404", "over-50MB", "html"])
async def test_url_source_failures_have_their_states(tmp_path: Path, pool: WorkerPool,
                                                    answer: httpx.Response, state: int) -> None:
    url = "http://images.test/x"
    async with running(server_settings(tmp_path, allow_private_urls=True), pool, sources={url: answer}) as server:
        data = (await server.http.post(TASKS_PATH, json={"url": url, "sync": 1},
                                       headers={"X-API-KEY": KEY})).json()["data"]
    assert data["state"] == state


# --- HTTP statuses -----------------------------------------------------------------------------------


async def test_a_missing_or_unknown_key_is_401(server: Running) -> None:
    for headers in ({}, {"X-API-KEY": ""}, {"X-API-KEY": "server-key"}, {"X-API-KEY": KEY + " "}):
        for response in (await server.http.post(TASKS_PATH, files={"file": ("a.jpg", jpeg(40, 40))}, headers=headers),
                         await server.http.get(f"{TASKS_PATH}/whatever", headers=headers)):
            assert response.status_code == 401
            assert response.json() == {"message": "Unauthorized: check X-API-KEY", "status": 401}
    for key in (KEY, OTHER_KEY):  # every configured key works
        assert (await server.create(key=key)).status_code == 200


@pytest.mark.parametrize("fields, files, message", [
    ({}, None, "Exactly one of file and url is required"),
    ({"sync": "1"}, None, "Exactly one of file and url is required"),
    ({"url": "http://images.test/a.jpg"}, {"file": ("a.jpg", b"x")}, "Exactly one of file and url is required"),
    ({"file": "not-a-file-part"}, None, "Exactly one of file and url is required"),
    ({"url": ""}, None, "Exactly one of file and url is required"),
    ({"url": "http://images.test/a.jpg", "sync": "2"}, None, "sync must be 0 or 1"),
    ({"url": "http://images.test/a.jpg", "sync": "true"}, None, "sync must be 0 or 1"),
], ids=["nothing", "only-sync", "both", "file-as-text", "empty-url", "sync-2", "sync-true"])
async def test_wrong_parameters_are_400(server: Running, fields: dict[str, str], files: Any, message: str) -> None:
    files = files or {"_": ("", b"")}  # forces multipart even without a file
    response = await server.http.post(TASKS_PATH, data=fields, files=files, headers={"X-API-KEY": KEY})
    assert response.status_code == 400
    assert response.json() == {"message": message, "status": 400}


@pytest.mark.parametrize("body, headers", [
    (b"url=http://images.test/a.jpg", {"content-type": "application/x-www-form-urlencoded"}),
    (b"{not json", {"content-type": "application/json"}),
    (b'["http://images.test/a.jpg"]', {"content-type": "application/json"}),
    (b'{"url": 7}', {"content-type": "application/json"}),
    (b'{"url": "http://images.test/a.jpg", "sync": true}', {"content-type": "application/json"}),
    (b"--x\r\nbroken", {"content-type": "multipart/form-data; boundary=x"}),
], ids=["urlencoded", "bad-json", "json-list", "json-url-number", "json-sync-bool", "bad-multipart"])
async def test_bodies_we_cannot_read_are_400(server: Running, body: bytes, headers: dict[str, str]) -> None:
    response = await server.http.post(TASKS_PATH, content=body, headers={"X-API-KEY": KEY, **headers})
    assert response.status_code == 400 and response.json()["status"] == 400
    assert set(response.json()) == {"message", "status"}


async def test_an_upload_over_50_mb_is_413(server: Running) -> None:
    response = await server.create(b"\xff\xd8\xff" + bytes(MAX_BYTES - 2))
    assert response.status_code == 413
    assert response.json() == {"message": "File too large", "status": 413}

    async def endless() -> AsyncIterator[bytes]:  # no Content-Length: the server counts as it reads
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(60):
            yield bytes(1024 * 1024)

    streamed = await server.http.post(TASKS_PATH, content=endless(), headers={
        "X-API-KEY": KEY, "content-type": "multipart/form-data; boundary=b"})
    assert (streamed.status_code, streamed.json()["status"]) == (413, 413)
    declared = await server.http.post(TASKS_PATH, content=b"{}", headers={
        "X-API-KEY": KEY, "content-type": "application/json", "content-length": str(10**9)})
    assert declared.status_code == 413
    assert not list((server.settings.data_dir / "uploads").iterdir())


async def test_more_than_two_requests_a_second_per_key_is_429(tmp_path: Path, pool: WorkerPool) -> None:
    async with running(server_settings(tmp_path, server_qps=2), pool) as server:
        statuses = [(await server.get("nope")).status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
        refused = await server.get("nope")
        assert refused.json() == {"message": "Request frequency exceeds the QPS limit", "status": 429}
        assert (await server.get("nope", key=OTHER_KEY)).status_code == 404  # each key has its own limit
        await asyncio.sleep(1.05)  # refusals do not count: after a second the key gets in again
        assert (await server.get("nope")).status_code == 404


async def test_a_server_side_failure_is_500_in_the_envelope(tmp_path: Path, pool: WorkerPool) -> None:
    async with running(server_settings(tmp_path), pool, raise_errors=False) as server:
        (server.settings.data_dir / "uploads").rmdir()  # the disk lost the folder uploads are written to
        response = await server.create()
    assert response.status_code == 500
    assert response.json() == {"message": "Internal server error", "status": 500}


async def test_unknown_and_other_keys_tasks_are_404(server: Running) -> None:
    task_id = (await server.create()).json()["data"]["task_id"]
    unknown = "2db16fc5-4fbb-43b7-b6bb-ab0c3340a5e6"
    for response in (await server.get(unknown), await server.get(task_id, key=OTHER_KEY)):
        assert response.status_code == 404
        assert response.json() == {"message": "Task not found", "status": 404}
    assert (await server.get(task_id)).status_code == 200


async def test_unknown_paths_and_methods_answer_in_the_envelope(server: Running) -> None:
    missing = await server.http.get("/api/tasks/visual/segmentation", headers={"X-API-KEY": KEY})
    assert (missing.status_code, missing.json()) == (404, {"message": "unmark.test not found", "status": 404})
    wrong = await server.http.delete(TASKS_PATH, headers={"X-API-KEY": KEY})
    assert (wrong.status_code, wrong.json()["status"]) == (405, 405)


# --- results: signed, one hour ------------------------------------------------------------------------


async def test_results_and_tasks_expire_after_an_hour_and_are_deleted(server: Running) -> None:
    data = (await server.create(sync="1")).json()["data"]
    results = server.settings.data_dir / "results"
    assert [p.name for p in results.iterdir()] == [f"{data['task_id']}.jpg"]
    assert not list((server.settings.data_dir / "uploads").iterdir())  # the upload goes once it is processed

    server.clock.advance(RESULT_TTL - 5)
    assert (await server.http.get(data["file"])).status_code == 200
    server.clock.advance(5)
    expired = await server.http.get(data["file"])
    assert expired.status_code == 403 and b"<Message>Request has expired.</Message>" in expired.content
    assert (await server.get(data["task_id"])).status_code == 404

    assert await server.api.runner.sweep() == 1
    assert not list(results.iterdir())
    assert await server.api.runner.store.get(data["task_id"]) is None


async def test_a_tampered_result_url_is_refused(server: Running) -> None:
    data = (await server.create(sync="1")).json()["data"]
    url = urlsplit(data["file"])
    query = dict(part.split("=") for part in url.query.split("&"))

    later = f"{url.path}?Expires={int(query['Expires']) + 3600}&Signature={query['Signature']}"
    assert (await server.http.get(later)).status_code == 403
    assert (await server.http.get(url.path)).status_code == 403
    assert (await server.http.get(url.path.replace(".jpg", ".png") + "?" + url.query)).status_code == 403
    assert (await server.http.get(url.path.rsplit("/", 1)[0] + "/..%2Ftasks.sqlite3?" + url.query)).status_code == 404
    assert (await server.http.get(data["file"])).status_code == 200


# --- restarts ----------------------------------------------------------------------------------------


async def test_a_restart_reruns_queued_tasks_and_fails_cut_off_ones(
        tmp_path: Path, pool: WorkerPool, big_jpeg: bytes) -> None:
    settings = server_settings(tmp_path)
    async with running(settings, pool) as server:
        running_id = (await server.create(big_jpeg)).json()["data"]["task_id"]
        queued_ids = [(await server.create(jpeg(300, 200, seed=i))).json()["data"]["task_id"] for i in range(2)]
        await server.views(running_id, until={3, 4})
        assert [(await server.get(t)).json()["data"]["state"] for t in queued_ids] == [0, 0]
    # Stopped mid-run: the database still says running and queued.

    async with running(settings, pool) as server:
        cut_off = (await server.get(running_id)).json()["data"]
        assert (cut_off["state"], cut_off["state_detail"]) == (-1, "Failed")
        assert isinstance(cut_off["completed_at"], int)
        for task_id in queued_ids:
            assert (await server.finished(task_id))["state"] == 1
        assert not (settings.data_dir / "uploads" / running_id).exists()
        assert sorted(p.name for p in (settings.data_dir / "results").iterdir()) == sorted(
            f"{t}.jpg" for t in queued_ids)


async def test_result_urls_survive_a_restart(tmp_path: Path, pool: WorkerPool) -> None:
    settings = server_settings(tmp_path)
    async with running(settings, pool) as server:
        data = (await server.create(sync="1")).json()["data"]
    async with running(settings, pool) as server:
        assert (await server.http.get(data["file"])).status_code == 200
        assert (await server.get(data["task_id"])).json()["data"] == data


# --- the rest of the surface -----------------------------------------------------------------------


async def test_openapi_and_healthz_need_no_key(server: Running) -> None:
    schema = (await server.http.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.") and TASKS_PATH in schema["paths"]
    assert set(schema["paths"][TASKS_PATH]["post"]["responses"]) == {"200", "400", "401", "413", "429", "500"}
    health = await server.http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_no_keys_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="UNMARK_API_KEYS"):
        create_app(Settings(data_dir=tmp_path, _env_file=None))


def test_keys_are_read_comma_separated_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNMARK_API_KEYS", " alpha-key , beta-key,, ")
    settings = Settings(_env_file=None)
    assert [k.get_secret_value() for k in settings.api_keys] == ["alpha-key", "beta-key"]
    assert "alpha-key" not in repr(settings)


def test_a_key_ring_knows_each_key_and_nothing_else() -> None:
    ring = KeyRing(["alpha-key", "beta-key"])
    owners = {ring.owner("alpha-key"), ring.owner("beta-key")}
    assert len(owners) == 2 and None not in owners
    assert [ring.owner(k) for k in ("", None, "alpha", "alpha-key ", "ALPHA-KEY", "beta-keys")] == [None] * 6


def test_the_rate_limiter_counts_a_sliding_window_and_fractions() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.allow("k") for _ in range(3)] == [True, True, False]
    now[0] = 0.99
    assert not limiter.allow("k")
    now[0] = 1.0
    assert limiter.allow("k") and limiter.allow("other")
    slow = RateLimiter(0.5, clock=lambda: now[0])
    assert [slow.allow("k"), slow.allow("k")] == [True, False]
    now[0] = 3.0
    assert slow.allow("k")
