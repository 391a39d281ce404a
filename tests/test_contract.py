"""One PicWishClient suite, run against the PicWish fake *and* our own `unmark serve` app (STYLE 7.7).

What passes against both is what a client written against PicWish's documentation can rely on; the
two differ only where the fake is scripted (its "cleaning" mirrors the image, bmp comes back as png).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import PIL.Image
import pytest
from starlette.types import ASGIApp

from bot import errors, images
from bot.config import Settings
from bot.images import MAX_BYTES, Image
from bot.picwish import TASK_PATH, PicWishClient
from bot.server import WorkerPool, create_app
from bot.server import app as server_app
from bot.server import tasks as server_tasks
from tests.conftest import encode, jpeg
from tests.fakes import picwish as fake_picwish
from tests.fakes.picwish import FakePicWish

KEY = "contract-key"
BASE = "http://picwish.test"
BACKENDS = ["fake", "server"]


@dataclass(frozen=True)
class Backend:
    """An ASGI app that speaks PicWish's contract, and how to move its clock."""

    name: str
    app: ASGIApp
    advance: Callable[[float], None]


@contextlib.asynccontextmanager
async def open_backend(name: str, tmp_path: Path, pool: WorkerPool, *,
                       qps: int | None = None) -> AsyncIterator[Backend]:
    """The fake, or bot.server with its lifespan started; ``qps=None`` lifts the per-key limit."""
    if name == "fake":
        fake = FakePicWish(keys={KEY})
        fake.qps = qps
        yield Backend(name, fake.app, fake.advance)
        return
    offset = [0.0]
    settings = Settings(api_keys=[KEY], data_dir=tmp_path / "data", workers=1, server_qps=qps or 10_000,
                        _env_file=None)
    app = create_app(settings, pool=pool, clock=lambda: time.time() + offset[0])
    async with app.router.lifespan_context(app):
        yield Backend(name, app, lambda seconds: offset.__setitem__(0, offset[0] + seconds))


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path, pool: WorkerPool) -> AsyncIterator[Backend]:
    async with open_backend(request.param, tmp_path, pool) as opened:
        yield opened


@pytest.fixture
async def http(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=backend.app), base_url=BASE) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> PicWishClient:
    """The real client, unchanged: fast polling, quick back-off, no client-side QPS pacing."""
    return PicWishClient(KEY, base_url=BASE, http=http, poll_interval=0.01, backoff=0.01, requests_per_second=None)


def size_of(image: Image) -> tuple[int, int]:
    return PIL.Image.open(io.BytesIO(image.data)).size


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
async def test_remove_gives_back_the_image_in_its_format_and_size(client: PicWishClient, fmt: str) -> None:
    source = images.load(jpeg(320, 240) if fmt == "jpeg" else encode(PIL.Image.new("RGB", (320, 240), "teal"), "PNG"))
    seen: list[int] = []

    async def progress(percent: int) -> None:
        seen.append(percent)

    result = await client.remove(source, progress)
    assert (result.format, size_of(result)) == (fmt, (320, 240))
    assert seen[-1] == 100 and seen == sorted(seen)


async def test_async_create_then_poll_then_download(client: PicWishClient) -> None:
    task = await client.create(image=images.load(jpeg(200, 150)), sync=False)
    assert task.state == 0 and task.file is None
    done = await client.wait(task)
    assert done.state == 1 and done.file is not None and done.task_id == task.task_id
    assert size_of(await client.download(done.file)) == (200, 150)


async def test_resume_finishes_a_task_by_its_id(client: PicWishClient) -> None:
    task = await client.create(image=images.load(jpeg(200, 150)), sync=False)
    assert size_of(await client.resume(task.task_id)) == (200, 150)


@pytest.mark.parametrize("content", [b"\xff\xd8\xff" + b"garbage" * 20, jpeg(12, 12)], ids=["corrupt", "12px"])
async def test_an_invalid_image_is_not_an_image(client: PicWishClient, content: bytes) -> None:
    image = Image(data=content, format="jpeg", width=12, height=12, sha256="x")  # unchecked, as a careless caller
    with pytest.raises(errors.NotAnImage):
        await client.remove(image)


async def test_a_wrong_key_is_invalid_api_key(http: httpx.AsyncClient) -> None:
    client = PicWishClient("not-our-key", base_url=BASE, http=http, requests_per_second=None)
    with pytest.raises(errors.InvalidApiKey):
        await client.remove(images.load(jpeg(100, 100)))


