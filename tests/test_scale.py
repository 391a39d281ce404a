"""Beyond one process: a receiver (`unmark run --no-work`) and `unmark worker`s sharing a real PostgreSQL database
and its job queue, as real processes, against the Telegram and PicWish fakes. Needs PostgreSQL (see
tests/postgres.py): skipped with the reason where none answers, never in CI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from bot import i18n
from tests.conftest import KEY, jpeg
from tests.fakes.picwish import TASKS_PATH, FakePicWish
from tests.fakes.servers import serve
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import TOKEN, FakeBotAPI
from tests.processes import Unmark, unmark

START_TIMEOUT = 30.0


@pytest.fixture
def tg() -> FakeBotAPI:
    return FakeBotAPI()


@pytest.fixture
def picwish() -> FakePicWish:
    return FakePicWish(keys={KEY})  # 2 requests/s per key; above that it answers 429


@pytest.fixture
async def env(tg: FakeBotAPI, picwish: FakePicWish, postgres_url: str) -> AsyncIterator[dict[str, str]]:
    async with tg.running() as api_url, serve(picwish.app) as picwish_url:
        yield {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PICWISH_API_KEY": KEY,
               "PICWISH_API_URL": picwish_url, "UNMARK_DATABASE": postgres_url, "UNMARK_LOG_LEVEL": "INFO",
               "UNMARK_SHUTDOWN_GRACE": "2", "UNMARK_STALLED_AFTER": "3"}


@contextlib.asynccontextmanager
async def cluster(env: dict[str, str], workers: int) -> AsyncIterator[list[Unmark]]:
    """One receiver and ``workers`` workers; stopped with SIGTERM (their stderr printed if a test fails)."""
    async with contextlib.AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(unmark("run", "--no-work", env=env))
        processes = [receiver] + [await stack.enter_async_context(unmark("worker", env=env)) for _ in range(workers)]
        try:
            yield processes
        finally:
            for process in processes:
                if process.process.returncode is None:
                    print(await process.stop())


def rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as db:
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()


def refused(picwish: FakePicWish) -> int:
    """PicWish requests refused for going over the key's rate."""
    return sum(r.status == 429 for r in picwish.requests)


def answered(tg: FakeBotAPI, chat: dict[str, Any]) -> list[int | None]:
    """The messages the bot answered with a file, in the order it answered."""
    return [m.reply_to for m in tg.documents(chat)]


async def test_one_receiver_and_two_workers_answer_each_photo_once_in_each_chats_order(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], postgres_url: str) -> None:
    chats = [tg.private_chat(tg.person(name)) for name in ("Ann", "Bo", "Cy", "Di")]
    async with cluster(env, workers=2):
        await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=START_TIMEOUT, what="the receiver")
        sent = {chat["id"]: [tg.send_photo(chat, jpeg(320, 240, seed=10 * n + i))["message_id"] for i in range(10)]
                for n, chat in enumerate(chats)}
        await tg.wait_for(lambda: all(len(tg.documents(chat)) >= 10 for chat in chats), timeout=120,
                          what="40 answers")

    for chat in chats:
        assert answered(tg, chat) == sent[chat["id"]]  # each photo once, in the order the chat sent them
    assert [r["state"] for r in rows(postgres_url)] == ["done"] * 40
    assert len(picwish.tasks) == 40
    assert refused(picwish) == 0  # the two workers paced themselves together at 2 requests/s


async def test_a_worker_killed_mid_burst_leaves_every_photo_answered_once(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], postgres_url: str) -> None:
    picwish.hang("POST", TASKS_PATH, 1.0, times=100)  # a second a task, so the kill finds jobs in flight
    chats = [tg.private_chat(tg.person(name)) for name in ("Ann", "Bo", "Cy", "Di")]
    async with cluster(env, workers=2) as (_, doomed, _survivor):
        await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=START_TIMEOUT, what="the receiver")
        sent = {chat["id"]: [tg.send_photo(chat, jpeg(320, 240, seed=10 * n + i))["message_id"] for i in range(5)]
                for n, chat in enumerate(chats)}
        await tg.wait_for(lambda: sum(len(tg.documents(chat)) for chat in chats) >= 2, timeout=60,
                          what="the first answers")
        # Killed the moment PicWish takes a new task (held a second): jobs are in flight, and no upload likely is.
        # (One cut off mid-upload would be sent twice, as after a crash of `unmark run`: see README, Restarts.)
        created = len(picwish.tasks)
        await tg.wait_for(lambda: len(picwish.tasks) > created, timeout=30, what="a new PicWish task")
        print(await doomed.kill())
        await tg.wait_for(lambda: all(len(tg.documents(chat)) >= 5 for chat in chats), timeout=120,
                          what="every answer, after the kill")

    for chat in chats:
        assert answered(tg, chat) == sent[chat["id"]]
    assert [r["state"] for r in rows(postgres_url)] == ["done"] * 20
    # A job whose PicWish task id was recorded is resumed, not sent again; one cut off while PicWish held the
    # answer to its create had no id to resume, so it was sent again: at most one per job the worker had running.
    assert {r["task_id"] for r in rows(postgres_url)} <= set(picwish.tasks)
    assert 20 <= len(picwish.tasks) <= 20 + 4


