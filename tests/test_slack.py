"""The Slack adapter end to end: real Bolt + slack_sdk + core, against FakeSlack (and FakePicWish) on loopback.

Slack's side is played by signed HTTP deliveries to ``POST /slack/events`` (served by uvicorn from
``slack_routes``), and by the fake's Socket Mode WebSocket for ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from adapters import plan, web
from adapters.slack import (
    COMMAND,
    EVENTS_PATH,
    SHORTCUT_ID,
    SlackBot,
    open_slack,
    run,
    slack_routes,
)
from bot import images, messages
from bot.config import Settings, SettingsError
from bot.core import open_service
from bot.images import Image
from bot.jobs import ChatRef, ImageJob
from bot.picwish import PicWishClient
from bot.removers import LocalRemover, Remover
from tests.conftest import encode, jpeg, marked, mirror
from tests.fakes.picwish import FakePicWish
from tests.fakes.servers import serve
from tests.fakes.slack import (
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    form_body,
    signed_headers,
)

ROOT = Path(__file__).resolve().parent.parent
DM, CHANNEL = "D0ALICE", "C0GENERAL"
ACK_LIMIT = 3.0  # Slack's deadline
SETTLE = 15.0  # bound on any wait for the bot to finish; the fakes answer in milliseconds


class GatedRemover:
    """Holds every image until the test releases it: a remover as slow as the test wants."""

    name = "gated"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        self.started += 1
        await self.release.wait()
        return mirror(image)


class ChattyRemover:
    """Reports ten progress steps at once, then works a while: the status line should not flicker."""

    name = "chatty"

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        for percent in range(10, 101, 10):
            if progress is not None:
                await progress(percent)
        await asyncio.sleep(0.5)
        return mirror(image)


@dataclass
class Slack:
    """A running bot in HTTP mode, and Slack's side of it."""

    fake: FakeSlack
    bot: SlackBot
    http: httpx.AsyncClient
    settings: Settings

    async def deliver(self, payload: dict[str, Any], *, headers: dict[str, str] | None = None,
                      secret: str = SIGNING_SECRET) -> httpx.Response:
        """POST an Events API payload, signed as Slack signs it."""
        body = json.dumps(payload).encode()
        return await self.http.post(EVENTS_PATH, content=body, headers={**signed_headers(body, secret=secret),
                                                                         **(headers or {})})

    async def post_form(self, fields: dict[str, str]) -> httpx.Response:
        """POST a slash command or an interactivity payload, form-encoded and signed."""
        body = form_body(fields)
        return await self.http.post(EVENTS_PATH, content=body, headers=signed_headers(
            body, content_type="application/x-www-form-urlencoded"))

    async def dm(self, *files: dict[str, Any], text: str = "", event_id: str | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:
        event = self.fake.message_event(channel=DM, text=text, files=list(files) or None)
        return await self.deliver(self.fake.event_callback(event, event_id=event_id), headers=headers)

    async def settle(self) -> None:
        """Wait until every job the bot started has finished."""
        await self.bot.join(SETTLE)


@contextlib.asynccontextmanager
async def running(settings: Settings, remover: Remover, *, status_interval: float = 0.05,
                  fake: FakeSlack | None = None) -> AsyncIterator[Slack]:
    fake = fake or FakeSlack()
    async with fake.serving():
        slack_settings = configured(settings, {
            "slack_bot_token": fake.bot_token, "slack_signing_secret": SIGNING_SECRET, "slack_api_url": fake.api_url})
        async with (open_service(slack_settings, remover=remover) as service,
                    open_slack(service, slack_settings, status_interval=status_interval) as bot,
                    serve(Starlette(routes=slack_routes(bot))) as url,
                    httpx.AsyncClient(base_url=url, timeout=10) as http):
            yield Slack(fake, bot, http, slack_settings)


@pytest.fixture
async def slack(settings: Settings, client: PicWishClient) -> AsyncIterator[Slack]:
    """The bot with the real PicWish client against FakePicWish."""
    async with running(settings, client) as slack:
        yield slack


async def eventually(condition: Callable[[], bool], timeout: float = SETTLE) -> None:
    """Wait, polling, until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def configured(settings: Settings, update: dict[str, Any]) -> Settings:
    """``settings`` with some values changed; secrets wrapped as the environment would have them."""
    secrets = {"slack_bot_token", "slack_app_token", "slack_signing_secret", "telegram_bot_token"}
    return settings.model_copy(update={k: SecretStr(v) if k in secrets else v for k, v in update.items()})


def rows(settings: Settings) -> list[sqlite3.Row]:
    with sqlite3.connect(settings.database) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()


def png(width: int = 300, height: int = 200) -> bytes:
    """A logo-like PNG that a mirror changes (the PicWish fake mirrors; one that came back the same is unchanged)."""
    picture = PIL.Image.new("RGB", (width, height), (200, 40, 90))
    picture.paste((250, 250, 250), (0, 0, width // 3, height))
    return encode(picture, "PNG")


# --- ways in ----------------------------------------------------------------------------------------------


async def test_a_direct_message_with_three_images_gets_three_clean_files_back(slack: Slack) -> None:
    fake = slack.fake
    files = [fake.add_file(jpeg(320, 240, seed=1), "beach.jpg"), fake.add_file(png(), "logo.png", mimetype="image/png"),
             fake.add_file(jpeg(200, 300, seed=2), "Scan 3.jpeg")]
    response = await slack.dm(*files)
    assert response.status_code == 200
    await slack.settle()

    assert sorted(u.filename for u in fake.uploads) == ["Scan 3-clean.jpg", "beach-clean.jpg", "logo-clean.png"]
    for upload in fake.uploads:
        assert (upload.channel, upload.thread_ts) == (DM, None)  # a DM is answered in the conversation itself
        assert upload.initial_comment.startswith("Watermark removed in ") and upload.initial_comment.endswith(" s.")
        assert upload.title == upload.filename and images.inspect(upload.data).width > 0
    # One status line per image, each labelled with its file, removed once its image is back.
    statuses = fake.in_channel(DM)
    assert len(statuses) == 3 and all(message.deleted and message.thread_ts is None for message in statuses)
    assert {message.texts[0].split(":")[0] for message in statuses} == {"beach.jpg", "logo.png", "Scan 3.jpeg"}
    # Downloads used the bot token; the message wore an hourglass, then a check mark.
    assert [auth for _, auth in fake.downloads] == [f"Bearer {fake.bot_token}"] * 3
    assert [(action, name) for action, *_, name in fake.reactions] == [
        ("add", "hourglass_flowing_sand"), ("remove", "hourglass_flowing_sand"), ("add", "white_check_mark")]
    # Usage is counted per conversation, scoped by the workspace.
    assert [(r["platform"], r["chat_id"], r["user_id"], r["state"]) for r in rows(slack.settings)] == [
        ("slack", f"{TEAM_ID}:{DM}", "U0ALICE", "done")] * 3


async def test_a_mention_in_a_thread_is_answered_in_that_thread(slack: Slack) -> None:
    fake = slack.fake
    event = fake.mention_event(channel=CHANNEL, files=[fake.add_file(jpeg(seed=3), "poster.jpg")],
                               thread_ts="1700000000.000100")
    await slack.deliver(fake.event_callback(event))
    await slack.settle()

    [upload] = fake.uploads
    assert (upload.channel, upload.thread_ts, upload.filename) == (CHANNEL, "1700000000.000100", "poster-clean.jpg")
    [status] = fake.in_channel(CHANNEL)
    assert status.thread_ts == "1700000000.000100" and status.deleted
    assert status.texts[0] == messages.WORKING
    assert ("add", CHANNEL, event["ts"], "white_check_mark") in fake.reactions


async def test_a_mention_at_the_top_of_a_channel_is_answered_in_a_thread_under_it(slack: Slack) -> None:
    fake = slack.fake
    event = fake.mention_event(channel=CHANNEL, files=[fake.add_file(jpeg(seed=4), "a.jpg")])
    await slack.deliver(fake.event_callback(event))
    await slack.settle()
    assert [(u.channel, u.thread_ts) for u in fake.uploads] == [(CHANNEL, event["ts"])]


async def test_a_mention_without_an_image_says_how_to_use_the_bot(slack: Slack) -> None:
    fake = slack.fake
    await slack.deliver(fake.event_callback(fake.mention_event(channel=CHANNEL, text="can you help?")))
    await slack.settle()
    [reply] = fake.in_channel(CHANNEL)
    assert reply.text == messages.SLACK_NO_IMAGE and fake.uploads == []


async def test_the_shortcut_cleans_the_images_of_the_chosen_message_in_its_thread(slack: Slack) -> None:
    fake = slack.fake
    message = fake.message_event(channel=CHANNEL, channel_type="channel", user="U0ALICE",
                                 files=[fake.add_file(jpeg(seed=5), "meme.jpg")])
    started = time.perf_counter()
    response = await slack.post_form(fake.message_shortcut(message, channel=CHANNEL))
    assert response.status_code == 200 and time.perf_counter() - started < ACK_LIMIT
    await slack.settle()

    [upload] = fake.uploads
    assert (upload.channel, upload.thread_ts, upload.filename) == (CHANNEL, message["ts"], "meme-clean.jpg")
    assert rows(slack.settings)[0]["user_id"] == "U0BOB"  # who asked, not who posted


async def test_the_shortcut_on_a_message_without_images_answers_only_the_person(slack: Slack) -> None:
    fake = slack.fake
    message = fake.message_event(channel=CHANNEL, channel_type="channel", text="no pictures here")
    await slack.post_form(fake.message_shortcut(message, channel=CHANNEL))
    await slack.settle()
    assert [r["text"] for r in fake.responses] == [messages.SLACK_NO_IMAGE]
    assert fake.responses[0]["response_type"] == "ephemeral" and fake.messages == []


async def test_the_slash_command_cleans_a_link_into_the_channel(settings: Settings, client: PicWishClient) -> None:
    photo = jpeg(280, 200, seed=6)
    web = Starlette(routes=[Route("/cat.jpg", lambda request: Response(photo, media_type="image/jpeg"))])
    async with serve(web) as site, running(configured(settings, {"allow_private_urls": True}), client) as slack:
        response = await slack.post_form(slack.fake.slash_command(f"{site}/cat.jpg", channel=CHANNEL))
        assert response.status_code == 200 and response.text == ""
        await slack.settle()

    [upload] = slack.fake.uploads
    assert (upload.channel, upload.thread_ts, upload.filename) == (CHANNEL, None, "cat-clean.jpg")
    # The one status line went to the person alone, through the response_url, and went once the image was posted.
    assert slack.fake.responses == [{"text": messages.WORKING, "response_type": "ephemeral"},
                                    {"text": "", "delete_original": True}]
    assert slack.fake.messages == []
    assert rows(slack.settings)[0]["chat_id"] == f"{TEAM_ID}:{CHANNEL}"


async def test_the_slash_command_with_garbage_explains_itself_privately(slack: Slack) -> None:
    response = await slack.post_form(slack.fake.slash_command("make it pretty"))
    assert response.status_code == 200
    assert response.json() == {"text": messages.SLACK_COMMAND_HINT, "response_type": "ephemeral"}  # in the ack
    await slack.settle()
    assert slack.fake.messages == [] and slack.fake.uploads == [] and rows(slack.settings) == []


async def test_the_slash_command_with_a_dead_link_answers_the_error_privately(slack: Slack) -> None:
    await slack.post_form(slack.fake.slash_command("https://127.0.0.1:9/gone.jpg"))
    await slack.settle()
    assert [r["text"] for r in slack.fake.responses] == [
        "I couldn't download an image from that link. Check that it is public and try again."]
    assert slack.fake.messages == []


async def test_slash_help_and_usage(slack: Slack) -> None:
    help_answer = await slack.post_form(slack.fake.slash_command("help"))
    assert help_answer.json()["text"].startswith(messages.about())
    assert messages.SLACK_HELP in help_answer.json()["text"]
    await slack.post_form(slack.fake.slash_command("usage"))
    await slack.settle()
    [usage] = slack.fake.responses
    assert usage["text"].startswith("Images cleaned today: 0; 50 of 50 left today")
    assert usage["response_type"] == "ephemeral"


async def test_a_direct_message_with_words_gets_help(slack: Slack) -> None:
    await slack.dm(text="hello there")
    await slack.settle()
    [reply] = slack.fake.in_channel(DM)
    assert reply.text.startswith(messages.about())


# --- Slack's rules ----------------------------------------------------------------------------------------


async def test_every_way_in_is_acked_within_three_seconds_while_the_remover_is_slow(settings: Settings) -> None:
    remover = GatedRemover()
    async with running(settings, remover) as slack:
        fake = slack.fake
        timings = []
        for deliver in (
            lambda: slack.dm(fake.add_file(jpeg(seed=7), "one.jpg")),
            lambda: slack.deliver(fake.event_callback(fake.mention_event(
                channel=CHANNEL, files=[fake.add_file(jpeg(seed=8), "two.jpg")]))),
            lambda: slack.post_form(fake.message_shortcut(fake.message_event(
                channel="C0RANDOM", channel_type="channel", files=[fake.add_file(jpeg(seed=9), "three.jpg")]),
                channel="C0RANDOM")),
        ):
            started = time.perf_counter()
            response = await deliver()
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
        await eventually(lambda: remover.started == 3)  # all three are being worked on, none is finished
        assert fake.uploads == []
        remover.release.set()
        await slack.settle()

    assert max(timings) < ACK_LIMIT, timings
    assert len(fake.uploads) == 3


async def test_a_bad_signature_is_rejected_and_nothing_runs(slack: Slack) -> None:
    fake = slack.fake
    payload = fake.event_callback(fake.message_event(channel=DM, files=[fake.add_file(jpeg(), "x.jpg")]))
    forged = await slack.deliver(payload, secret="not-the-secret")
    body = json.dumps(payload).encode()
    stale = await slack.http.post(EVENTS_PATH, content=body,
                                  headers=signed_headers(body, timestamp=int(time.time()) - 600))
    await slack.settle()
    assert (forged.status_code, stale.status_code) == (401, 401)
    assert fake.calls == [call for call in fake.calls if call.method == "auth.test"] and fake.downloads == []


async def test_slacks_url_verification_challenge_is_answered(slack: Slack) -> None:
    response = await slack.deliver({"token": "x", "challenge": "3eZbrw1a", "type": "url_verification"})
    assert response.status_code == 200 and response.json() == {"challenge": "3eZbrw1a"}


async def test_a_redelivered_event_is_processed_once(slack: Slack) -> None:
    fake = slack.fake
    photo = fake.add_file(jpeg(seed=10), "once.jpg")
    payload = fake.event_callback(fake.message_event(channel=DM, files=[photo]), event_id="Ev0SAME")
    first = await slack.deliver(payload)
    again = await slack.deliver(payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    await slack.settle()
    assert (first.status_code, again.status_code) == (200, 200)
    assert len(fake.uploads) == 1 and len(fake.downloads) == 1 and len(rows(slack.settings)) == 1

    # A redelivery of an event we never saw (we were down when Slack first sent it) is still handled.
    missed = fake.event_callback(fake.message_event(channel=DM, files=[fake.add_file(jpeg(seed=11), "m.jpg")]))
    await slack.deliver(missed, headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"})
    await slack.settle()
    assert len(fake.uploads) == 2


async def test_the_bots_own_uploads_are_ignored(slack: Slack) -> None:
    fake = slack.fake
    own = fake.message_event(channel=DM, user=fake.bot_user_id, files=[fake.add_file(jpeg(), "x-clean.jpg")])
    other_bot = fake.message_event(channel=DM, user="U0OTHER", files=[fake.add_file(jpeg(seed=1), "y.jpg")])
    other_bot["bot_id"] = "B0OTHER"
    for event in (own, other_bot):
        assert (await slack.deliver(fake.event_callback(event))).status_code == 200
    await slack.settle()
    assert fake.downloads == [] and fake.messages == [] and rows(slack.settings) == []


async def test_a_non_image_file_is_refused_without_downloading_it(slack: Slack) -> None:
    fake = slack.fake
    pdf = fake.add_file(b"%PDF-1.4 a report", "report.pdf", mimetype="application/pdf")
    await slack.dm(pdf)
    await slack.settle()
    [reply] = fake.in_channel(DM)
    assert reply.text == "That's a PDF, not an image. Send me a jpg, png or bmp."
    assert fake.downloads == [] and fake.uploads == []
    assert rows(slack.settings)[0]["error_code"] == "not_an_image"
    assert [(action, name) for action, *_, name in fake.reactions] == [
        ("add", "hourglass_flowing_sand"), ("remove", "hourglass_flowing_sand")]


async def test_an_oversize_file_is_refused_before_downloading(slack: Slack) -> None:
    fake = slack.fake
    await slack.dm(fake.add_file(jpeg(), "huge.jpg", size=60 * 2**20))
    await slack.settle()
    [reply] = fake.in_channel(DM)
    assert reply.text == "That file is 60 MB; the most I can take is 50 MB. Please send a smaller or compressed copy."
    assert fake.downloads == []


async def test_slacks_sign_in_page_is_an_error_not_an_image(slack: Slack) -> None:
    fake = slack.fake
    fake.files_readable = False  # as when the app lacks files:read
    await slack.dm(fake.add_file(jpeg(), "private.jpg"))
    await slack.settle()
    [reply] = fake.in_channel(DM)
    assert reply.text == ("I couldn't download that file from the chat. Please send it again; if this keeps happening, "
                          "the bot's operator should check its permission to read files.")
    assert fake.downloads[0][1] == f"Bearer {fake.bot_token}"
    assert rows(slack.settings)[0]["error_code"] == "file_unavailable"


async def test_the_fake_serves_files_only_to_the_bot_token() -> None:
    fake = FakeSlack()
    async with fake.serving(), httpx.AsyncClient() as http:
        url = fake.add_file(b"\xff\xd8\xff bytes", "a.jpg")["url_private"]
        anonymous = await http.get(url)
        wrong = await http.get(url, headers={"Authorization": "Bearer xoxb-someone-else"})
        right = await http.get(url, headers={"Authorization": f"Bearer {fake.bot_token}"})
    assert anonymous.status_code == wrong.status_code == 200  # Slack answers 200 with a sign-in page
    assert anonymous.headers["content-type"].startswith("text/html") and "Sign in" in wrong.text
    assert right.content == b"\xff\xd8\xff bytes"


async def test_a_file_shared_by_id_only_is_looked_up_with_files_info(slack: Slack) -> None:
    fake = slack.fake
    full = fake.add_file(jpeg(seed=12), "connect.jpg")
    await slack.dm({"id": full["id"], "mode": "file_access", "file_access": "check_file_info"})
    await slack.settle()
    assert [call.params["file"] for call in fake.called("files.info")] == [full["id"]]
    assert [u.filename for u in fake.uploads] == ["connect-clean.jpg"]


async def test_a_picwish_failure_is_told_in_the_status_message(slack: Slack, fake: FakePicWish) -> None:
    fake.fail("POST", "/api/tasks", 502, times=50)
    await slack.dm(slack.fake.add_file(jpeg(seed=13), "down.jpg"))
    await slack.settle()
    [status] = slack.fake.in_channel(DM)
    assert status.texts[0] == messages.WORKING and not status.deleted
    assert status.text == "The watermark service is not answering right now. Please try again in a few minutes."
    assert slack.fake.uploads == []
    assert [(a, n) for a, *_, n in slack.fake.reactions] == [
        ("add", "hourglass_flowing_sand"), ("remove", "hourglass_flowing_sand")]
    assert rows(slack.settings)[0]["error_code"] == "remover_down"


async def test_a_rate_limited_upload_waits_for_retry_after_and_lands(slack: Slack) -> None:
    fake = slack.fake
    fake.rate_limit("files.completeUploadExternal", retry_after=1)
    await slack.dm(fake.add_file(jpeg(seed=14), "busy.jpg"))
    await slack.settle()
    refused, accepted = fake.called("files.completeUploadExternal")
    assert (refused.status, accepted.status) == (429, 200)
    assert accepted.at - refused.at >= 1.0
    assert [u.filename for u in fake.uploads] == ["busy-clean.jpg"]


async def test_the_status_line_is_edited_at_most_once_per_interval_and_shows_the_latest(settings: Settings) -> None:
    async with running(settings, ChattyRemover(), status_interval=0.05) as slack:
        await slack.dm(slack.fake.add_file(jpeg(seed=15), "steps.jpg"))
        await slack.settle()
    [status] = slack.fake.in_channel(DM)
    [post] = slack.fake.called("chat.postMessage")
    [edit] = slack.fake.called("chat.update")  # ten reports within the interval: one edit
    assert edit.at - post.at >= 0.05
    assert status.texts == [messages.WORKING, "Removing the watermark… 100%"] and status.deleted


async def test_the_daily_limit_counts_per_conversation(settings: Settings, client: PicWishClient) -> None:
    async with running(configured(settings, {"daily_limit": 1}), client) as slack:
        fake = slack.fake
        await slack.dm(fake.add_file(jpeg(seed=16), "first.jpg"))
        await slack.settle()
        await slack.dm(fake.add_file(jpeg(seed=17), "second.jpg"))
        await slack.deliver(fake.event_callback(fake.mention_event(
            channel=CHANNEL, files=[fake.add_file(jpeg(seed=18), "elsewhere.jpg")])))
        await slack.settle()
    assert sorted(u.filename for u in fake.uploads) == ["elsewhere-clean.jpg", "first-clean.jpg"]
    assert fake.in_channel(DM)[-1].text.startswith("This chat has used its 1 image for today.")


async def test_app_home_shows_this_workspaces_usage_and_the_limits(slack: Slack) -> None:
    fake = slack.fake
    await slack.dm(fake.add_file(jpeg(seed=19), "a.jpg"))
    await slack.deliver(fake.event_callback(fake.mention_event(
        channel=CHANNEL, files=[fake.add_file(jpeg(seed=20), "b.jpg"), fake.add_file(jpeg(seed=21), "c.jpg")])))
    await slack.settle()
    # Another workspace's images are not this workspace's business.
    await slack.bot.service.usage.start(ImageJob(ChatRef("slack", "T0OTHER:C0X", "U9"), "F0X"), backend="gated")
    await slack.deliver(fake.event_callback({"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE",
                                             "tab": "home", "event_ts": "1700000000.1"}))
    await slack.settle()

    [published] = fake.views
    assert published["user_id"] == "U0ALICE"
    texts = [block["text"]["text"] for block in published["view"]["blocks"]]
    assert texts[0] == messages.SLACK_HOME_TITLE
    assert texts[1] == "This workspace: 3 images cleaned today, 3 in the last 30 days."
    assert texts[2] == f"Busiest in the last 30 days: <#{CHANNEL}> (2), direct messages (1)."
    assert texts[3].startswith("Each channel and direct message may clean 50 images a day")


# --- modes and set-up ---------------------------------------------------------------------------------------


async def test_socket_mode_connects_and_handles_an_event(settings: Settings, client: PicWishClient) -> None:
    fake = FakeSlack()
    async with fake.serving():
        socket_settings = configured(settings, {
            "slack_bot_token": fake.bot_token, "slack_app_token": fake.app_token, "slack_api_url": fake.api_url})
        async with open_service(socket_settings, remover=client) as service:
            runner = asyncio.create_task(run(service, socket_settings))
            event = fake.message_event(channel=DM, files=[fake.add_file(jpeg(seed=22), "socket.jpg")])
            envelope = fake.socket_envelope(fake.event_callback(event))
            await fake.push(envelope)
            await fake.wait_for(lambda: len(fake.uploads) == 1, timeout=SETTLE)
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    assert [ack["envelope_id"] for ack in fake.socket_acks] == [envelope["envelope_id"]]
    assert [call.token for call in fake.called("apps.connections.open")] == [fake.app_token]
    assert [(u.channel, u.filename) for u in fake.uploads] == [(DM, "socket-clean.jpg")]
    assert rows(socket_settings)[0]["state"] == "done"


async def test_a_refused_token_stops_start_up_with_one_line(settings: Settings, client: PicWishClient) -> None:
    fake = FakeSlack()
    async with fake.serving(), open_service(settings, remover=client) as service:
        bad = configured(settings, {"slack_bot_token": "xoxb-wrong", "slack_api_url": fake.api_url})
        with pytest.raises(SettingsError, match=r"^SLACK_BOT_TOKEN: Slack refused it \(invalid_auth\)$"):
            async with open_slack(service, bad):
                pass
        bad_app = configured(settings, {"slack_bot_token": fake.bot_token, "slack_app_token": "xapp-wrong",
                                              "slack_api_url": fake.api_url})
        with pytest.raises(SettingsError, match=r"^SLACK_APP_TOKEN: "):
            await run(service, bad_app)


async def test_http_mode_needs_the_signing_secret(settings: Settings, client: PicWishClient) -> None:
    fake = FakeSlack()
    async with fake.serving(), open_service(settings, remover=client) as service:
        no_secret = configured(settings, {"slack_bot_token": fake.bot_token, "slack_api_url": fake.api_url})
        async with open_slack(service, no_secret) as bot:
            with pytest.raises(SettingsError, match="^SLACK_SIGNING_SECRET: "):
                slack_routes(bot)


def test_unmark_run_starts_socket_mode_when_the_app_token_is_set(settings: Settings) -> None:
    socket = configured(settings, {"slack_bot_token": "xoxb-1", "slack_app_token": "xapp-1"})
    assert plan(socket) == [run]
    no_secret = configured(settings, {"slack_bot_token": "xoxb-1"})
    with pytest.raises(SettingsError, match="^SLACK_SIGNING_SECRET: "):
        plan(no_secret)
    http = configured(settings, {"slack_bot_token": "xoxb-1", "slack_signing_secret": "s"})
    with pytest.raises(SettingsError, match="^SLACK_APP_TOKEN: .* `unmark run --webhook`$"):
        plan(http)  # nothing for the worker to run: Slack is the web process's
    assert plan(http, webhook=True) == [web.run]
    beside_telegram = configured(settings, {"slack_bot_token": "xoxb-1", "slack_signing_secret": "s",
                                            "telegram_bot_token": "123:abc"})
    assert run not in plan(beside_telegram)  # the worker polls Telegram; Slack stays with the web process


async def test_the_web_process_serves_slack_events_beside_healthz(settings: Settings, client: PicWishClient) -> None:
    fake = FakeSlack()
    async with fake.serving():
        http_settings = configured(settings, {"slack_bot_token": fake.bot_token, "slack_api_url": fake.api_url,
                                              "slack_signing_secret": SIGNING_SECRET})
        async with open_service(http_settings, remover=client) as service:
            app = web.create_web_app(service, http_settings)
            async with (app.router.lifespan_context(app), serve(app) as url,
                        httpx.AsyncClient(base_url=url, timeout=10) as http):
                assert (await http.get("/healthz")).status_code == 200
                event = fake.message_event(channel=DM, files=[fake.add_file(jpeg(seed=23), "web.jpg")])
                body = json.dumps(fake.event_callback(event)).encode()
                response = await http.post(EVENTS_PATH, content=body, headers=signed_headers(body))
                assert response.status_code == 200
                await fake.wait_for(lambda: len(fake.uploads) == 1, timeout=SETTLE)
    assert [(u.channel, u.filename) for u in fake.uploads] == [(DM, "web-clean.jpg")]


def test_the_manifest_declares_what_the_adapter_listens_to() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((ROOT / "slack-manifest.yml").read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read", "chat:write", "commands", "files:read", "files:write", "im:history",
        "channels:history", "groups:history", "reactions:write", "users:read"}
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "app_mention", "message.im", "app_home_opened"}
    [shortcut] = manifest["features"]["shortcuts"]
    assert (shortcut["type"], shortcut["callback_id"], shortcut["name"]) == ("message", SHORTCUT_ID, "Remove watermark")
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == COMMAND
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    urls = [command["url"], manifest["settings"]["event_subscriptions"]["request_url"],
            manifest["settings"]["interactivity"]["request_url"]]
    assert all(url.endswith(EVENTS_PATH) for url in urls)


# --- restarts ----------------------------------------------------------------------------------------------


async def test_jobs_cut_off_by_a_stop_are_answered_in_their_place_after_the_restart(settings: Settings) -> None:
    fake, remover = FakeSlack(), GatedRemover()
    quick = settings.model_copy(update={"shutdown_grace": 0.2})
    async with running(quick, remover, fake=fake) as slack:
        shared = fake.add_file(jpeg(seed=40), "harbour.jpg")
        mention = fake.mention_event(channel=CHANNEL, files=[shared])
        await slack.deliver(fake.event_callback(mention))
        await eventually(lambda: remover.started == 1)
        await slack.post_form(fake.slash_command("https://127.0.0.1:9/gone.jpg", channel=CHANNEL))
        await eventually(lambda: len(rows(quick)) == 2)
    # Stopped past the grace period: the image was being cleaned, the link waited its turn.
    assert fake.uploads == [] and [r["state"] for r in rows(quick)] == ["running", "queued"]

    remover.release.set()
    async with running(quick, remover, fake=fake) as slack:
        await eventually(lambda: fake.uploads and fake.ephemerals)
        await slack.settle()

    [upload] = fake.uploads
    assert (upload.filename, upload.channel, upload.thread_ts) == ("harbour-clean.jpg", CHANNEL, mention["ts"])
    assert [c.params["file"] for c in fake.called("files.info")] == [shared["id"]]  # the restart forgot the event
    # The command's response_url was forgotten too: its place in line and its error still reach only the asker.
    assert {(note["channel"], note["user"]) for note in fake.ephemerals} == {(CHANNEL, "U0ALICE")}
    assert fake.ephemerals[-1]["text"].startswith("I couldn't download an image from that link.")
    assert [r["state"] for r in rows(quick)] == ["done", "failed"]


async def test_an_image_without_a_watermark_is_answered_in_words_and_spends_no_image(
        settings: Settings, local_engine: LocalRemover) -> None:
    async with running(configured(settings, {"daily_limit": 1}), local_engine) as slack:
        fake = slack.fake
        event = fake.mention_event(channel=CHANNEL, files=[fake.add_file(jpeg(seed=21), "holiday.jpg")])
        await slack.deliver(fake.event_callback(event))
        await slack.settle()
        await slack.dm(fake.add_file(marked(), "marked.png", mimetype="image/png"))
        await slack.settle()

    # The clean image gets one sentence in its thread, no file; the marked one still had the day's image.
    [answer] = fake.in_channel(CHANNEL)
    assert (answer.text, answer.thread_ts) == (messages.NO_WATERMARK, event["ts"])
    assert [(u.channel, u.filename) for u in fake.uploads] == [(DM, "marked-clean.png")]
    assert [(r["state"], r["unchanged"], r["counted"]) for r in rows(slack.settings)] == [("done", 1, 0),
                                                                                          ("done", 0, 1)]
