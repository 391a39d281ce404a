"""A Telegram group with privacy mode on (issue 28): only an album's captioned item reaches the bot, so /help
says how to get the others cleaned, and /clean as a reply to any item does it. Real PTB against FakeBotAPI."""

from __future__ import annotations

import asyncio

from bot import messages
from tests.conftest import jpeg
from tests.fakes.telegram import FakeBotAPI
from tests.test_telegram import api_url, bot, service, tg, tg_settings  # noqa: F401  (fixtures)


async def test_in_a_private_group_clean_replying_to_any_album_item_cleans_it(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:  # noqa: F811
    tg.privacy_mode = True
    group = tg.group_chat()
    bob = tg.person("Bob")
    album = tg.send_album(group, [jpeg(300, 200, seed=i) for i in range(3)], caption="/clean", sender=bob)
    await tg.wait_for(lambda: len(tg.documents(group)) == 1 and len(tg.sent(group)) == 1)
    tg.send_text(group, "/clean", sender=bob, reply_to=album[2])
    await tg.wait_for(lambda: len(tg.documents(group)) == 2 and len(tg.sent(group)) == 2)

    assert [m.reply_to for m in tg.documents(group)] == [album[0]["message_id"], album[2]["message_id"]]


async def test_help_in_a_group_says_how_to_clean_the_rest_of_an_album(
        tg: FakeBotAPI, bot: asyncio.Task[None]) -> None:  # noqa: F811
    group = tg.group_chat()
    tg.send_text(group, "/help")
    await tg.wait_for(lambda: tg.transcript(group))
    [answer] = tg.transcript(group)
    assert answer.endswith("In an album, Telegram shows me only the item with the caption: reply /clean to any "
                           "other item to clean it too.")
    assert messages.TELEGRAM_ALBUMS in answer
