"""Slack leftovers of issue 28, through real Bolt and slack_sdk against FakeSlack on loopback: a slash command's
private status goes once its image is posted; a mention in a thread cleans the image the thread is about."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from bot import messages
from bot.config import Settings
from bot.picwish import PicWishClient
from tests.conftest import jpeg
from tests.fakes.servers import serve
from tests.test_slack import CHANNEL, Slack, configured, running, slack  # noqa: F401, F811  (fixture)


async def test_the_slash_commands_private_status_is_gone_once_the_image_is_posted(
        settings: Settings, client: PicWishClient) -> None:
    photo = jpeg(280, 200, seed=6)
    web = Starlette(routes=[Route("/cat.jpg", lambda request: Response(photo, media_type="image/jpeg"))])
    async with serve(web) as site, running(configured(settings, {"allow_private_urls": True}), client) as slack:
        await slack.post_form(slack.fake.slash_command(f"{site}/cat.jpg", channel=CHANNEL))
        await slack.settle()

    assert [upload.filename for upload in slack.fake.uploads] == ["cat-clean.jpg"]
    assert slack.fake.responses[0]["text"] == messages.WORKING  # it was shown while working
    assert slack.fake.ephemeral_shown() == []


async def test_the_slash_commands_error_stays_for_the_person_to_read(slack: Slack) -> None:  # noqa: F811
    await slack.post_form(slack.fake.slash_command("https://127.0.0.1:9/gone.jpg"))
    await slack.settle()
    assert slack.fake.ephemeral_shown() == [
        "I couldn't download an image from that link. Check that it is public and try again."]


async def test_a_mention_in_a_thread_without_an_image_cleans_the_threads_image(slack: Slack) -> None:  # noqa: F811
    fake = slack.fake
    parent = fake.post_as_person(fake.message_event(channel=CHANNEL, channel_type="channel", text="look",
                                                    files=[fake.add_file(jpeg(seed=8), "sunset.jpg")]))
    fake.post_as_person(fake.message_event(channel=CHANNEL, channel_type="channel", text="nice",
                                           thread_ts=parent["ts"]))
    mention = fake.mention_event(channel=CHANNEL, text="please clean it", thread_ts=parent["ts"])

    await slack.deliver(fake.event_callback(mention))
    await slack.settle()

    [upload] = fake.uploads
    assert (upload.channel, upload.thread_ts, upload.filename) == (CHANNEL, parent["ts"], "sunset-clean.jpg")
    [call] = fake.called("conversations.replies")
    assert (call.params["channel"], call.params["ts"]) == (CHANNEL, parent["ts"])


async def test_a_mention_in_a_thread_whose_parent_has_no_image_says_how(slack: Slack) -> None:  # noqa: F811
    fake = slack.fake
    parent = fake.post_as_person(fake.message_event(channel=CHANNEL, channel_type="channel", text="just words"))
    await slack.deliver(fake.event_callback(fake.mention_event(channel=CHANNEL, text="hi", thread_ts=parent["ts"])))
    await slack.settle()
    assert [m.text for m in fake.in_channel(CHANNEL)] == [messages.SLACK_NO_IMAGE] and fake.uploads == []
