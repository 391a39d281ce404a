"""Service.handle end to end: real store, real PicWish client against the fake, recorded replies."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator

import httpx
import PIL.Image
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from bot import images, messages
from bot.config import Settings
from bot.core import Service, open_service
from bot.images import Image
from bot.jobs import ChatRef, ImageJob
from bot.picwish import PicWishClient
from bot.usage import UsageStore
from tests.conftest import encode, jpeg, mirror
from tests.fakes.picwish import FakePicWish
from tests.fakes.platform import MemoryPlatform
from tests.fakes.replies import RecordingReplies
from tests.fakes.servers import serve

ALICE = ChatRef("telegram", "100", "1")
BOB = ChatRef("telegram", "200", "2")


PLATFORMS: dict[str, MemoryPlatform] = {}  # the chats of the test under way, refilled by `platforms`


@pytest.fixture(autouse=True)
def platforms() -> Iterator[dict[str, MemoryPlatform]]:
    PLATFORMS.update(telegram=MemoryPlatform("telegram"), slack=MemoryPlatform("slack"))
    yield PLATFORMS
    PLATFORMS.clear()


def link(chat: ChatRef, url: str, replies: RecordingReplies) -> ImageJob:
    """A job for a link typed in ``chat``, answering through ``replies``."""
    answer_to = f"link-{len(PLATFORMS[chat.platform].answers)}"
    PLATFORMS[chat.platform].answers[answer_to] = replies
    return ImageJob.link(chat, url, answer_to=answer_to)


async def attach(service: Service) -> Service:
    """Let the test's platforms' jobs run."""
    for platform in PLATFORMS.values():
        await service.attach(platform)
    return service


def job(data: bytes, chat: ChatRef = ALICE, *, filename: str = "photo.jpg", size: int | None = None,
        replies: object = None, request: str | None = None) -> ImageJob:
    """A job for ``data`` sent in ``chat``, answering through ``replies``."""
    return PLATFORMS[chat.platform].job(data, chat, filename=filename, size=size, replies=replies, request=request)


def rows(settings: Settings) -> list[sqlite3.Row]:
    with sqlite3.connect(settings.database) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()


@pytest.fixture
async def service(settings: Settings, client: PicWishClient) -> AsyncIterator[Service]:
    async with open_service(settings, remover=client) as service:
        yield await attach(service)


class GatedRemover:
    """A remover that waits for the test to let each image through (the slow part is not under test)."""

    name = "gated"

    def __init__(self) -> None:
        self.started: list[int] = []
        self.release = asyncio.Event()

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        self.started.append(image.width)
        await self.release.wait()
        return mirror(image)


async def test_a_photo_comes_back_cleaned_and_the_job_is_recorded(
        service: Service, settings: Settings, fake: FakePicWish) -> None:
    replies = RecordingReplies()
    outcome = await service.handle(job(jpeg(320, 240), replies=replies))

    assert outcome.ok
    assert replies.progress_lines[0] == messages.WORKING
    assert replies.progress_lines[-1] == "Removing the watermark… 100%"
    [sent] = replies.images
    assert sent.filename == "photo-clean.jpg" and sent.caption.startswith("Watermark removed in ")
    assert replies.said == []
    [row] = rows(settings)
    assert (row["state"], row["backend"], row["cached"], row["error_code"]) == ("done", "picwish", 0, None)
    assert row["task_id"] == next(iter(fake.tasks))
    assert (row["width_in"], row["height_in"], row["width_out"], row["bytes_out"]) == (320, 240, 320, len(sent.data))
    assert row["total_ms"] >= row["api_ms"] >= 0 and row["queued_ms"] >= 0


async def test_the_same_image_within_the_hour_is_answered_from_the_cache(
        service: Service, settings: Settings, fake: FakePicWish) -> None:
    data = jpeg(200, 100)
    first, second = RecordingReplies(), RecordingReplies()
    await service.handle(job(data, replies=first))
    await service.handle(job(data, BOB, replies=second))

    assert len(fake.tasks) == 1
    assert second.images[0].data == first.images[0].data
    assert second.images[0].caption == messages.CACHED
    assert [row["cached"] for row in rows(settings)] == [0, 1]


async def test_quota_reached_says_when_it_resets_and_admins_are_exempt(
        settings: Settings, client: PicWishClient, fake: FakePicWish) -> None:
    limited = settings.model_copy(update={"daily_limit": 1, "admins": frozenset({"telegram:9"})})
    async with open_service(limited, remover=client) as service:
        await attach(service)
        await service.handle(job(jpeg(seed=1), replies=RecordingReplies()))
        refused = RecordingReplies()
        outcome = await service.handle(job(jpeg(seed=2), replies=refused))
        admin = RecordingReplies()
        await service.handle(job(jpeg(seed=3), ChatRef("telegram", "100", "9"), replies=admin))

    assert outcome.error_code == "quota_exceeded"
    assert refused.images == [] and refused.said[0].startswith("This chat has used its 1 image for today.")
    assert "00:00 UTC" in refused.said[0]
    assert len(admin.images) == 1
    assert len(fake.tasks) == 2  # the refused image cost nothing
    assert [r["state"] for r in rows(limited)] == ["done", "failed", "done"]


@pytest.mark.parametrize("data, code, sentence", [
    (b"\xff\xd8\xff\xe0 truncated", "not_an_image", "That file isn't a valid image."),
    (b"%PDF-1.4 a document", "not_an_image", "That's a PDF, not an image."),
    (None, "too_small", "That image is only 10×10 px"),
    (None, "too_large", "That image is 10001×30 px"),
])
async def test_bad_images_get_one_sentence_and_spend_nothing(
        service: Service, settings: Settings, fake: FakePicWish,
        data: bytes | None, code: str, sentence: str) -> None:
    if data is None:
        size = (10, 10) if code == "too_small" else (10_001, 30)
        data = encode(PIL.Image.new("L", size), "PNG")
    replies = RecordingReplies()
    outcome = await service.handle(job(data, replies=replies))

    assert outcome.error_code == code
    assert len(replies.said) == 1 and replies.said[0].startswith(sentence)
    assert replies.images == [] and fake.requests == []
    assert rows(settings)[0]["state"] == "failed"


async def test_an_oversize_file_is_refused_before_it_is_downloaded(service: Service, settings: Settings) -> None:
    replies = RecordingReplies()
    await service.handle(job(jpeg(), filename="big.png", size=60 * 2**20, replies=replies))
    assert PLATFORMS["telegram"].fetched == []
    assert replies.said == ["That file is 60 MB; the most I can take is 50 MB. Please send a smaller or compressed copy."]
    assert rows(settings)[0]["error_code"] == "file_too_large"


async def test_a_picwish_outage_is_explained_and_recorded(
        service: Service, settings: Settings, fake: FakePicWish) -> None:
    fake.fail("POST", "/api/tasks", 502, times=50)
    replies = RecordingReplies()
    await service.handle(job(jpeg(), replies=replies))
    assert replies.said == ["The watermark service is not answering right now. Please try again in a few minutes."]
    assert rows(settings)[0]["error_code"] == "remover_down"
    # A failed image does not use up the chat's quota.
    assert (await service.usage.chat_usage(ALICE)).today == 0


async def test_jobs_of_one_chat_run_in_order_and_are_told_their_place(settings: Settings) -> None:
    remover = GatedRemover()
    async with open_service(settings, remover=remover) as service:
        await attach(service)
        replies = [RecordingReplies() for _ in range(3)]
        tasks = [asyncio.create_task(service.handle(job(jpeg(100 + i, 50), replies=r))) for i, r in enumerate(replies)]
        other = asyncio.create_task(service.handle(job(jpeg(300, 50), BOB, replies=RecordingReplies())))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if len(remover.started) == 2:
                break
        await asyncio.sleep(0.05)
        assert sorted(remover.started) == [100, 300]  # Alice's first and Bob's run at once; Alice's others wait
        remover.release.set()
        await asyncio.gather(*tasks, other)

    assert remover.started[2:] == [101, 102]
    assert replies[1].progress_lines[0] == "Queued: 1 image ahead of this one in this chat. I'll start on it right after."
    assert replies[2].progress_lines[0] == "Queued: 2 images ahead of this one in this chat. I'll start on it right after."
    assert all(len(r.images) == 1 for r in replies)


async def test_concurrency_is_bounded_across_chats(settings: Settings) -> None:
    remover = GatedRemover()
    async with open_service(settings.model_copy(update={"concurrency": 2}), remover=remover) as service:
        await attach(service)
        chats = [ChatRef("slack", f"C{i}", "U") for i in range(4)]
        tasks = [asyncio.create_task(service.handle(job(jpeg(100 + i, 50), chat, replies=RecordingReplies())))
                 for i, chat in enumerate(chats)]
        await asyncio.sleep(0.2)
        assert len(remover.started) == 2
        remover.release.set()
        await asyncio.gather(*tasks)
    assert len(remover.started) == 4


async def test_a_job_cut_off_by_a_stop_stays_queued_and_the_next_start_finishes_it(settings: Settings) -> None:
    remover = GatedRemover()
    async with open_service(settings, remover=remover) as service:
        await attach(service)
        first = job(jpeg(100, 50))
        task = asyncio.create_task(service.handle(first))
        while not remover.started:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert rows(settings)[0]["state"] == "running"  # not closed: the next start owns it

    remover = GatedRemover()
    remover.release.set()
    async with open_service(settings, remover=remover) as service:
        [resumed] = await service.attach(PLATFORMS["telegram"])
        outcome = await resumed

    assert outcome.ok and remover.started == [100]
    assert [image.filename for image in PLATFORMS["telegram"].replies_of(first).images] == ["photo-clean.jpg"]
    assert [r["state"] for r in rows(settings)] == ["done"]


async def test_jobs_taken_while_the_platform_stops_wait_for_the_next_start_in_order(settings: Settings) -> None:
    remover = GatedRemover()
    remover.release.set()
    telegram = PLATFORMS["telegram"]
    async with open_service(settings, remover=remover) as service:
        await attach(service)
        service.detach(telegram)
        jobs = [job(jpeg(100 + i, 50)) for i in range(3)]
        outcomes = [await service.handle(j) for j in jobs]
        assert [o.error_code for o in outcomes] == ["postponed"] * 3 and remover.started == []
        assert all(telegram.replies_of(j).events == [] for j in jobs)  # nothing said while stopping
    assert [r["state"] for r in rows(settings)] == ["queued"] * 3

    async with open_service(settings, remover=remover) as service:
        resumed = await service.attach(telegram)
        late = asyncio.create_task(service.handle(job(jpeg(200, 50))))  # a new image, after the restart
        await asyncio.gather(*resumed, late)

    assert remover.started == [100, 101, 102, 200]  # the chat's line, kept across the restart
    assert all(len(telegram.replies_of(j).images) == 1 for j in jobs)


async def test_a_restart_polls_a_started_picwish_task_and_answers_the_person_without_paying_again(
        settings: Settings, client: PicWishClient, fake: FakePicWish) -> None:
    telegram = PLATFORMS["telegram"]
    cut_off = job(jpeg(240, 160))
    image = images.load(telegram.files[cut_off.source])
    # The process died after PicWish accepted the task: the row is still "running", with its task id.
    async with UsageStore.open(settings.database) as store:
        job_id = await store.start(cut_off, backend="picwish")
        assert job_id is not None
        await store.begin(job_id)
        await store.record_input(job_id, image)
        await store.claim(job_id, ALICE, limit=1)
        task = await client.create(image=image, sync=False)
        await store.set_task(job_id, task.task_id)

    limited = settings.model_copy(update={"daily_limit": 1})
    async with open_service(limited, remover=client) as service:
        [resumed] = await service.attach(telegram)
        outcome = await resumed

    assert outcome.ok
    assert telegram.fetched == []  # PicWish had the image already
    assert [i.filename for i in telegram.replies_of(cut_off).images] == ["photo-clean.jpg"]
    assert [r.method for r in fake.requests].count("POST") == 1  # resumed, not re-submitted
    [row] = rows(settings)
    assert (row["state"], row["counted"]) == ("done", 1)  # the daily image it held was not taken twice


@pytest.mark.parametrize("case", ["source gone", "older than an hour"])
async def test_a_job_a_restart_cannot_finish_gets_one_sentence(settings: Settings, case: str) -> None:
    remover = GatedRemover()
    remover.release.set()
    telegram = PLATFORMS["telegram"]
    cut_off = job(jpeg())
    async with UsageStore.open(settings.database) as store:
        await store.start(cut_off, backend="gated")
    if case == "source gone":
        del telegram.files[cut_off.source]
    else:
        with sqlite3.connect(settings.database) as db:
            db.execute("UPDATE jobs SET created_at = created_at - 3601")

    async with open_service(settings, remover=remover) as service:
        [resumed] = await service.attach(telegram)
        outcome = await resumed

    assert telegram.replies_of(cut_off).said == [messages.RESTARTED]
    assert outcome.error_code == "interrupted" and remover.started == []
    assert [(r["state"], r["error_code"]) for r in rows(settings)] == [("interrupted", "interrupted")]


async def test_a_job_answered_just_before_a_crash_is_not_answered_again(settings: Settings) -> None:
    remover = GatedRemover()
    remover.release.set()
    telegram = PLATFORMS["telegram"]
    answered = job(jpeg())
    async with UsageStore.open(settings.database) as store:  # sent, then killed before the row was closed
        job_id = await store.start(answered, backend="gated")
        assert job_id is not None
        await store.begin(job_id)
        await store.delivered(job_id)

    async with open_service(settings, remover=remover) as service:
        for resumed in await service.attach(telegram):
            await resumed

    assert telegram.replies_of(answered).events == [] and telegram.fetched == []
    assert [r["state"] for r in rows(settings)] == ["done"]


async def test_a_request_delivered_again_is_taken_once(service: Service, settings: Settings) -> None:
    first = job(jpeg(), request="update-7")
    again = ImageJob(first.chat, first.source, first.answer_to, first.filename, request="update-7")
    assert (await service.handle(first)).ok
    assert (await service.handle(again)).error_code == "redelivered"
    assert len(PLATFORMS["telegram"].replies_of(first).images) == 1
    assert len(rows(settings)) == 1


async def test_an_adapter_failure_is_an_internal_error_not_a_crash(service: Service, settings: Settings) -> None:
    class BrokenReplies(RecordingReplies):
        async def send_image(self, data: bytes, filename: str, caption: str) -> None:
            raise RuntimeError("platform down")

    replies = BrokenReplies()
    outcome = await service.handle(job(jpeg(), replies=replies))
    assert outcome.error_code == "internal_error"
    assert replies.said == [messages.INTERNAL_ERROR]


async def test_a_typed_link_to_a_private_address_is_refused(service: Service, settings: Settings) -> None:
    replies = RecordingReplies()
    await service.handle(link(ALICE, "http://127.0.0.1:9/cat.jpg", replies))
    assert replies.said == ["I couldn't download an image from that link. Check that it is public and try again."]
    assert rows(settings)[0]["error_code"] == "unreachable_link"


async def test_a_typed_link_is_downloaded_and_sent_to_picwish_as_a_url(
        settings: Settings, client: PicWishClient, fake: FakePicWish) -> None:
    photo = jpeg(200, 150)
    web = Starlette(routes=[
        Route("/cat.jpg", lambda request: Response(photo, media_type="image/jpeg")),
        Route("/page", lambda request: Response("<!doctype html><html></html>", media_type="text/html")),
    ])
    fake.fetch_transport = httpx.ASGITransport(app=web)
    allowed = settings.model_copy(update={"allow_private_urls": True})
    async with serve(web) as base, open_service(allowed, remover=client) as service:
        fake.fetch_transport = None  # PicWish fetches the real loopback URL, as it would the public one
        good, page = RecordingReplies(), RecordingReplies()
        await attach(service)
        await service.handle(link(ALICE, f"{base}/cat.jpg", good))
        await service.handle(link(ALICE, f"{base}/page", page))

    assert good.images[0].filename == "cat-clean.jpg"
    [post] = [r for r in fake.requests if r.method == "POST"]
    assert post.form["url"] == f"{base}/cat.jpg"
    assert page.said == ["That link leads to a web page, not an image. Send a direct link to the image, or the image itself."]


async def test_usage_text_counts_this_chats_images(service: Service) -> None:
    await service.handle(job(jpeg(seed=5), replies=RecordingReplies()))
    text = await service.usage_text(ALICE)
    assert text.startswith("Images cleaned today: 1; 49 of 50 left today (resets at 00:00 UTC).")
    assert await service.stats_text(ALICE) == messages.ADMINS_ONLY


async def test_a_slow_platform_does_not_reorder_a_chats_line(settings: Settings) -> None:
    remover = GatedRemover()

    class SlowReplies(RecordingReplies):
        async def progress(self, text: str) -> None:
            # A network round trip, slower for the earlier announcement.
            await asyncio.sleep({"Queued: 1": 0.15, "Queued: 2": 0.08}.get(text[:9], 0))
            await super().progress(text)

    async with open_service(settings, remover=remover) as service:
        await attach(service)
        tasks = []
        for width in (100, 101, 102, 103):
            tasks.append(asyncio.create_task(service.handle(job(jpeg(width, 50), replies=SlowReplies()))))
            await asyncio.sleep(0.01)  # each arrives while the one before is still being told its place
        remover.release.set()
        await asyncio.gather(*tasks)
    assert remover.started == [100, 101, 102, 103]


async def test_an_error_reaches_the_chat_before_the_next_images_answer(service: Service) -> None:
    seen: list[str] = []

    class SharedReplies(RecordingReplies):
        async def send_image(self, data: bytes, filename: str, caption: str) -> None:
            seen.append(f"image {filename}")

        async def say(self, text: str) -> None:
            await asyncio.sleep(0.2)  # a slow network round trip
            seen.append("error")

    await asyncio.gather(service.handle(job(b"not an image", filename="a.jpg", replies=SharedReplies())),
                         service.handle(job(jpeg(), filename="b.jpg", replies=SharedReplies())))
    assert seen == ["error", "image b-clean.jpg"]
