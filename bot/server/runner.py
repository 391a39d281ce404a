"""TaskRunner: takes each task from the queue through its states on a pool worker, and clears it away after the hour.

A task's life, as GET shows it (shared/picwish-api.md §4):

    0 Queued ─▶ 2 Preparing (fetching a `url` source) ─▶ 3 Waiting (a worker decodes and checks it)
             ─▶ 4 Processing (the engine, with its real progress) ─▶ 1 Complete, or a failure:
    -3 the source URL could not be fetched · -5 too large · -7 not a valid image
    -2 the result could not be stored · -8 over the processing cap (its worker is killed)
    -1 anything else, or cut off by a stop

Every state change is written to SQLite before it is shown, so after a restart queued tasks run again
and tasks that were running are failed with -1 (their worker and its progress are gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from bot.errors import UnmarkError
from bot.links import fetch_link
from bot.server.storage import FileStore
from bot.server.tasks import (
    DONE,
    DOWNLOAD_FAILED,
    FAILED,
    INVALID_IMAGE,
    PREPARING,
    PROCESSING,
    QUEUED,
    TIMED_OUT,
    TOO_LARGE,
    UPLOAD_FAILED,
    WAITING,
    TaskRecord,
    TaskStore,
)
from bot.server.workers import RESULT_NOT_STORED, Job, JobFailed, Worker, WorkerPool

logger = logging.getLogger(__name__)

RESULT_TTL = 3600  # PicWish keeps a task and its result for one hour (S1)
SWEEP_INTERVAL = 60.0  # seconds between deletions of expired tasks and their files
RESTART_DELAY = 5.0  # seconds before trying again to start a worker that would not start
# The one place our errors become PicWish's failure states; any other code is -1.
STATE_FOR_ERROR = {
    "unreachable_link": DOWNLOAD_FAILED,
    "file_too_large": TOO_LARGE,
    "too_large": TOO_LARGE,
    "not_an_image": INVALID_IMAGE,
    "too_small": INVALID_IMAGE,  # PicWish has no state of its own for this
    RESULT_NOT_STORED: UPLOAD_FAILED,
}


class TaskRunner:
    """Queues tasks, runs one per worker at a time, records every state, and forgets them after the hour."""

    def __init__(self, store: TaskStore, files: FileStore, pool: WorkerPool, http: httpx.AsyncClient, *,
                 processing_timeout: float, allow_private_urls: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.files = store, files
        self._pool, self._http = pool, http
        self._timeout, self._allow_private = processing_timeout, allow_private_urls
        self._clock = clock
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._ended: dict[str, asyncio.Event] = {}  # set when a queued task is done or failed

    def now(self) -> int:
        """Epoch seconds, as PicWish stamps tasks."""
        return int(self._clock())

    @property
    def queued(self) -> int:
        """Tasks waiting for a worker."""
        return self._queue.qsize()

    @property
    def workers(self) -> int:
        """Engine processes, each running one task at a time."""
        return len(self._pool.workers)

    async def create(self, owner: str, *, upload: BinaryIO | None = None, url: str | None = None) -> TaskRecord:
        """Store a new task (its upload first, so a queued task always has its bytes) and queue it."""
        task_id, now = str(uuid.uuid4()), self.now()
        if upload is not None:
            await asyncio.to_thread(_copy, upload, self.files.upload_path(task_id))
        task = TaskRecord(task_id, owner, QUEUED, created_at=now, expires_at=now + RESULT_TTL, source_url=url)
        await self.store.add(task)
        self._enqueue(task_id)
        return task

    async def wait(self, task_id: str, timeout: float) -> TaskRecord | None:
        """The task once it is done or failed, or as it stands when ``timeout`` runs out."""
        ended = self._ended.get(task_id)
        if ended is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await ended.wait()
        return await self.store.get(task_id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TaskRunner]:
        """Recover from the last stop, then run one lane per worker and the sweeper until we leave."""
        await self.recover()
        loops = [asyncio.create_task(self._lane(worker), name="unmark lane") for worker in self._pool.workers]
        loops.append(asyncio.create_task(self._sweep_forever(), name="unmark sweeper"))
        try:
            yield self
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def recover(self) -> None:
        """After a stop: fail what was cut off, drop expired tasks and stray files, queue the rest again."""
        interrupted = await self.store.fail_interrupted(now=self.now())
        await self.sweep()
        known = await self.store.known()
        stored = await asyncio.to_thread(self.files.stored_task_ids)
        await asyncio.to_thread(_tidy, self.files, stored, known)
        queued = await self.store.queued()
        for task_id in queued:
            self._enqueue(task_id)
        if interrupted or queued:
            logger.info("after the restart: %d interrupted task(s) failed, %d queued task(s) run again",
                        interrupted, len(queued))

    async def sweep(self) -> int:
        """Delete the tasks whose hour is over, with their uploads and results."""
        gone = await self.store.remove_expired(now=self.now())
        if gone:
            await asyncio.to_thread(lambda: [self.files.remove(task_id) for task_id in gone])
            logger.debug("swept %d expired task(s)", len(gone))
        return len(gone)

    def _enqueue(self, task_id: str) -> None:
        self._ended[task_id] = asyncio.Event()
        self._queue.put_nowait(task_id)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception:  # a full disk or a locked file must not stop the next sweep
                logger.exception("sweeping expired tasks failed")

    async def _lane(self, worker: Worker) -> None:
        """One worker's loop: be ready, take the oldest queued task, run it; never ends but by cancellation."""
        while True:
            try:
                await worker.ensure_started()
            except Exception:
                logger.exception("a worker would not start; trying again in %.0f s", RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)
                continue
            task_id = await self._queue.get()
            try:
                await self._run(task_id, worker)
            except Exception:  # the store failed: the task stays as it was and fails at the next start
                logger.exception("task %s could not be recorded", task_id)

    async def _run(self, task_id: str, worker: Worker) -> None:
        """Run one queued task to its end state; a stop (cancellation) leaves it running in the store."""
        task = await self.store.get(task_id)
        if task is None or task.state != QUEUED:  # swept while it waited
            self._ended.pop(task_id, asyncio.Event()).set()
            return
        state, result = FAILED, None
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._clean(task, worker)
            state = DONE
        except TimeoutError:
            state = TIMED_OUT
            logger.info("task %s passed the %.0f s processing cap", task_id, self._timeout)
        except (UnmarkError, JobFailed) as error:
            state = STATE_FOR_ERROR.get(error.code, FAILED)
            logger.info("task %s failed with state %d: %s", task_id, state, error)
        except Exception:
            logger.exception("task %s failed unexpectedly", task_id)
        await self.store.finish(task_id, state, now=self.now(), result=result)
        await asyncio.to_thread(self.files.remove_upload if state == DONE else self.files.remove, task_id)
        self._ended.pop(task_id, asyncio.Event()).set()

    async def _clean(self, task: TaskRecord, worker: Worker) -> str:
        """Fetch the source if it is a URL, then have the worker clean it; returns the result's file name."""
        await self.store.advance(task.task_id, PREPARING, now=self.now())
        source = self.files.upload_path(task.task_id)
        if task.source_url is not None:
            data = await fetch_link(self._http, task.source_url, allow_private=self._allow_private)
            await asyncio.to_thread(source.write_bytes, data)
        await self.store.advance(task.task_id, WAITING, now=self.now())

        async def report(percent: int) -> None:
            # 100 is shown only once the result is stored, with state 1.
            await self.store.advance(task.task_id, PROCESSING, now=self.now(), progress=min(percent, 99))

        cleaned = await worker.run(Job(source, self.files.result_stem(task.task_id)), report)
        return cleaned.path.name


def _copy(upload: BinaryIO, path: Path) -> None:
    upload.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload, out)


def _tidy(files: FileStore, stored: set[str], known: dict[str, TaskRecord]) -> None:
    """Keep only the files a task still needs: a queued task's upload and a finished task's result."""
    for task_id in stored:
        task = known.get(task_id)
        if task is None or task.state not in (QUEUED, DONE):
            files.remove(task_id)
        elif task.state == DONE:
            files.remove_upload(task_id)
