"""Settings: every environment variable unmark reads, typed, read once; secrets masked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot import i18n

DEFAULT_PICWISH_URL = "https://techhk.aoscdn.com"
# The person at the terminal (the shell chat, `unmark clean`) runs the bot: they are its operator, not a stranger
# the daily limit protects it from, so no limit applies there (issue 28).
LOCAL_PLATFORMS: frozenset[str] = frozenset({"shell", "cli"})


class Settings(BaseSettings):
    """The one configuration object, built in ``bot.cli.main`` and passed down explicitly."""

    model_config = SettingsConfigDict(env_file=".env", frozen=True, extra="ignore", populate_by_name=True)

    picwish_api_key: SecretStr | None = Field(None, validation_alias="PICWISH_API_KEY")
    picwish_api_url: str = Field(DEFAULT_PICWISH_URL, validation_alias="PICWISH_API_URL")
    picwish_timeout: float = Field(60.0, gt=0, validation_alias="PICWISH_TIMEOUT")
    # Requests per second the key allows (PicWish's default is 2); every process on one database shares it.
    picwish_qps: float = Field(2.0, gt=0, validation_alias="PICWISH_QPS")
    # A SQLite file, or a postgresql:// URL that several processes share (the job queue then runs there).
    database: str = Field("unmark.sqlite3", min_length=1, validation_alias="UNMARK_DATABASE")
    daily_limit: int = Field(50, ge=0, validation_alias="UNMARK_DAILY_LIMIT")
    concurrency: int = Field(4, ge=1, le=64, validation_alias="UNMARK_CONCURRENCY")
    admins: Annotated[frozenset[str], NoDecode] = Field(frozenset(), validation_alias="UNMARK_ADMINS")
    # Seconds running jobs get at SIGTERM before the process leaves them for its next start; platforms
    # send SIGKILL some seconds after SIGTERM (Heroku 30, Kubernetes 30, Fly 5 by default): stay under it.
    shutdown_grace: float = Field(20.0, ge=0, validation_alias="UNMARK_SHUTDOWN_GRACE")
    # With PostgreSQL: a worker silent this long (killed, frozen, cut off) has its jobs handed to another.
    stalled_after: float = Field(30.0, ge=1, validation_alias="UNMARK_STALLED_AFTER")
    allow_private_urls: bool = Field(False, validation_alias="UNMARK_ALLOW_PRIVATE_URLS")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias="UNMARK_LOG_LEVEL")
    # Everybody reads this language, whatever their platform or terminal says (unset: each person their own).
    language: str | None = Field(None, validation_alias="UNMARK_LANGUAGE")
    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_api_url: str = Field("https://api.telegram.org", validation_alias="TELEGRAM_API_URL")
    telegram_webhook_url: str | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: SecretStr | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_SECRET")
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    port: int = Field(8080, ge=1, le=65535, validation_alias="PORT")
    # `unmark serve`, the self-hosted PicWish-compatible API (bot.server). Keys are secrets like PicWish's;
    # the rest are its limits and where it keeps uploads, results and the tasks database.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field((), validation_alias="UNMARK_API_KEYS")
    server_qps: float = Field(2.0, gt=0, validation_alias="UNMARK_SERVER_QPS")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64, validation_alias="UNMARK_WORKERS")
    data_dir: Path = Field(Path("unmark-data"), validation_alias="UNMARK_DATA_DIR")
    processing_timeout: float = Field(30.0, gt=0, validation_alias="UNMARK_PROCESSING_TIMEOUT")
    public_url: str | None = Field(None, validation_alias="UNMARK_PUBLIC_URL")

    @field_validator("admins", mode="before")
    @classmethod
    def _parse_admins(cls, value: Any) -> frozenset[str]:
        """``telegram:123,slack:U456`` → {"telegram:123", "slack:U456"}."""
        if isinstance(value, str):
            entries = [part.strip() for part in value.split(",") if part.strip()]
        else:
            entries = list(value or ())
        for entry in entries:
            platform, _, user = entry.partition(":")
            if not platform or not user:
                raise ValueError(f"expected platform:user_id, got {entry!r}")
        return frozenset(entries)

    @field_validator("database", mode="before")
    @classmethod
    def _path_is_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, os.PathLike) else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> tuple[str, ...]:
        """``key-1, key-2`` → ("key-1", "key-2"); blanks are dropped."""
        entries = value.split(",") if isinstance(value, str) else value or ()
        keys = (e.get_secret_value() if isinstance(e, SecretStr) else str(e) for e in entries)
        return tuple(key.strip() for key in keys if key.strip())

    @field_validator("language", mode="before")
    @classmethod
    def _known_language(cls, value: Any) -> str | None:
        """A language unmark has a catalog for, as any platform would name it (``zh``, ``zh-CN``); blank is unset."""
        if value is None or not str(value).strip():
            return None
        if i18n.match(str(value)) is None:
            raise ValueError(f"no translation for {value!r}; choose from {', '.join(sorted(i18n.available().values()))}")
        return str(value).strip()

    @field_validator("picwish_api_url", "telegram_api_url", "slack_api_url", "telegram_webhook_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @field_validator("picwish_api_key", "telegram_bot_token", "slack_bot_token", "slack_app_token",
                     "slack_signing_secret", "telegram_webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `PICWISH_API_KEY=` in a .env means "not set", not "an empty key".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def shared(self) -> bool:
        """Jobs, quotas and the cache live in PostgreSQL, where any process on it may run any job."""
        return self.database.startswith(("postgresql://", "postgres://"))

    @property
    def uses_picwish(self) -> bool:
        """A PicWish key selects the API; without one the local engine runs."""
        return self.picwish_api_key is not None

    @property
    def telegram_mode(self) -> Literal["webhook", "polling"] | None:
        """How Telegram is reached, or None when it is not configured."""
        if self.telegram_bot_token is None:
            return None
        return "webhook" if self.telegram_webhook_url else "polling"

    @property
    def slack_mode(self) -> Literal["socket", "http"] | None:
        """Socket Mode with an app token, HTTP with only a signing secret, else None."""
        if self.slack_bot_token is None:
            return None
        return "socket" if self.slack_app_token else "http"

    def daily_limit_for(self, platform: str) -> int:
        """The images a chat of ``platform`` may clean per UTC day; 0 (none) at the terminal."""
        return 0 if platform in LOCAL_PLATFORMS else self.daily_limit

    def is_admin(self, platform: str, user_id: str) -> bool:
        """Whether this user may see global stats and is exempt from the daily limit."""
        return f"{platform}:{user_id}" in self.admins


def terminal_language(environ: Mapping[str, str] | None = None) -> str:
    """The terminal's language (the shell chat, `unmark clean`) as POSIX reads it: the first of LC_ALL, LC_MESSAGES
    and LANG that is set and not blank. Not a setting: it belongs to the terminal, not to the deployment."""
    environ = os.environ if environ is None else environ
    return next((value for name in ("LC_ALL", "LC_MESSAGES", "LANG") if (value := environ.get(name, "").strip())), "")


class SettingsError(Exception):
    """A bad environment variable; the message is one line that names it."""


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and ``.env``) once; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        raise SettingsError(f"{name}: {first['msg']}") from None
