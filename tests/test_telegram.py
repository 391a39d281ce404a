"""The Telegram adapter end to end: real python-telegram-bot against the fake Bot API on loopback, the real
PicWish client against the PicWish fake, real store; assertions on what a person in the chat would see."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import PIL.Image
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot
from telegram.error import BadRequest, InvalidToken, RetryAfter

from adapters import telegram as adapter
from adapters.telegram.replies import EDIT_INTERVAL
from bot import messages
from bot.config import Settings
from bot.core import Service, open_service
from bot.images import Image
from bot.picwish import PicWishClient
from bot.removers import LocalRemover
from tests.conftest import KEY, jpeg, marked, mirror
from tests.fakes.picwish import TASKS_PATH, FakePicWish
from tests.fakes.servers import serve
from tests.fakes.telegram import DOWNLOAD_LIMIT, TOKEN, FakeBotAPI
from tests.processes import free_port, unmark

OUTAGE = "The watermark service is not answering right now. Please try again in a few minutes."
NOT_AN_IMAGE = "That file isn't a valid image. Send me a jpg, png or bmp."


@pytest.fixture
def tg() -> FakeBotAPI:
    return FakeBotAPI()


@pytest.fixture
async def api_url(tg: FakeBotAPI) -> AsyncIterator[str]:
    async with tg.running() as url:
        yield url


@pytest.fixture
def tg_settings(settings: Settings, api_url: str) -> Settings:
    return settings.model_copy(update={"telegram_bot_token": SecretStr(TOKEN), "telegram_api_url": api_url})


@pytest.fixture
async def service(tg_settings: Settings, client: PicWishClient) -> AsyncIterator[Service]:
    async with open_service(tg_settings, remover=client) as service:
        yield service


@contextlib.asynccontextmanager
async def polling(service: Service, settings: Settings, tg: FakeBotAPI, *, grace: float = 5.0,
                  **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """``adapters.telegram.run`` (what ``unmark run`` starts) until the block ends; then its graceful stop."""
    settings = settings.model_copy(update={"shutdown_grace": grace})
    application = adapter.build_application(service, settings, **options) if options else None
    task = asyncio.create_task(adapter.run(service, settings, application=application))
    await tg.wait_for(lambda: tg.calls_to("getUpdates") or task.done(), what="the first getUpdates")
    if task.done():
        task.result()
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def bot(service: Service, tg_settings: Settings, tg: FakeBotAPI) -> AsyncIterator[asyncio.Task[None]]:
    async with polling(service, tg_settings, tg) as task:
        yield task


def rows(settings: Settings) -> list[sqlite3.Row]:
    with sqlite3.connect(settings.database) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()


def mirrored(data: bytes) -> PIL.Image.Image:
    """What the PicWish fake makes of an image (it mirrors it), for comparing pixels."""
    return PIL.Image.open(io.BytesIO(data)).transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)


def noisy_png(width: int, height: int, *, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


# --- one photo, one file ---------------------------------------------------------------------------------------


async def test_a_private_photo_comes_back_as_an_uncompressed_document_replying_to_it(
        tg: FakeBotAPI, bot: asyncio.Task[None], fake: FakePicWish, tg_settings: Settings) -> None:
    chat = tg.private_chat()
    photo = tg.send_photo(chat, jpeg(640, 480))

    await tg.wait_for(lambda: tg.documents(chat) and not tg.sent(chat, deleted=False)[:-1])
    [result] = tg.sent(chat)
    assert result.document is not None and result.document.filename == "photo-clean.jpg"
    assert result.reply_to == photo["message_id"]
    assert result.caption is not None and result.caption.startswith("Watermark removed in ")
    assert PIL.Image.open(io.BytesIO(result.document.data)).size == (640, 480)
    [upload] = tg.calls_to("sendDocument")
    assert upload.params["disable_content_type_detection"] is True
    # The largest size was fetched, through getFile and the file route, never the thumbnail.
    assert [c.params["file_id"] for c in tg.calls_to("getFile")] == [photo["photo"][-1]["file_id"]]
    assert [c.params["path"] for c in tg.calls_to("file")] == [tg.files[photo["photo"][-1]["file_id"]].path]
    # While working: a status message (deleted at the end) and "sending a file…".
    [status] = [m for m in tg.sent(chat, deleted=True) if m.deleted]
    assert status.text is not None and status.text.startswith(messages.WORKING)
    assert (chat["id"], "upload_document") in tg.actions
    # PicWish got the bytes, never a Telegram URL; the job is recorded.
    assert [t.source for t in fake.tasks.values()] == ["file"]
    assert all(TOKEN not in str(r.headers) + str(r.query) + str(r.form) for r in fake.requests)
    await tg.wait_for(lambda: rows(tg_settings)[0]["state"] != "running", what="the job's row to close")
    [row] = rows(tg_settings)
    assert (row["platform"], row["chat_id"], row["state"]) == ("telegram", str(chat["id"]), "done")


async def test_start_up_registers_the_commands_and_polls_without_a_webhook(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    assert tg.commands["default"] == list(messages.TELEGRAM_COMMANDS)
    assert tg.calls_to("deleteWebhook") and tg.webhook is None


async def test_an_image_document_with_a_lying_mime_type_is_sniffed_and_cleaned(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    chat = tg.private_chat()
    png = noisy_png(64, 48)
    message = tg.send_document(chat, png, file_name="scan.txt", mime_type="text/plain")

    await tg.wait_for(lambda: tg.documents(chat))
    [result] = tg.documents(chat)
    assert result.document is not None and result.document.filename == "scan-clean.png"
    assert result.reply_to == message["message_id"]
    assert np.array_equal(np.asarray(PIL.Image.open(io.BytesIO(result.document.data))), np.asarray(mirrored(png)))


@pytest.mark.parametrize("data, name, mime, sentence", [
    (b"just some notes\n", "notes.txt", "text/plain", NOT_AN_IMAGE),
    (b"%PDF-1.4 a document", "report.pdf", "application/pdf", "That's a PDF, not an image. Send me a jpg, png or bmp."),
    (jpeg(200, 100)[:400], "broken.jpg", "image/jpeg", NOT_AN_IMAGE),
])
async def test_a_non_image_or_corrupt_file_gets_one_sentence_and_costs_nothing(
        tg: FakeBotAPI, bot: asyncio.Task[None], fake: FakePicWish,
        data: bytes, name: str, mime: str, sentence: str) -> None:
    chat = tg.private_chat()
    message = tg.send_document(chat, data, file_name=name, mime_type=mime)

    await tg.wait_for(lambda: tg.transcript(chat))
    assert tg.transcript(chat) == [sentence]
    assert tg.sent(chat)[0].reply_to == message["message_id"]
    assert fake.tasks == {}


async def test_a_25_mb_document_is_refused_before_it_is_downloaded(tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    chat = tg.private_chat()
    tg.send_document(chat, jpeg(100, 100), file_name="huge.png", size=25 * 2**20)

    await tg.wait_for(lambda: tg.transcript(chat))
    assert tg.transcript(chat) == [
        "That file is 25 MB; the most I can take is 20 MB. Please send a smaller or compressed copy."]
    assert tg.calls_to("getFile") == [] and tg.calls_to("file") == []


async def test_a_file_telegram_will_not_serve_is_explained(tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    chat = tg.private_chat()
    tg.send_document(chat, jpeg(100, 100), file_name="huge.png", size=21_000_000, announce_size=False)

    await tg.wait_for(lambda: tg.transcript(chat))
    assert tg.transcript(chat) == ["That file is too big; the most I can take is 20 MB."]
    assert [c.status for c in tg.calls_to("getFile")] == [400]


async def test_the_fake_refuses_like_telegram(tg: FakeBotAPI, api_url: str) -> None:
    """The "never" assertions above mean something: the fake does answer these with Telegram's errors."""
    chat = tg.private_chat()
    async with Bot(TOKEN, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot") as bot:
        status = await bot.send_message(chat["id"], "Removing the watermark…")
        with pytest.raises(BadRequest, match="^Message is not modified"):
            await bot.edit_message_text("Removing the watermark…", chat_id=chat["id"], message_id=status.message_id)
        big = tg.send_document(chat, b"x", size=DOWNLOAD_LIMIT + 1)
        with pytest.raises(BadRequest, match="^File is too big"):
            await bot.get_file(big["document"]["file_id"])
        tg.fail("sendMessage", 429, retry_after=3)
        with pytest.raises(RetryAfter) as flood:
            await bot.send_message(chat["id"], "hi")
        assert flood.value.retry_after == timedelta(seconds=3)
        await bot.delete_message(chat["id"], status.message_id)
        with pytest.raises(BadRequest, match="^Message to delete not found"):
            await bot.delete_message(chat["id"], status.message_id)
    with pytest.raises(InvalidToken):
        async with Bot("1:wrong", base_url=f"{api_url}/bot"):
            pass


# --- albums and bursts -----------------------------------------------------------------------------------------


async def test_an_album_of_five_gets_one_status_message_and_five_replies(
        tg: FakeBotAPI, bot: asyncio.Task[None], fake: FakePicWish) -> None:
    chat = tg.private_chat()
    album = tg.send_album(chat, [jpeg(320, 240, seed=i) for i in range(5)])

    await tg.wait_for(lambda: len(tg.documents(chat)) == 5 and len(tg.sent(chat)) == 5)
    assert [m.reply_to for m in tg.documents(chat)] == [item["message_id"] for item in album]
    assert [m.document.filename for m in tg.documents(chat)] == ["photo-clean.jpg"] * 5  # type: ignore[union-attr]
    statuses = [m for m in tg.sent(chat, deleted=True) if m.text is not None]
    assert len(statuses) == 1 and statuses[0].deleted
    assert statuses[0].text.startswith("Image ")  # type: ignore[union-attr]
    assert len(fake.tasks) == 5


async def test_a_burst_of_twenty_photos_is_answered_in_full_in_order_without_flood_errors(
        tg: FakeBotAPI, bot: asyncio.Task[None], tg_settings: Settings) -> None:
    tg.flood_limit(per_chat=5, seconds=1.0, retry_after=1)
    tg.fail("sendDocument", 429, retry_after=1)  # met at least once, however slowly this machine runs the burst
    chat = tg.private_chat()
    started = time.monotonic()
    photos = [tg.send_photo(chat, jpeg(200, 150, seed=100 + i)) for i in range(20)]

    await tg.wait_for(lambda: len(tg.documents(chat)) == 20 and len(tg.sent(chat)) == 20, timeout=45)
    elapsed = time.monotonic() - started
    assert [m.reply_to for m in tg.documents(chat)] == [p["message_id"] for p in photos]
    assert tg.transcript(chat) == [line for line in tg.transcript(chat) if line.startswith("[photo-clean.jpg]")]
    flooded = [c for c in tg.calls if c.status == 429]
    assert flooded, "the burst should have met the flood limit"
    assert all(c.status == 200 for c in tg.calls_to("sendDocument")[-1:])
    await tg.wait_for(lambda: [r["state"] for r in rows(tg_settings)] == ["done"] * 20, what="every row closed")
    uploads = tg.calls_to("sendDocument")
    print(f"\nburst of 20: {elapsed:.1f} s, {len(flooded)} 429s retried, {len(uploads)} sendDocument calls, "
          f"{len(tg.calls_to('sendMessage'))} status messages, {len(tg.calls_to('editMessageText'))} edits")


# --- groups ----------------------------------------------------------------------------------------------------


async def test_a_group_photo_without_a_trigger_is_ignored(tg: FakeBotAPI, service: Service, tg_settings: Settings,
                                                         fake: FakePicWish) -> None:
    group = tg.group_chat()
    bob = tg.person("Bob")
    tg.send_photo(group, jpeg(300, 200), sender=bob)
    tg.send_photo(group, jpeg(300, 200, seed=1), caption="look at this, @someone_else /cleanup")
    tg.send_document(group, jpeg(300, 200, seed=2), file_name="x.jpg", mime_type="image/jpeg")
    tg.send_album(group, [jpeg(300, 200, seed=3), jpeg(300, 200, seed=4)], caption="holiday")
    tg.send_text(group, "https://example.com/cat.jpg")
    tg.send_text(group, "nice")
    tg.send_text(group, "/usage")  # asked: answered, and after everything above was seen

    async with polling(service, tg_settings, tg, album_wait=0.2):
        await tg.wait_for(lambda: tg.transcript(group), what="the /usage answer")
        await asyncio.sleep(0.5)  # longer than the album wait: the album was seen, and ignored
    assert [line.split(";")[0] for line in tg.transcript(group)] == ["Images cleaned today: 0"]
    assert tg.calls_to("getFile") == [] and tg.actions == [] and fake.tasks == {}


async def test_a_group_photo_with_clean_or_a_mention_in_its_caption_is_answered(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    group = tg.group_chat()
    first = tg.send_photo(group, jpeg(300, 200, seed=1), caption="/clean please")
    second = tg.send_photo(group, jpeg(300, 200, seed=2), caption=f"hey @{tg.bot_user['username']}, this one")

    await tg.wait_for(lambda: len(tg.documents(group)) == 2 and len(tg.sent(group)) == 2)
    assert [m.reply_to for m in tg.documents(group)] == [first["message_id"], second["message_id"]]


async def test_clean_replying_to_someones_photo_works_under_privacy_mode(
        tg: FakeBotAPI, bot: asyncio.Task[None], tg_settings: Settings) -> None:
    tg.privacy_mode = True
    group = tg.group_chat()
    bob, carol = tg.person("Bob"), tg.person("Carol")
    photo = tg.send_photo(group, jpeg(300, 200), sender=bob)  # privacy mode: the bot never sees it
    tg.send_text(group, "/clean", sender=carol, reply_to=photo)

    await tg.wait_for(lambda: tg.documents(group) and len(tg.sent(group)) == 1)
    [result] = tg.documents(group)
    assert result.reply_to == photo["message_id"]
    [row] = rows(tg_settings)
    assert (row["chat_id"], row["user_id"]) == (str(group["id"]), str(carol["id"]))  # who asked, not who posted


async def test_an_album_whose_caption_says_clean_is_cleaned_whole_in_a_group(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    group = tg.group_chat()
    album = tg.send_album(group, [jpeg(300, 200, seed=i) for i in range(3)], caption="/clean")

    await tg.wait_for(lambda: len(tg.documents(group)) == 3 and len(tg.sent(group)) == 3)
    assert [m.reply_to for m in tg.documents(group)] == [item["message_id"] for item in album]


async def test_clean_with_nothing_to_clean_says_how(tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    group = tg.group_chat()
    chatter = tg.send_text(group, "hello")
    tg.send_text(group, "/clean", reply_to=chatter)

    await tg.wait_for(lambda: tg.transcript(group))
    assert tg.transcript(group) == [messages.TELEGRAM_CLEAN_HOW]


# --- commands and text -----------------------------------------------------------------------------------------


async def test_help_usage_and_stats(tg: FakeBotAPI, tg_settings: Settings, client: PicWishClient) -> None:
    alice, bob = tg.default_person, tg.person("Bob")
    mine, theirs = tg.private_chat(alice), tg.private_chat(bob)
    admin = tg_settings.model_copy(update={"admins": frozenset({f"telegram:{alice['id']}"})})
    async with open_service(admin, remover=client) as service, polling(service, admin, tg):
        assert tg.commands[f"chat:{alice['id']}"] == [*messages.TELEGRAM_COMMANDS, *messages.TELEGRAM_ADMIN_COMMANDS]
        asked = {tg.send_text(mine, text)["message_id"]: text for text in ("/start", "/help", "/usage", "/stats")}
        asked_by_bob = {tg.send_text(theirs, text, sender=bob)["message_id"]: text
                        for text in ("/stats", "/frobnicate", "hi there")}
        await tg.wait_for(lambda: len(tg.transcript(mine)) == 4 and len(tg.transcript(theirs)) == 3)

    answers = {asked[m.reply_to]: m.text for m in tg.sent(mine)}  # type: ignore[index]
    help_text = messages.telegram_help(tg.bot_user["username"])
    assert answers["/start"] == answers["/help"] == help_text
    assert answers["/usage"].startswith("Images cleaned today: 0; no daily limit applies here.")  # type: ignore[union-attr]
    assert answers["/stats"].startswith("All chats: 0 images today")  # type: ignore[union-attr]
    assert {asked_by_bob[m.reply_to]: m.text for m in tg.sent(theirs)} == {  # type: ignore[index]
        "/stats": messages.ADMINS_ONLY, "/frobnicate": messages.NOT_A_COMMAND,
        "hi there": messages.TELEGRAM_SEND_AN_IMAGE}


async def test_a_typed_link_is_cleaned(tg: FakeBotAPI, service: Service, tg_settings: Settings,
                                       fake: FakePicWish) -> None:
    picture = jpeg(320, 240, seed=5)

    async def cat(request: Any) -> Response:
        return Response(picture, media_type="image/jpeg")

    links = tg_settings.model_copy(update={"allow_private_urls": True})
    async with serve(Starlette(routes=[Route("/cat.jpg", cat)])) as web:
        async with open_service(links, remover=PicWishClient(
                KEY, base_url="http://picwish.test", http=httpx.AsyncClient(transport=httpx.ASGITransport(
                    app=fake.app)), poll_interval=0.01, backoff=0.01, requests_per_second=None)) as linked:
            fake.qps = None
            chat = tg.private_chat()
            async with polling(linked, links, tg):
                message = tg.send_text(chat, f"clean this please: {web}/cat.jpg")
                await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1)

    [result] = tg.documents(chat)
    assert result.document is not None and result.document.filename == "cat-clean.jpg"
    assert result.reply_to == message["message_id"]
    assert [t.source for t in fake.tasks.values()] == ["url"]  # a typed link is the one URL PicWish may see


# --- progress, failures, limits --------------------------------------------------------------------------------


class SteppingRemover:
    """A remover that takes its time and reports every step (the slow part is not under test)."""

    name = "stepping"

    def __init__(self, steps: list[int], pause: float) -> None:
        self.steps, self.pause = steps, pause

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        for percent in self.steps:
            await asyncio.sleep(self.pause)
            if progress is not None:
                await progress(percent)
        return mirror(image)


class GatedRemover:
    """A remover that holds each image until the test lets it through."""

    name = "gated"

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        self.started += 1
        await self.release.wait()
        return mirror(image)


async def test_progress_edits_one_status_message_at_most_every_two_seconds_and_never_repeats(
        tg: FakeBotAPI, tg_settings: Settings) -> None:
    remover = SteppingRemover([5, 5, 20, 35, 50, 50, 65, 80, 95, 100], pause=0.3)
    chat = tg.private_chat()
    async with open_service(tg_settings, remover=remover) as service, polling(service, tg_settings, tg):
        tg.send_photo(chat, jpeg(300, 200))
        await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1)

    [status] = [m for m in tg.sent(chat, deleted=True) if m.text is not None]
    writes = [status.sent_at] + [at for at, _ in status.edits]
    texts = [messages.WORKING] + [text for _, text in status.edits]
    assert len(writes) >= 2, "a 3 s job should have edited its status"
    assert all(b - a >= EDIT_INTERVAL - 0.05 for a, b in zip(writes, writes[1:])), writes
    assert all(a != b for a, b in zip(texts, texts[1:]))
    assert all(text.startswith(messages.WORKING) for text in texts)
    assert status.deleted
    # No "message is not modified", nor any other refusal (the long poll that gives way at shutdown aside).
    assert [c for c in tg.calls if c.status >= 400 and c.method != "getUpdates"] == []


async def test_a_picwish_outage_mid_job_is_explained_in_one_sentence(
        tg: FakeBotAPI, bot: asyncio.Task[None], fake: FakePicWish, tg_settings: Settings) -> None:
    fake.sync_returns_early = True
    fake.script(2, 2, 4, 1)
    fake.fail("GET", TASKS_PATH, 502, times=50)  # the task was created; then PicWish goes down
    chat = tg.private_chat()
    photo = tg.send_photo(chat, jpeg(300, 200))

    await tg.wait_for(lambda: tg.transcript(chat) == [OUTAGE])
    [answer] = tg.sent(chat)
    assert answer.reply_to == photo["message_id"]
    assert [m.deleted for m in tg.sent(chat, deleted=True) if m is not answer] == [True]  # the status went
    await tg.wait_for(lambda: rows(tg_settings)[0]["state"] != "running", what="the row closed")  # after the chat
    assert len(fake.tasks) == 1 and rows(tg_settings)[0]["error_code"] == "remover_down"


async def test_telegram_429s_and_5xx_are_retried_so_the_person_never_sees_them(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:
    tg.fail("getFile", 502)
    tg.fail("sendMessage", 500)
    tg.fail("sendDocument", 429, retry_after=1)
    chat = tg.private_chat()
    tg.send_photo(chat, jpeg(300, 200))

    await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1)
    assert [c.status for c in tg.calls_to("getFile")] == [502, 200]
    assert [c.status for c in tg.calls_to("sendMessage")] == [500, 200]
    assert [c.status for c in tg.calls_to("sendDocument")] == [429, 200]
    retry = tg.calls_to("sendDocument")
    assert retry[1].at - retry[0].at >= 1.0  # retry_after was honoured
    assert tg.transcript(chat)[0].startswith("[photo-clean.jpg] Watermark removed in ")


async def test_a_result_over_the_upload_limit_is_reencoded_to_fit_or_explained(
        tg: FakeBotAPI, tg_settings: Settings) -> None:
    png = noisy_png(300, 200, seed=7)
    chat, other = tg.private_chat(), tg.private_chat(tg.person("Bob"))
    async with open_service(tg_settings, remover=SteppingRemover([], 0)) as service:
        async with polling(service, tg_settings, tg, upload_limit=len(png) // 2):
            tg.send_document(chat, png, file_name="noise.png")
            await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1)
        async with polling(service, tg_settings, tg, upload_limit=1_000):
            tg.send_document(other, noisy_png(300, 200, seed=8), file_name="noise.png", sender=tg.person("Bob"))
            await tg.wait_for(lambda: tg.transcript(other))

    [fitted] = tg.documents(chat)
    assert fitted.document is not None and fitted.document.filename == "noise-clean.jpg"
    assert len(fitted.document.data) <= len(png) // 2 and fitted.document.data[:3] == b"\xff\xd8\xff"
    assert fitted.caption is not None and fitted.caption.endswith(messages.TELEGRAM_REENCODED)
    [explained] = tg.transcript(other)
    assert explained.startswith("That file is ") and "Please send a smaller or compressed copy." in explained


# --- shutdown --------------------------------------------------------------------------------------------------


async def test_shutdown_lets_a_running_job_finish(tg: FakeBotAPI, tg_settings: Settings) -> None:
    remover = GatedRemover()
    chat = tg.private_chat()
    async with open_service(tg_settings, remover=remover) as service, polling(service, tg_settings, tg) as task:
        tg.send_photo(chat, jpeg(300, 200))
        await tg.wait_for(lambda: remover.started)
        task.cancel()  # what SIGTERM does to `unmark run`
        await asyncio.sleep(0.2)
        assert not task.done()  # still waiting for the job
        remover.release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert tg.transcript(chat)[0].startswith("[photo-clean.jpg] ")
    assert [r["state"] for r in rows(tg_settings)] == ["done"]


async def test_a_job_still_running_past_the_grace_period_is_answered_after_the_restart(
        tg: FakeBotAPI, tg_settings: Settings) -> None:
    remover = GatedRemover()
    chat = tg.private_chat()
    async with open_service(tg_settings, remover=remover) as service:
        async with polling(service, tg_settings, tg, grace=0.2) as task:
            photo = tg.send_photo(chat, jpeg(300, 200))
            await tg.wait_for(lambda: remover.started)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert tg.transcript(chat) == []  # nothing said: the job is not lost, only postponed
    assert [r["state"] for r in rows(tg_settings)] == ["running"]

    remover.release.set()
    async with open_service(tg_settings, remover=remover) as service, polling(service, tg_settings, tg):
        await tg.wait_for(lambda: tg.documents(chat))

    [document] = tg.documents(chat)
    assert document.reply_to == photo["message_id"] and tg.transcript(chat)[0].startswith("[photo-clean.jpg] ")
    assert [r["state"] for r in rows(tg_settings)] == ["done"]


async def test_images_sent_while_stopping_are_answered_in_order_after_the_restart(
        tg: FakeBotAPI, tg_settings: Settings) -> None:
    remover = GatedRemover()
    chat = tg.private_chat()
    async with open_service(tg_settings, remover=remover) as service:
        async with polling(service, tg_settings, tg, grace=0.5) as task:
            photos = [tg.send_photo(chat, jpeg(300, 200))]
            await tg.wait_for(lambda: remover.started)
            task.cancel()  # SIGTERM; the running job has its grace period, and updates keep coming in it
            await asyncio.sleep(0.05)
            photos += [tg.send_photo(chat, jpeg(301 + i, 200)) for i in range(2)]
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert tg.documents(chat) == [] and [r["state"] for r in rows(tg_settings)][0] == "running"

    remover.release.set()
    async with open_service(tg_settings, remover=remover) as service, polling(service, tg_settings, tg):
        await tg.wait_for(lambda: len(tg.documents(chat)) == len(photos))

    assert [d.reply_to for d in tg.documents(chat)] == [p["message_id"] for p in photos]
    assert [r["state"] for r in rows(tg_settings)] == ["done"] * len(photos)


# --- `unmark run`, as a process --------------------------------------------------------------------------------


@pytest.fixture
async def picwish_url() -> AsyncIterator[tuple[FakePicWish, str]]:
    fake = FakePicWish(keys={KEY})
    async with serve(fake.app) as url:
        yield fake, url


async def test_unmark_run_polls_cleans_and_on_sigterm_finishes_the_running_job(
        tg: FakeBotAPI, api_url: str, picwish_url: tuple[FakePicWish, str], tmp_path: Path) -> None:
    fake, picwish = picwish_url
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PICWISH_API_KEY": KEY,
           "PICWISH_API_URL": picwish, "UNMARK_LOG_LEVEL": "DEBUG"}
    chat = tg.private_chat()
    async with unmark("run", env=env) as bot:
        await tg.wait_for(lambda: tg.calls_to("getUpdates") or bot.process.returncode is not None, timeout=30)
        tg.send_photo(chat, jpeg(400, 300))
        await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1, timeout=30)
        fake.hang("POST", TASKS_PATH, 1.5)  # the next image is still at PicWish when the platform stops us
        tg.send_photo(chat, jpeg(400, 300, seed=1))
        await tg.wait_for(lambda: len(fake.tasks) == 2, timeout=30)
        err = await bot.stop()

    assert bot.process.returncode == 0, err
    assert [m.line().split(" ")[0] for m in tg.sent(chat)] == ["[photo-clean.jpg]"] * 2
    assert [r["state"] for r in rows(Settings(database=tmp_path / "unmark.sqlite3", _env_file=None))] == ["done"] * 2
    assert "Telegram: polling as @unmark_test_bot" in err
    assert TOKEN not in err and "***" in err  # PTB logs its URLs at DEBUG: the token is masked
    assert "Traceback" not in err


