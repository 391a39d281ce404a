"""The deployment files work as committed (issue 28): every Procfile process, started as a Procfile runner starts
it, serves the documented setups; .env.example names every setting, secrets empty, and loads as it is."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.config import Settings, load_settings
from tests.conftest import KEY, jpeg, marked
from tests.fakes.picwish import FakePicWish
from tests.fakes.servers import serve
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import TOKEN, FakeBotAPI
from tests.test_telegram import free_port, unmark

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"PICWISH_API_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
           "SLACK_SIGNING_SECRET", "UNMARK_API_KEYS"}


def procfile() -> dict[str, list[str]]:
    """Process name → the arguments after `unmark`."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            words = shlex.split(command)
            assert words[0] == "unmark", line
            processes[name.strip()] = words[1:]
    return processes


def receivers() -> list[str]:
    """The Procfile processes that take updates in (`unmark run`); `worker` only cleans queued images."""
    return sorted(name for name, args in procfile().items() if args[0] == "run")


def settings_names() -> set[str]:
    return {str(field.validation_alias) for field in Settings.model_fields.values()}


@pytest.mark.parametrize("process", receivers())
async def test_each_procfile_process_serves_telegram_polling_and_answers_healthz(process: str) -> None:
    tg = FakeBotAPI()
    chat = tg.private_chat()
    port = free_port()
    async with tg.running() as api_url:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PORT": str(port)}
        async with unmark(*procfile()[process], env=env) as bot, httpx.AsyncClient(timeout=5) as http:
            await tg.wait_for(lambda: tg.calls_to("getUpdates") or bot.process.returncode is not None, timeout=30)
            assert bot.process.returncode is None, bytes(bot.stderr).decode()
            health = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            tg.send_photo(chat, marked(320, 240, fmt="jpeg"))  # no PicWish key: the bundled engine cleans it
            await tg.wait_for(lambda: tg.documents(chat) and len(tg.sent(chat)) == 1, timeout=30)
            err = await bot.stop()
    assert bot.process.returncode == 0, err
    assert tg.transcript(chat)[0].startswith("[photo-clean.jpg] Watermark removed in ")


@pytest.mark.parametrize("process", receivers())
async def test_each_procfile_process_serves_slack_socket_mode(process: str) -> None:
    fake = FakeSlack()
    port = free_port()
    async with fake.serving():
        env = {"SLACK_BOT_TOKEN": fake.bot_token, "SLACK_APP_TOKEN": fake.app_token, "SLACK_API_URL": fake.api_url,
               "PORT": str(port)}
        async with unmark(*procfile()[process], env=env) as bot:
            await fake.wait_for(lambda: bool(fake.called("apps.connections.open")), timeout=30)
            async with httpx.AsyncClient(timeout=5) as http:
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            err = await bot.stop()
    assert bot.process.returncode == 0, err


def test_env_example_names_every_setting_with_secrets_empty() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    named = {match[1]: match[2] for line in lines if (match := re.match(r"^#? ?([A-Z][A-Z0-9_]+)=(.*)$", line))}
    assert set(named) == settings_names()
    assert {name for name in SECRETS if named[name] == "" and f"{name}=" in lines} == SECRETS
    # Each setting has a comment saying what it is, on the line above.
    for index, line in enumerate(lines):
        if re.match(r"^#? ?[A-Z][A-Z0-9_]+=", line):
            assert lines[index - 1].startswith("# ") and not re.match(r"^# [A-Z][A-Z0-9_]+=", lines[index - 1]), line


def test_env_example_copied_to_env_loads_the_defaults(tmp_path: Path) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # the tests run in tmp_path
    assert load_settings() == Settings(_env_file=None)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_compose_file_runs_postgres_a_receiver_two_workers_and_the_api_behind_a_profile() -> None:
    services = compose()["services"]
    assert services["web"]["command"] == ["run", "--webhook", "--no-work"]
    assert (services["worker"]["command"], services["worker"]["deploy"]["replicas"]) == (["worker"], 2)
    assert services["api"]["profiles"] == ["api"] and services["api"]["command"][0] == "serve"
    database = services["worker"]["environment"]["UNMARK_DATABASE"]
    assert database.startswith("postgresql://") and "@postgres:5432/" in database
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["unmark"]' in dockerfile and "USER unmark" in dockerfile
    assert "[postgres]" in dockerfile  # the image can join a shared database


async def test_the_compose_web_and_worker_commands_clean_a_photo_together(postgres_url: str) -> None:
    """What the containers run, run here (Docker itself is not needed to test it): the receiver queues, the
    worker cleans and answers."""
    services = compose()["services"]
    tg, picwish = FakeBotAPI(), FakePicWish(keys={KEY})
    chat = tg.private_chat()
    port = free_port()
    async with tg.running() as api_url, serve(picwish.app) as picwish_url:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PICWISH_API_KEY": KEY,
               "PICWISH_API_URL": picwish_url, "UNMARK_DATABASE": postgres_url, "PORT": str(port)}
        async with (unmark(*services["web"]["command"], env=env) as web,
                    unmark(*services["worker"]["command"], env=env) as worker,
                    httpx.AsyncClient(timeout=5) as http):
            await tg.wait_for(lambda: tg.calls_to("getUpdates") or web.process.returncode is not None, timeout=30)
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            tg.send_photo(chat, jpeg(320, 240))
            await tg.wait_for(lambda: tg.documents(chat), timeout=30, what="the worker's answer")
            errors = [await worker.stop(), await web.stop()]
    assert (worker.process.returncode, web.process.returncode) == (0, 0), errors
    assert tg.transcript(chat)[-1].startswith("[photo-clean.jpg] Watermark removed in ")
