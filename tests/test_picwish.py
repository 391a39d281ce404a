"""The real PicWishClient over HTTP against the PicWish fake: every status, state and fault."""

from __future__ import annotations

import io
import logging
import time

import httpx
import PIL.Image
import pytest

from bot import errors, images, messages
from bot.picwish import PicWishClient, Task
from tests.conftest import KEY, jpeg
from tests.fakes.picwish import TASKS_PATH, FakePicWish
from tests.fakes.servers import serve


@pytest.fixture
def photo() -> images.Image:
    return images.load(jpeg(320, 240))


def mirrored(image: images.Image) -> PIL.Image.Image:
    return PIL.Image.open(io.BytesIO(image.data)).transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)


def same_pixels(a: PIL.Image.Image, b: PIL.Image.Image, tolerance: int = 12) -> bool:
    diff = PIL.ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return max(high for _, high in diff.getextrema()) <= tolerance


import PIL.ImageChops  # noqa: E402


async def test_sync_success_sends_multipart_with_key_and_downloads_without_it(
        fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    seen: list[int] = []

    async def progress(percent: int) -> None:
        seen.append(percent)

    result = await client.remove(photo, progress)

    create, download = fake.requests
    assert (create.method, create.path) == ("POST", TASKS_PATH)
    assert create.headers["content-type"].startswith("multipart/form-data")
    assert create.headers["x-api-key"] == KEY
    assert create.form["sync"] == "1" and create.form["file"].size == len(photo.data)
    assert download.path.startswith("/results/") and "x-api-key" not in download.headers
    assert KEY not in str(download.query) and KEY not in download.path
    assert result.format == "jpeg" and (result.width, result.height) == (320, 240)
    assert same_pixels(PIL.Image.open(io.BytesIO(result.data)), mirrored(photo))
    assert seen[-1] == 100


async def test_sync_answered_mid_processing_is_polled_to_the_end(
        fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    fake.sync_returns_early = True
    fake.script(4, 4, 4, 1)
    seen: list[int] = []

    async def progress(percent: int) -> None:
        seen.append(percent)

    await client.remove(photo, progress)
    polls = [r for r in fake.requests if r.method == "GET" and r.path.startswith(TASKS_PATH)]
    assert len(polls) == 3
    assert seen == sorted(seen) and seen[-1] == 100


async def test_sync_timeout_falls_back_to_one_async_task(fake: FakePicWish, photo: images.Image) -> None:
    # The fake must have handled the sync request well inside the client's limit (it holds the answer only
    # afterwards), also on a loaded machine: a limit of 0.3 s was once too short for that in CI.
    fake.hang("POST", TASKS_PATH, 2.0)
    async with serve(fake.app) as url, PicWishClient(KEY, base_url=url, sync_timeout=1.0, poll_interval=0.01,
                                                     requests_per_second=None) as client:
        result = await client.remove(photo)
    posts = [r for r in fake.requests if r.method == "POST"]
    assert [p.form["sync"] for p in posts] == ["1", "0"]
    assert result.format == "jpeg"
    assert fake.credits_used == 2  # why the README warns that a fallback can cost a second credit


async def test_429_is_retried_after_a_back_off(fake: FakePicWish, client: PicWishClient,
                                               photo: images.Image) -> None:
    fake.fail("POST", TASKS_PATH, 429, times=2, retry_after=0)
    await client.remove(photo)
    assert [r.status for r in fake.requests if r.method == "POST"] == [429, 429, 200]


async def test_500_is_retried(fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    fake.fail("POST", TASKS_PATH, 500, times=1)
    await client.remove(photo)
    assert [r.status for r in fake.requests if r.method == "POST"] == [500, 200]


@pytest.mark.parametrize("status, error", [(429, errors.RemoverBusy), (503, errors.RemoverUnavailable)])
async def test_retries_are_bounded(fake: FakePicWish, client: PicWishClient, photo: images.Image,
                                   status: int, error: type[errors.UnmarkError]) -> None:
    fake.fail("POST", TASKS_PATH, status, times=100)
    with pytest.raises(error):
        await client.remove(photo)
    assert len(fake.requests) == 5


async def test_rejected_key_is_an_operator_error_and_never_logged(
        fake: FakePicWish, photo: images.Image, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-this-must-not-leak"
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        client = PicWishClient(secret, base_url="http://picwish.test", http=http, requests_per_second=None)
        with pytest.raises(errors.InvalidApiKey) as caught:
            await client.remove(photo)
    assert messages.describe(caught.value) == "The watermark service is misconfigured. The bot's operator has been told."
    assert "401" in caplog.text and "PICWISH_API_KEY" in caplog.text
    assert secret not in caplog.text


@pytest.mark.parametrize("state, error, sentence", [
    (-1, errors.RemovalFailed, "I couldn't remove the watermark from this image."),
    (-2, errors.RemoverUnavailable, "The watermark service is not answering right now."),
    (-3, errors.UnreachableLink, "I couldn't download an image from that link."),
    (-5, errors.FileTooLarge, "That file is too big"),
    (-7, errors.NotAnImage, "That file isn't a valid image."),
    (-8, errors.RemovalTimedOut, "Removing the watermark took too long."),
])
async def test_each_failed_state_has_its_error_and_sentence(
        fake: FakePicWish, client: PicWishClient, photo: images.Image,
        state: int, error: type[errors.UnmarkError], sentence: str) -> None:
    fake.script(2, 4, state)
    fake.sync_returns_early = True
    with pytest.raises(error) as caught:
        await client.remove(photo)
    assert type(caught.value) is error
    assert messages.describe(caught.value).startswith(sentence)


async def test_expired_result_url_asks_to_send_again(fake: FakePicWish, client: PicWishClient,
                                                     photo: images.Image) -> None:
    task = await client.wait(await client.create(image=photo, sync=False))
    fake.advance(3601)
    with pytest.raises(errors.ResultExpired) as caught:
        await client.download(task.file or "")
    assert messages.describe(caught.value) == "The cleaned image expired before I could fetch it. Please send the image again."


async def test_expired_task_is_result_expired(fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    task = await client.create(image=photo, sync=False)
    fake.advance(3601)
    with pytest.raises(errors.ResultExpired):
        await client.get(task.task_id)


async def test_polling_gives_up_at_the_deadline(fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    fake.script(0, 0, 0, 0, 0, 0, 0, 0)
    fake.sync_returns_early = True
    client.deadline = 0.05
    with pytest.raises(errors.RemovalTimedOut):
        await client.remove(photo)


async def test_a_typed_link_goes_as_url_and_falls_back_to_upload(
        fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    result = await client.remove(photo, source_url="http://127.0.0.1:9/unreachable.jpg")
    first, second = [r for r in fake.requests if r.method == "POST"]
    assert first.form["url"] == "http://127.0.0.1:9/unreachable.jpg" and "file" not in first.form
    assert "file" in second.form and "url" not in second.form
    assert result.width == 320


async def test_task_ids_reach_the_caller_before_the_result(fake: FakePicWish, client: PicWishClient,
                                                          photo: images.Image) -> None:
    ids: list[str] = []

    async def on_task(task_id: str) -> None:
        ids.append(task_id)

    await client.remove(photo, on_task=on_task)
    assert ids == list(fake.tasks)


async def test_resume_polls_an_existing_task_without_creating_another(
        fake: FakePicWish, client: PicWishClient, photo: images.Image) -> None:
    task = await client.create(image=photo, sync=False)
    result = await client.resume(task.task_id)
    assert result.width == 320
    assert len(fake.tasks) == 1


async def test_client_side_limiter_keeps_under_two_requests_per_second(
        fake: FakePicWish, photo: images.Image) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        client = PicWishClient(KEY, base_url="http://picwish.test", http=http)  # real limiter, fake enforces 2/s
        task = await client.create(image=photo, sync=False)
        started = time.monotonic()
        for _ in range(4):
            await client.get(task.task_id)
    assert all(r.status != 429 for r in fake.requests)
    assert time.monotonic() - started >= 1.0


def test_task_without_state_is_pending() -> None:
    assert Task.from_data({"task_id": "t"}).state == 0
