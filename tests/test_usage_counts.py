"""/usage and the daily limit agree (issue 28, defect 3): in a Telegram chat with a limit of 2, through the real
adapter against the fake Bot API, a cache answer is said apart and costs nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import Settings
from bot.core import Service, open_service
from bot.picwish import PicWishClient
from tests.conftest import jpeg
from tests.fakes.telegram import FakeBotAPI
from tests.test_telegram import api_url, polling, tg, tg_settings  # noqa: F401  (fixtures)


@pytest.fixture
def limited_settings(tg_settings: Settings) -> Settings:  # noqa: F811
    return tg_settings.model_copy(update={"daily_limit": 2})


@pytest.fixture
async def limited(limited_settings: Settings, client: PicWishClient) -> AsyncIterator[Service]:
    async with open_service(limited_settings, remover=client) as service:
        yield service


async def test_usage_says_cache_answers_apart_and_counts_what_the_limit_counts(
        tg: FakeBotAPI, limited: Service, limited_settings: Settings) -> None:  # noqa: F811
    chat = tg.private_chat()

    async def answer(send: object) -> str:
        """The one answer the chat keeps (the status line is gone) after the message just sent."""
        count = len(tg.transcript(chat))
        await tg.wait_for(lambda: len(tg.transcript(chat)) == count + 1 and not any(
            line.startswith("Removing the watermark") for line in tg.transcript(chat)))
        return tg.transcript(chat)[-1]

    async with polling(limited, limited_settings, tg):
        assert (await answer(tg.send_photo(chat, jpeg(320, 240, seed=1)))).startswith(
            "[photo-clean.jpg] Watermark removed in ")
        assert (await answer(tg.send_photo(chat, jpeg(320, 240, seed=1)))).startswith(
            "[photo-clean.jpg] I cleaned this exact image within the hour")
        assert (await answer(tg.send_text(chat, "/usage"))).startswith(
            "Images cleaned today: 1 (and 1 sent again free from the cache); 1 of 2 left today (resets at 00:00 UTC).")
        assert (await answer(tg.send_photo(chat, jpeg(320, 240, seed=2)))).startswith(
            "[photo-clean.jpg] Watermark removed in ")
        assert (await answer(tg.send_text(chat, "/usage"))).startswith(
            "Images cleaned today: 2 (and 1 sent again free from the cache); 0 of 2 left today (resets at 00:00 UTC).")
        assert (await answer(tg.send_photo(chat, jpeg(320, 240, seed=3)))).startswith(
            "This chat has used its 2 images for today.")
