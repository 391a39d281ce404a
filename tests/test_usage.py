"""UsageStore on a real SQLite file and a real PostgreSQL database: migrations, job records, quotas, stats."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from pathlib import Path

import pytest

from bot import images, usage
from bot.errors import QuotaExceeded
from bot.jobs import ChatRef, ImageJob
from bot.usage import UsageStore
from tests.conftest import jpeg

CHAT = ChatRef("slack", "T1/C1", "U1")
JOB = ImageJob(CHAT, "F123", answer_to='{"channel": "C1"}', filename="photo.jpg", size=2048)


async def test_a_new_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite3"
    async with UsageStore.open(path):
        pass
    async with UsageStore.open(path):  # opening again migrates nothing
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(usage.MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_failing_migration_leaves_the_version_unchanged(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u.sqlite3"
    async with UsageStore.open(path):
        pass
    monkeypatch.setattr(usage, "MIGRATIONS", (*usage.MIGRATIONS, "ALTER TABLE jobs ADD COLUMN x; SELECT nonsense FROM nowhere;"))
    with pytest.raises(sqlite3.OperationalError):
        async with UsageStore.open(path):
            pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(usage.MIGRATIONS) - 1
        assert "x" not in [row[1] for row in db.execute("PRAGMA table_info(jobs)")]


async def test_quota_counts_only_successful_images_of_today(database: str) -> None:
    async with UsageStore.open(database) as store:
        first = await store.start(JOB, backend="local")
        await store.begin(first)
        await store.claim(first, CHAT, limit=2)
        await store.finish(first, error_code="remover_down")  # failed: gives its image back
        for _ in range(2):
            job = await store.start(JOB, backend="local")
            await store.begin(job)
            await store.claim(job, CHAT, limit=2)
            await store.finish(job)
        late = await store.start(JOB, backend="local")
        await store.begin(late)
        with pytest.raises(QuotaExceeded) as caught:
            await store.claim(late, CHAT, limit=2)
        assert caught.value.resets_at % usage.DAY == 0
        await store.claim(late, CHAT, limit=0)  # 0 = unlimited
        # Yesterday's images do not count today.
        await store.db.execute("UPDATE jobs SET created_at = created_at - 86400")
        other = await store.start(JOB, backend="local")
        await store.begin(other)
        await store.claim(other, CHAT, limit=2)


async def test_chat_usage_reports_today_success_rate_and_median(database: str) -> None:
    image = images.load(jpeg(100, 50))
    async with UsageStore.open(database) as store:
        for error in (None, None, "remover_down", "not_an_image", "unreadable_file"):
            job = await store.start(JOB, backend="picwish")
            await store.begin(job)
            if error in (None, "remover_down"):  # only images that reach the remover claim one of the day's
                await store.claim(job, CHAT, limit=0)
            await store.finish(job, error_code=error, result=None if error else image)
        result = await store.chat_usage(CHAT)
        assert (result.today, result.last_30_days, result.all_time, result.failed) == (2, 2, 2, 1)
        # Input the person can fix was never tried: recorded, but not held against the success rate.
        assert result.refused == 2
        assert result.success_rate == pytest.approx(2 / 3)
        assert result.median_seconds is not None and result.median_seconds >= 0
        assert (await store.chat_usage(ChatRef("slack", "T1/C2", "U1"))).all_time == 0
        assert (await store.totals()).all_time == 2


async def test_an_image_with_no_watermark_is_a_success_that_spends_no_image(database: str) -> None:
    image = images.load(jpeg(100, 50))
    async with UsageStore.open(database) as store:
        for found in (False, True):
            job = await store.start(JOB, backend="local")
            await store.begin(job)
            await store.claim(job, CHAT, limit=1)
            if not found:
                await store.unchanged(job)  # gives the day's one image back: the next claim gets it
            await store.finish(job, result=image)
        result = await store.chat_usage(CHAT)
        assert (result.today, result.last_30_days, result.all_time, result.unchanged) == (1, 1, 1, 1)
        assert result.success_rate == 1.0


async def test_a_cut_off_job_is_read_back_as_the_record_it_was_started_with(database: str) -> None:
    path = database
    async with UsageStore.open(path) as store:
        queued = await store.start(JOB, backend="local")
        running = await store.start(ImageJob.link(CHAT, "https://example.com/a/cat.png?x=1", answer_to="{}"),
                                    backend="picwish")
        done = await store.start(JOB, backend="local")
        assert None not in (queued, running, done)
        await store.begin(running)
        await store.set_task(running, "task-1")
        await store.finish(done)
        await store.start(ImageJob(ChatRef("telegram", "1", "2"), "file-1"), backend="local")
    async with UsageStore.open(path) as store:
        first, second = await store.unfinished("slack")

    assert (first.job_id, first.job, first.task_id, first.delivered) == (queued, JOB, None, False)
    assert (second.job.url, second.job.filename, second.task_id) == ("https://example.com/a/cat.png?x=1", "cat.png",
                                                                     "task-1")


async def test_a_request_is_recorded_once(database: str) -> None:
    asked = ImageJob(CHAT, "F1", request="1700000000.000100")
    async with UsageStore.open(database) as store:
        first = await store.start(asked, backend="local")
        assert await store.start(asked, backend="local") is None  # Slack's retry of the same event
        second = await store.start(ImageJob(CHAT, "F2", request="1700000000.000100"), backend="local")
        third = await store.start(ImageJob(CHAT, "F1"), backend="local")  # typed again: a new request
        assert None not in (first, second, third) and first < second < third
        assert [s.job.source for s in await store.unfinished("slack")] == ["F1", "F2", "F1"]


async def test_rows_cut_off_before_jobs_were_records_are_closed_by_the_migration(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u.sqlite3"
    monkeypatch.setattr(usage, "MIGRATIONS", usage.MIGRATIONS[:2])
    async with UsageStore.open(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO jobs (platform, chat_id, user_id, backend, state, created_at)"
                   " VALUES ('telegram', '1', '1', 'local', 'running', 0)")
    monkeypatch.undo()
    async with UsageStore.open(path) as store:
        assert await store.unfinished("telegram") == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state FROM jobs").fetchall() == [("interrupted",)]


async def test_results_are_cached_for_an_hour(database: str) -> None:
    image = images.load(jpeg(64, 64))
    async with UsageStore.open(database) as store:
        await store.remember_result("abc", image)
        assert (await store.recent_result("abc")) == image
        await store.db.execute("UPDATE results SET created_at = created_at - 3601")
        assert await store.recent_result("abc") is None


async def test_days_keeps_only_chats_active_recently(database: str) -> None:
    async with UsageStore.open(database) as store:
        for chat in (CHAT, ChatRef("slack", "T1/C2", "U1")):
            job = await store.start(ImageJob(chat, "photo.jpg"), backend="local")
            await store.finish(job)
        await store.db.execute("UPDATE jobs SET created_at = created_at - 10 * 86400 WHERE chat_id = 'T1/C2'")
        assert [u.chat_id for u in await store.usage(days=7)] == ["T1/C1"]
        assert len(await store.usage(days=30)) == 2
        assert (await store.active_chats(days=7), await store.active_chats(days=30)) == (1, 2)


async def test_two_processes_at_a_chats_limit_never_take_more_than_it(postgres_url: str) -> None:
    # Two stores are two processes' pools: each claim is its own connection, all at once.
    async with UsageStore.open(postgres_url) as one, UsageStore.open(postgres_url) as other:
        ids = [await one.start(ImageJob(CHAT, f"F{i}"), backend="picwish") for i in range(20)]
        for job_id in ids:
            await one.begin(job_id)
        claims = await asyncio.gather(*(store.claim(job_id, CHAT, limit=5)
                                        for store, job_id in zip(itertools.cycle((one, other)), ids)),
                                      return_exceptions=True)
        assert sum(claim is None for claim in claims) == 5
        assert all(isinstance(claim, QuotaExceeded) for claim in claims if claim is not None)
        assert (await other.chat_usage(CHAT)).today == 5


async def test_processes_starting_together_migrate_the_database_once(postgres_url: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        stores = await asyncio.gather(*(stack.enter_async_context(UsageStore.open(postgres_url)) for _ in range(4)))
        row = await stores[0].db.fetch_one("SELECT version FROM unmark_schema WHERE name = 'usage database'")
        assert row == {"version": len(usage.MIGRATIONS)}
