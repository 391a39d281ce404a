"""TaskStore: every task of the self-hosted API and its state, in one SQLite file, so a restart loses nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot import database

TASKS_PATH = "/api/tasks/visual/external/watermark-remove"  # POST creates a task, GET …/{task_id} shows it
# PicWish's task states (shared/picwish-api.md §4), and the texts of the PicWish fake where the doc has none.
QUEUED, DONE, PREPARING, WAITING, PROCESSING = 0, 1, 2, 3, 4
FAILED, UPLOAD_FAILED, DOWNLOAD_FAILED, TOO_LARGE, INVALID_IMAGE, TIMED_OUT = -1, -2, -3, -5, -7, -8
PENDING_STATES = frozenset({QUEUED, PREPARING, WAITING, PROCESSING})
RUNNING_STATES = frozenset({PREPARING, WAITING, PROCESSING})
STATE_DETAILS = {
    DONE: "Complete", QUEUED: "Queued", PREPARING: "Preparing", WAITING: "Waiting", PROCESSING: "Processing",
    FAILED: "Failed", UPLOAD_FAILED: "Upload failed", DOWNLOAD_FAILED: "Download failed",
    TOO_LARGE: "Image too large", INVALID_IMAGE: "Invalid image", TIMED_OUT: "Processing timeout",
}

# Appended, never edited: migration N brings a database from user_version N-1 to N.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tasks (
        task_id      TEXT PRIMARY KEY,
        owner        TEXT    NOT NULL,    -- sha256 of the API key that created it; only that key may read it
        source_url   TEXT,                -- the `url` source, NULL for an upload (kept to re-run after a restart)
        state        INTEGER NOT NULL,    -- PicWish's data.state
        progress     INTEGER NOT NULL DEFAULT 0,
        result       TEXT,                -- file name of the result under results/, once state is 1
        created_at   INTEGER NOT NULL,    -- epoch seconds, as PicWish reports them
        processed_at INTEGER,
        completed_at INTEGER,
        expires_at   INTEGER NOT NULL     -- the task, its result and its URL are gone after this
    );
    CREATE INDEX tasks_by_state ON tasks (state);
    CREATE INDEX tasks_by_expiry ON tasks (expires_at);
    """,
)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task as stored: what PicWish's ``data`` shows, plus who owns it and where its result is."""

    task_id: str
    owner: str
    state: int
    created_at: int
    expires_at: int
    source_url: str | None = None
    progress: int = 0
    result: str | None = None
    processed_at: int | None = None
    completed_at: int | None = None

    @property
    def pending(self) -> bool:
        """Queued or running: not yet done or failed."""
        return self.state in PENDING_STATES


class TaskStore:
    """The tasks table on one aiosqlite connection; methods read like what happens to a task."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[TaskStore]:
        """Connect, migrate and close however we leave."""
        async with database.connect(path, MIGRATIONS, name="tasks database") as db:
            yield cls(db)

    async def add(self, task: TaskRecord) -> None:
        """Record a new task (queued)."""
        await self._db.execute(
            "INSERT INTO tasks (task_id, owner, source_url, state, progress, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task.task_id, task.owner, task.source_url, task.state, task.progress, task.created_at, task.expires_at),
        )
        await self._db.commit()

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task, or None if it never existed or has been swept away."""
        async with self._db.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else TaskRecord(**dict(row))

    async def advance(self, task_id: str, state: int, *, now: int, progress: int | None = None) -> None:
        """Move a running task to ``state``; processing (4) stamps ``processed_at`` once."""
        await self._db.execute(
            "UPDATE tasks SET state = ?, progress = COALESCE(?, progress),"
            " processed_at = CASE WHEN ? = 4 THEN COALESCE(processed_at, ?) ELSE processed_at END"
            " WHERE task_id = ?",
            (state, progress, state, now, task_id),
        )
        await self._db.commit()

    async def finish(self, task_id: str, state: int, *, now: int, result: str | None = None) -> None:
        """End a task in ``state`` (1 with its result file, or a failure); progress is 100 only on success."""
        await self._db.execute(
            "UPDATE tasks SET state = ?, result = ?, completed_at = ?, processed_at = COALESCE(processed_at, ?),"
            " progress = CASE WHEN ? = 1 THEN 100 ELSE progress END WHERE task_id = ?",
            (state, result, now, now, state, task_id),
        )
        await self._db.commit()

    async def fail_interrupted(self, *, now: int) -> int:
        """Fail the tasks a stop cut off mid-run (state -1); their worker is gone with its progress."""
        cursor = await self._db.execute(
            "UPDATE tasks SET state = ?, completed_at = ?, processed_at = COALESCE(processed_at, ?)"
            f" WHERE state IN ({', '.join('?' * len(RUNNING_STATES))})",
            (FAILED, now, now, *sorted(RUNNING_STATES)),
        )
        await self._db.commit()
        return cursor.rowcount

    async def queued(self) -> list[str]:
        """Tasks still waiting for a worker, oldest first."""
        async with self._db.execute("SELECT task_id FROM tasks WHERE state = ? ORDER BY rowid", (QUEUED,)) as cursor:
            return [row["task_id"] async for row in cursor]

    async def known(self) -> dict[str, TaskRecord]:
        """Every task still stored, by id (for tidying files after a restart)."""
        async with self._db.execute("SELECT * FROM tasks") as cursor:
            return {row["task_id"]: TaskRecord(**dict(row)) async for row in cursor}

    async def remove_expired(self, *, now: int) -> list[str]:
        """Delete the tasks whose hour is over; returns their ids so their files can go too."""
        async with self._db.execute("DELETE FROM tasks WHERE expires_at <= ? RETURNING task_id", (now,)) as cursor:
            gone = [row["task_id"] async for row in cursor]
        await self._db.commit()
        return gone
