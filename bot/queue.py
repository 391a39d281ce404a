"""The job queue of processes that share PostgreSQL: procrastinate, one task per image, its lock the chat.

procrastinate runs jobs with the same lock one at a time, in the order they were deferred, on whichever worker
is free: so each chat's images stay in order across every worker. A worker that stops takes no new job, gives its
running ones UNMARK_SHUTDOWN_GRACE seconds, and hands back the rest (retried at once by another). A worker that
dies stops sending heartbeats; after UNMARK_STALLED_AFTER seconds any other worker hands its jobs back to the
queue. Either way the job's row says how far it got, so the next run resumes PicWish's task rather than paying
again (``Service.run_queued``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import procrastinate
from procrastinate.schema import SchemaManager

from bot.jobs import ChatRef
from bot.postgres import MIGRATIONS_LOCK, PostgresDatabase, lock_key

if TYPE_CHECKING:
    from bot.core import Outcome

logger = logging.getLogger(__name__)

TASK = "unmark.clean_image"
# Failures that escape a job (the database gone for a moment, a stop that outran its grace): tried again after
# 2, 4, 8 and 16 s, then left failed. The person has already been told of every failure the core could name.
RETRY = procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2)
# A new job wakes workers at once (PostgreSQL NOTIFY), but a job freed by the end of its chat's previous one is
# found only by polling: so poll often. Each poll is one indexed query; four a second per idle worker is nothing.
POLL_INTERVAL = 0.25


class HandedBack(Exception):
    """The worker is stopping: the job's row stays open and procrastinate runs it again elsewhere."""


class JobQueue:
    """Defer an image's job (any process); run the queue's jobs (a worker)."""

    def __init__(self, app: procrastinate.App, *, stalled_after: float) -> None:
        self.app, self.stalled_after = app, stalled_after

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, db: PostgresDatabase, *, stalled_after: float = 30.0) -> AsyncIterator[JobQueue]:
        """The queue on the store's own pool, its schema installed on first use."""
        await _install_schema(db)
        app = procrastinate.App(connector=procrastinate.PsycopgConnector())
        async with app.open_async(pool=db.pool):
            yield cls(app, stalled_after=stalled_after)

    async def defer(self, job_id: int, chat: ChatRef) -> None:
        """Queue the recorded job behind the chat's earlier ones."""
        await self.app.configure_task(TASK, lock=f"{chat.platform}:{chat.chat_id}").defer_async(job_id=job_id)

    async def deferred(self, job_ids: list[int]) -> set[int]:
        """Which of these jobs the queue holds (waiting or running): a job recorded but never queued is not."""
        if not job_ids:
            return set()
        rows = await self.app.connector.execute_query_all_async(
            "SELECT (args->>'job_id')::bigint AS job_id FROM procrastinate_jobs"
            " WHERE task_name = %(task)s AND status IN ('todo', 'doing')"
            " AND (args->>'job_id')::bigint = ANY(%(ids)s)", task=TASK, ids=job_ids)
        return {int(row["job_id"]) for row in rows}

    async def work(self, run: Callable[[int], Awaitable[Outcome]], *, concurrency: int, grace: float,
                   name: str = "unmark") -> None:
        """Run queued jobs with ``run(job_id)`` until cancelled, then stop gracefully (see the module's notes)."""
        from bot.core import POSTPONED

        async def clean_image(job_id: int) -> str | None:
            outcome = await run(job_id)
            if outcome.error_code == POSTPONED:
                raise HandedBack(f"job {job_id}")
            return outcome.error_code

        self.app.task(name=TASK, retry=RETRY)(clean_image)
        recovery = asyncio.create_task(self._recover_stalled(), name="stalled jobs")
        try:
            await self.app.run_worker_async(
                name=name, concurrency=concurrency, shutdown_graceful_timeout=grace, install_signal_handlers=False,
                fetch_job_polling_interval=POLL_INTERVAL,
                update_heartbeat_interval=self.stalled_after / 3, stalled_worker_timeout=self.stalled_after,
                delete_jobs="successful",  # the job's row keeps its story; the queue only what is pending
            )
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery

    async def _recover_stalled(self) -> None:
        """Hand back the jobs of workers that stopped sending heartbeats (killed, frozen, cut off)."""
        manager = self.app.job_manager
        while True:
            await asyncio.sleep(self.stalled_after / 3)
            try:
                for job in await manager.get_stalled_jobs(seconds_since_heartbeat=self.stalled_after,
                                                          task_name=TASK):
                    with contextlib.suppress(Exception):  # another worker may have handed it back first
                        await manager.retry_job(job)
                        logger.warning("job %s of a worker that stopped answering was handed back",
                                       job.task_kwargs.get("job_id"))
            except Exception:
                logger.exception("could not look for stalled jobs; trying again")


async def _install_schema(db: PostgresDatabase) -> None:
    """procrastinate's tables, once, under the lock our migrations take (two processes may start together)."""
    async with db.pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(MIGRATIONS_LOCK),))
        cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') AS installed")
        row = await cursor.fetchone()
        if row and row["installed"] is None:
            await conn.execute(SchemaManager.get_schema().encode())
            logger.info("installed the job queue's schema")