async def test_two_workers_at_a_chats_daily_limit_clean_no_more_than_it(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], postgres_url: str) -> None:
    chat = tg.private_chat()
    async with cluster({**env, "UNMARK_DAILY_LIMIT": "3"}, workers=2):
        await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=START_TIMEOUT, what="the receiver")
        for i in range(6):
            tg.send_photo(chat, jpeg(320, 240, seed=i))
        await tg.wait_for(lambda: len([r for r in rows(postgres_url) if r["state"] in ("done", "failed")]) == 6,
                          timeout=60, what="six outcomes")

    assert len(tg.documents(chat)) == 3
    assert [r["error_code"] for r in rows(postgres_url)] == [None] * 3 + ["quota_exceeded"] * 3
    limit_told = [m.text for m in tg.sent(chat) if m.text and "limit" in m.text.lower()]
    assert len(limit_told) == 3 and len(picwish.tasks) == 3


async def test_a_worker_needs_the_shared_database(env: dict[str, str]) -> None:
    async with unmark("worker", env={**env, "UNMARK_DATABASE": "unmark.sqlite3"}) as process:
        err = await process.wait()
    assert process.process.returncode == 2
    assert "UNMARK_DATABASE" in err and "postgresql://" in err and "Traceback" not in err



async def test_a_stopped_receiver_that_works_finishes_its_images_and_leaves_the_rest_queued(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], postgres_url: str) -> None:
    picwish.hang("POST", TASKS_PATH, 1.0, times=100)
    chat = tg.private_chat()
    async with unmark("run", env=env) as bot:  # on PostgreSQL, without --no-work: it receives and cleans
        await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=START_TIMEOUT, what="the bot")
        sent = [tg.send_photo(chat, jpeg(320, 240, seed=i))["message_id"] for i in range(6)]
        await tg.wait_for(lambda: tg.documents(chat), timeout=60, what="the first answer")
        err = await bot.stop()  # SIGTERM: its worker stops first, while the chat platforms can still answer
    assert bot.process.returncode == 0 and "Traceback" not in err, err
    assert len(tg.documents(chat)) < 6
    assert "queued" in {r["state"] for r in rows(postgres_url)}

    async with unmark("worker", env=env) as worker:
        await tg.wait_for(lambda: len(tg.documents(chat)) >= 6, timeout=60, what="the rest, from a worker")
        err = await worker.stop()
    assert worker.process.returncode == 0, err
    assert answered(tg, chat) == sent
    assert [r["state"] for r in rows(postgres_url)] == ["done"] * 6


async def test_slack_images_are_queued_by_the_receiver_and_answered_by_a_worker_in_their_thread(
        picwish: FakePicWish, postgres_url: str) -> None:
    fake = FakeSlack()
    async with fake.serving(), serve(picwish.app) as picwish_url:
        env = {"SLACK_BOT_TOKEN": fake.bot_token, "SLACK_APP_TOKEN": fake.app_token, "SLACK_API_URL": fake.api_url,
               "PICWISH_API_KEY": KEY, "PICWISH_API_URL": picwish_url, "UNMARK_DATABASE": postgres_url}
        async with cluster(env, workers=1):
            await fake.wait_for(lambda: bool(fake.called("apps.connections.open")), timeout=START_TIMEOUT)
            event = fake.mention_event(channel="C0GENERAL", files=[fake.add_file(jpeg(seed=3), "poster.jpg")],
                                       thread_ts="1700000000.000100")
            await fake.push(fake.socket_envelope(fake.event_callback(event)))
            await fake.wait_for(lambda: bool(fake.uploads), timeout=60)

    [upload] = fake.uploads
    assert (upload.channel, upload.thread_ts, upload.filename) == ("C0GENERAL", "1700000000.000100",
                                                                   "poster-clean.jpg")
    assert upload.initial_comment.startswith("Watermark removed in ")
    assert [(r["platform"], r["state"]) for r in rows(postgres_url)] == [("slack", "done")]


async def test_a_worker_answers_in_the_language_the_receiver_heard(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], postgres_url: str) -> None:
    li = tg.person("Li", language_code="zh-CN")
    chat = tg.private_chat(li)
    async with cluster(env, workers=1):
        await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=START_TIMEOUT, what="the receiver")
        tg.send_photo(chat, jpeg(320, 240), sender=li)
        await tg.wait_for(lambda: tg.documents(chat), timeout=60, what="the worker's answer")

    [document] = tg.documents(chat)
    expected = i18n.translations("zh-CN").gettext("Watermark removed in {seconds} s.").split("{")[0]
    assert expected != "Watermark removed in " and (document.caption or "").startswith(expected)
    assert [r["language"] for r in rows(postgres_url)] == ["zh-CN"]
