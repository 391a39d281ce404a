"""The web process in-process: ``create_web_app`` through its lifespan, with PTB against the fake Bot API, and
``adapters.plan`` choosing what ``unmark run`` (and ``--webhook``) starts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from adapters import plan, shell, web
from adapters import telegram as adapter
from bot.config import Settings, SettingsError
from bot.core import open_service
from bot.picwish import PicWishClient
from tests.conftest import jpeg
from tests.fakes.telegram import SECRET_HEADER, TOKEN, FakeBotAPI

SECRET = "a-Secret_42"


@pytest.fixture
def tg() -> FakeBotAPI:
    return FakeBotAPI()


@pytest.fixture
async def webhook_settings(settings: Settings, tg: FakeBotAPI) -> AsyncIterator[Settings]:
    async with tg.running() as url:
        yield settings.model_copy(update={
            "telegram_bot_token": SecretStr(TOKEN), "telegram_api_url": url,
            "telegram_webhook_url": "https://bot.example.com", "telegram_webhook_secret": SecretStr(SECRET)})


async def test_the_web_app_serves_healthz_and_takes_telegram_updates_only_with_the_secret(
        webhook_settings: Settings, tg: FakeBotAPI, client: PicWishClient) -> None:
    chat = tg.private_chat()
    async with open_service(webhook_settings, remover=client) as service:
        app = web.create_web_app(service, webhook_settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://web.test") as http:
            assert tg.webhook is not None
            assert (tg.webhook.url, tg.webhook.secret) == ("https://bot.example.com/telegram", SECRET)
            assert (await http.get("/healthz")).json() == {"status": "ok"}

            photo = tg.send_photo(chat, jpeg(200, 100))
            update = {"update_id": 1, "message": photo}
            assert (await http.post("/telegram", json=update)).status_code == 403
            assert (await http.post("/telegram", json=update, headers={SECRET_HEADER: "wrong"})).status_code == 403
            assert (await http.post("/telegram", content=b"{", headers={SECRET_HEADER: SECRET})).status_code == 400
            assert (await http.post("/telegram", json=update, headers={SECRET_HEADER: SECRET})).status_code == 200
            await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1)

    [result] = tg.documents(chat)
    assert result.reply_to == photo["message_id"] and result.document is not None
    assert result.document.filename == "photo-clean.jpg"


def test_plan_polls_with_a_token_and_serves_webhooks_only_with_the_flag(settings: Settings) -> None:
    token = {"telegram_bot_token": SecretStr(TOKEN)}
    hooked = {**token, "telegram_webhook_url": "https://bot.example.com/tg", "telegram_webhook_secret": SecretStr(SECRET)}
    assert plan(settings) == [shell.run]
    assert plan(settings.model_copy(update=token)) == [adapter.run]
    assert plan(settings.model_copy(update=hooked), webhook=True) == [web.run]
    with pytest.raises(SettingsError, match="^TELEGRAM_WEBHOOK_URL: set, so Telegram is served by"):
        plan(settings.model_copy(update=hooked))
    # The web process (the Procfile's one) polls beside /healthz when no webhook is set; with nothing, it refuses.
    assert plan(settings.model_copy(update=token), webhook=True) == [web.run, adapter.run]
    with pytest.raises(SettingsError, match="^TELEGRAM_WEBHOOK_URL: `unmark run --webhook` serves webhooks"):
        plan(settings, webhook=True)
    with pytest.raises(SettingsError, match="^TELEGRAM_WEBHOOK_SECRET: "):
        plan(settings.model_copy(update={**hooked, "telegram_webhook_secret": SecretStr("has spaces")}), webhook=True)


def test_the_webhook_route_is_the_path_of_the_webhook_url(settings: Settings) -> None:
    def route(url: str) -> tuple[str, str]:
        hooked = settings.model_copy(update={"telegram_bot_token": SecretStr(TOKEN), "telegram_webhook_url": url,
                                             "telegram_webhook_secret": SecretStr(SECRET)})
        registered, path, _ = adapter.webhook_settings(hooked)
        return registered, path

    assert route("https://bot.example.com/hooks/tg/") == ("https://bot.example.com/hooks/tg/", "/hooks/tg")
    assert route("https://bot.example.com") == ("https://bot.example.com/telegram", "/telegram")