async def test_unmark_run_webhook_serves_healthz_checks_the_secret_and_cleans(
        tg: FakeBotAPI, api_url: str, picwish_url: tuple[FakePicWish, str]) -> None:
    _, picwish = picwish_url
    port, secret = free_port(), "s3cret-Value_1"
    hook = f"http://127.0.0.1:{port}/hooks/telegram"
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "TELEGRAM_WEBHOOK_URL": hook,
           "TELEGRAM_WEBHOOK_SECRET": secret, "PORT": str(port), "PICWISH_API_KEY": KEY, "PICWISH_API_URL": picwish}
    chat = tg.private_chat()
    async with unmark("run", "--webhook", env=env) as bot, httpx.AsyncClient(timeout=5) as http:
        await tg.wait_for(lambda: tg.webhook is not None or bot.process.returncode is not None, timeout=30)
        assert tg.webhook is not None and (tg.webhook.url, tg.webhook.secret) == (hook, secret)
        health = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})

        forged = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": chat, "text": "/help"}}
        assert (await http.post(hook, json=forged)).status_code == 403
        assert (await http.post(hook, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})).status_code == 403

        photo = tg.send_photo(chat, jpeg(400, 300))
        assert await tg.deliver() == [200]
        await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1, timeout=30)
        err = await bot.stop()

    assert bot.process.returncode == 0, err
    assert tg.documents(chat)[0].reply_to == photo["message_id"]
    assert tg.transcript(chat)[0].startswith("[photo-clean.jpg] ")
    assert tg.calls_to("getUpdates") == []  # one bot, one way in
    assert TOKEN not in err and "Traceback" not in err