async def test_an_unknown_task_is_result_expired(client: PicWishClient) -> None:
    with pytest.raises(errors.ResultExpired):
        await client.get("2db16fc5-4fbb-43b7-b6bb-ab0c3340a5e6")


async def test_tasks_and_result_urls_expire_after_an_hour(backend: Backend, client: PicWishClient) -> None:
    done = await client.wait(await client.create(image=images.load(jpeg(100, 100)), sync=False))
    backend.advance(3601)
    with pytest.raises(errors.ResultExpired):
        await client.get(done.task_id)
    with pytest.raises(errors.ResultExpired):
        await client.download(done.file or "")


async def test_an_upload_over_50_mb_is_file_too_large(client: PicWishClient) -> None:
    huge = Image(data=b"\xff\xd8\xff" + bytes(MAX_BYTES), format="jpeg", width=100, height=100, sha256="x")
    with pytest.raises(errors.FileTooLarge):
        await client.create(image=huge, sync=True)


async def test_an_unreachable_link_falls_back_to_uploading_the_bytes(client: PicWishClient) -> None:
    result = await client.remove(images.load(jpeg(160, 120)), source_url="http://127.0.0.1:9/cat.jpg")
    assert size_of(result) == (160, 120)


@pytest.mark.parametrize("name", BACKENDS)
async def test_a_third_request_in_one_second_is_busy(name: str, tmp_path: Path, pool: WorkerPool) -> None:
    async with (open_backend(name, tmp_path, pool, qps=2) as backend,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=backend.app), base_url=BASE) as http):
        impatient = PicWishClient(KEY, base_url=BASE, http=http, requests_per_second=None, attempts=1)
        task = await impatient.create(image=images.load(jpeg(100, 100)), sync=False)
        await impatient.get(task.task_id)
        with pytest.raises(errors.RemoverBusy):
            await impatient.get(task.task_id)
        paced = PicWishClient(KEY, base_url=BASE, http=http)  # the client's own pacing keeps under the limit
        assert size_of(await paced.resume(task.task_id)) == (100, 100)


async def test_the_wire_format_is_the_same(http: httpx.AsyncClient) -> None:
    """Envelopes byte for byte where the values allow: keys, their order, types and messages."""
    key = {"X-API-KEY": KEY}
    photo = {"file": ("photo.jpg", jpeg(100, 80), "image/jpeg")}
    created = await http.post(TASK_PATH, headers=key, data={"sync": "0"}, files=photo)
    task_id = created.json()["data"]["task_id"]
    assert created.text == f'{{"data":{{"task_id":"{task_id}"}},"message":"success","status":200}}'

    finished = (await http.post(TASK_PATH, headers=key, data={"sync": "1"}, files=photo)).json()
    assert list(finished) == ["data", "message", "status"]
    data = finished["data"]
    assert list(data) == ["completed_at", "created_at", "file", "processed_at", "progress", "state",
                          "state_detail", "task_id"]
    assert (data["state"], data["progress"], data["state_detail"]) == (1, 100, "Complete")
    polled = (await http.get(f"{TASK_PATH}/{data['task_id']}", headers=key)).json()
    assert list(polled) == ["data", "status"] and polled["data"]["state"] == 1

    assert (await http.get(f"{TASK_PATH}/{task_id}")).json() == {"message": "Unauthorized: check X-API-KEY",
                                                                   "status": 401}
    assert (await http.get(f"{TASK_PATH}/no-such-task", headers=key)).json() == {"message": "Task not found",
                                                                                  "status": 404}
    assert (await http.get("/api/customers/nothing", headers=key)).json() == {"message": "picwish.test not found",
                                                                              "status": 404}
    both = await http.post(TASK_PATH, headers=key, data={"url": "http://example.org/a.jpg"}, files=photo)
    assert both.json() == {"message": "Exactly one of file and url is required", "status": 400}
    bad_sync = await http.post(TASK_PATH, headers=key, data={"sync": "yes"}, files=photo)
    assert bad_sync.json() == {"message": "sync must be 0 or 1", "status": 400}
    not_multipart = await http.post(TASK_PATH, headers={**key, "content-type": "text/plain"}, content=b"hi")
    assert not_multipart.json() == {"message": "Content-Type must be multipart/form-data", "status": 400}


def test_the_server_uses_the_fakes_words() -> None:
    assert server_tasks.STATE_DETAILS == fake_picwish.STATE_DETAILS
    assert fake_picwish.MESSAGES.items() <= server_app.MESSAGES.items()
    assert server_tasks.TASKS_PATH == fake_picwish.TASKS_PATH == TASK_PATH
