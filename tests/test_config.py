"""Settings: read from the environment and .env once, typed; a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings


def test_defaults_select_the_local_engine_and_the_shell() -> None:
    settings = load_settings()
    assert not settings.uses_picwish
    assert settings.telegram_mode is None and settings.slack_mode is None
    assert (settings.daily_limit, settings.concurrency, settings.port) == (50, 4, 8080)
    assert settings.picwish_api_url == "https://techhk.aoscdn.com"


def test_environment_is_read_and_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICWISH_API_KEY", "sk-secret")
    monkeypatch.setenv("UNMARK_ADMINS", "telegram:123, slack:U456")
    monkeypatch.setenv("UNMARK_DAILY_LIMIT", "0")
    settings = load_settings()
    assert settings.uses_picwish and "sk-secret" not in repr(settings)
    assert settings.is_admin("slack", "U456") and not settings.is_admin("slack", "U457")
    assert settings.daily_limit == 0


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("UNMARK_DAILY_LIMIT=7\nTELEGRAM_BOT_TOKEN=123:abc\nTELEGRAM_WEBHOOK_URL=https://x.example/tg\n")
    settings = load_settings()
    assert settings.daily_limit == 7 and settings.telegram_mode == "webhook"


def test_an_empty_key_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICWISH_API_KEY", "")
    assert not load_settings().uses_picwish


@pytest.mark.parametrize("name, value", [
    ("UNMARK_DAILY_LIMIT", "lots"),
    ("UNMARK_CONCURRENCY", "0"),
    ("PORT", "70000"),
    ("UNMARK_ADMINS", "telegram"),
    ("PICWISH_API_URL", "ftp://example.com"),
])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