@pytest.mark.parametrize("args, env, line", [
    ((), {"TELEGRAM_BOT_TOKEN": "999:refused"}, "unmark: TELEGRAM_BOT_TOKEN: Telegram refused it (check it with @BotFather)"),
    (("--webhook",), {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram"},
     "unmark: TELEGRAM_WEBHOOK_SECRET: webhook mode needs one: 1-256 of A-Z, a-z, 0-9, _ and -"),
    ((), {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram"},
     "unmark: TELEGRAM_WEBHOOK_URL: set, so Telegram is served by `unmark run --webhook` (unset it to poll with "
     "`unmark run`)"),
    (("--webhook",), {}, "unmark: TELEGRAM_WEBHOOK_URL: `unmark run --webhook` serves webhooks, and none is configured"),
])
async def test_a_bad_telegram_setting_stops_start_up_with_one_line(
        api_url: str, args: tuple[str, ...], env: dict[str, str], line: str) -> None:
    async with unmark("run", *args, env={"TELEGRAM_API_URL": api_url, "UNMARK_LOG_LEVEL": "WARNING", **env}) as bot:
        err = await bot.wait()
    assert bot.process.returncode == 2
    assert err.strip().splitlines() == [line]


# --- nothing to remove -----------------------------------------------------------------------------------------


async def test_a_photo_without_a_watermark_is_answered_in_words_and_spends_no_image(
        tg: FakeBotAPI, tg_settings: Settings, local_engine: LocalRemover) -> None:
    limited = tg_settings.model_copy(update={"daily_limit": 1})
    async with open_service(limited, remover=local_engine) as service, polling(service, limited, tg):
        chat = tg.private_chat()
        clean = tg.send_photo(chat, jpeg(640, 480, seed=5))
        await tg.wait_for(lambda: any(m.text == messages.NO_WATERMARK for m in tg.sent(chat)))
        sent = tg.send_document(chat, marked(), file_name="marked.png")
        await tg.wait_for(lambda: tg.documents(chat))

    [answer] = [m for m in tg.sent(chat) if m.text == messages.NO_WATERMARK]
    assert answer.reply_to == clean["message_id"]
    # Nothing was sent back for the clean photo; the one daily image went to the marked one.
    [result] = tg.documents(chat)
    assert result.reply_to == sent["message_id"] and result.document is not None
    assert result.document.filename == "marked-clean.png"
    first, second = rows(limited)
    assert (first["state"], first["unchanged"], first["counted"], first["bytes_out"]) == ("done", 1, 0,
                                                                                          first["bytes_in"])
    assert (second["state"], second["unchanged"], second["counted"]) == ("done", 0, 1)
