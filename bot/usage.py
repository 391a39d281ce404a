"""UsageStore: a row per job, daily quotas, stats and the one-hour result cache, in SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bot.database import Database, Row, open_database
from bot.errors import REFUSALS, QuotaExceeded
from bot.images import Image
from bot.jobs import ChatRef, ImageJob

logger = logging.getLogger(__name__)

DAY = 86_400
RESULT_TTL = 3_600  # PicWish keeps results an hour; so do we, for instant answers to a resend

# Appended, never edited: migration N brings a database from user_version N-1 to N.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY,
        platform    TEXT    NOT NULL,
        chat_id     TEXT    NOT NULL,
        user_id     TEXT    NOT NULL,
        backend     TEXT    NOT NULL,               -- picwish | local
        filename    TEXT,
        task_id     TEXT,                           -- PicWish task, kept to resume after a restart
        sha256      TEXT,                           -- of the normalised input
        bytes_in    INTEGER, width_in  INTEGER, height_in  INTEGER,
        bytes_out   INTEGER, width_out INTEGER, height_out INTEGER,
        state       TEXT    NOT NULL,               -- queued | running | done | failed | interrupted
        error_code  TEXT,                           -- UnmarkError.code when failed
        cached      INTEGER NOT NULL DEFAULT 0,     -- answered from the result cache, no API call
        counted     INTEGER NOT NULL DEFAULT 0,     -- holds one of the chat's daily images
        queued_ms   INTEGER, api_ms INTEGER, total_ms INTEGER,
        created_at  REAL    NOT NULL,
        started_at  REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_by_chat ON jobs (platform, chat_id, created_at);
    CREATE INDEX jobs_by_state ON jobs (state);
    CREATE TABLE results (
        sha256     TEXT PRIMARY KEY,                -- of the input the result belongs to
        data       BLOB    NOT NULL,
        format     TEXT    NOT NULL,
        width      INTEGER NOT NULL,
        height     INTEGER NOT NULL,
        created_at REAL    NOT NULL
    );
    """,
    """
    -- Pruning expired results scanned every cached image; the result's own hash is kept, not recomputed.
    CREATE INDEX results_by_age ON results (created_at);
    ALTER TABLE results ADD COLUMN result_sha256 TEXT NOT NULL DEFAULT '';
    """,
    """
    -- A job is a record any process can run again: what to fetch and where to answer, never a token.
    ALTER TABLE jobs ADD COLUMN source TEXT;                  -- file id, local path, or the typed link
    ALTER TABLE jobs ADD COLUMN answer_to TEXT NOT NULL DEFAULT '';  -- the platform's own words
    ALTER TABLE jobs ADD COLUMN url TEXT;                     -- a typed link (the core fetches it)
    ALTER TABLE jobs ADD COLUMN size_announced INTEGER;
    ALTER TABLE jobs ADD COLUMN request TEXT;                 -- the platform's message or event id
    ALTER TABLE jobs ADD COLUMN delivered_at REAL;            -- the answer reached the chat
    -- A platform that delivers an update again (after a crash, on a retry) must not get a second job.
    CREATE UNIQUE INDEX jobs_by_request ON jobs (platform, chat_id, request, source) WHERE request IS NOT NULL;
    -- Rows cut off before jobs were records cannot be run again.
    UPDATE jobs SET state = 'interrupted', error_code = 'interrupted' WHERE state IN ('queued', 'running');
    """,
    """
    -- The time each PicWish key may send its next request, shared by every process on one database.
    CREATE TABLE rate_slots (
        key     TEXT PRIMARY KEY,                   -- sha256 of the API key, never the key
        next_at REAL NOT NULL
    );
    """,
    """
    -- The person's language as their platform said it, so a job finished after a restart answers in it too.
    ALTER TABLE jobs ADD COLUMN language TEXT;
    """,
    """
    -- Done, but the engine found no watermark: the person was told so, kept their file, and spent no image.
    ALTER TABLE jobs ADD COLUMN unchanged INTEGER NOT NULL DEFAULT 0;
    """,
)


@dataclass(frozen=True, slots=True)
class Usage:
    """How much one chat (or everyone, when ``chat`` is None) used the bot."""

    platform: str | None
    chat_id: str | None
    today: int  # images counted against today's limit: exactly what claim() counts
    last_30_days: int
    all_time: int  # images cleaned (a cleaned image sent again from the cache included; "no watermark" not)
    failed: int  # images we tried to clean and could not
    cached: int
    success_rate: float | None  # done / (done + failed), over all time: refusals are not tries
    median_seconds: float | None  # of successful jobs in the last 30 days
    cached_today: int = 0  # answered free from the result cache today: not counted against the limit
    refused: int = 0  # never tried: not an image, a path that is not there, the daily limit (errors.REFUSALS)
    unchanged: int = 0  # answered "no watermark found": not cleaned, not counted against the limit


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job a stop or a crash left unfinished, as its row holds it."""

    job_id: int
    job: ImageJob
    created_at: float
    task_id: str | None  # the remote task, if one was started: resume it rather than pay again
    sha256: str | None
    counted: bool  # already holds one of the chat's daily images
    delivered: bool  # the answer reached the chat; only the row was not closed
    running: bool = False  # it had begun (it left the queue): its work may be half done


def day_start(now: float) -> float:
    """Midnight UTC of the day ``now`` falls in: quotas reset there."""
    return now - now % DAY


class UsageStore:
    """Every job and its outcome, per chat, in one database (see bot.database)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, target: Path | str, *, pool_size: int = 10) -> AsyncIterator[UsageStore]:
        """Connect, migrate and close however we leave."""
        async with open_database(target, MIGRATIONS, name="usage database", pool_size=pool_size) as db:
            yield cls(db)

    async def start(self, job: ImageJob, *, backend: str) -> int | None:
        """Record a new job, queued, with all it takes to run it again; None if its request was taken already."""
        chat = job.chat
        row = await self.db.fetch_one(
            "INSERT INTO jobs (platform, chat_id, user_id, backend, filename, source, answer_to, url,"
            " size_announced, request, language, state, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT DO NOTHING RETURNING id",
            (chat.platform, chat.chat_id, chat.user_id, backend, job.filename, job.source, job.answer_to, job.url,
             job.size, job.request, job.language, time.time()),
        )
        return int(row["id"]) if row else None

    async def begin(self, job_id: int) -> None:
        """The job's turn has come: it leaves the queue."""
        now = time.time()
        await self.db.execute(
            "UPDATE jobs SET state = 'running', started_at = ?,"
            " queued_ms = CAST((? - created_at) * 1000 AS INTEGER) WHERE id = ?",
            (now, now, job_id),
        )

    async def record_input(self, job_id: int, image: Image) -> None:
        """Remember what came in: hash and size."""
        await self.db.execute(
            "UPDATE jobs SET sha256 = ?, bytes_in = ?, width_in = ?, height_in = ? WHERE id = ?",
            (image.sha256, len(image.data), image.width, image.height, job_id),
        )

    async def claim(self, job_id: int, chat: ChatRef, *, limit: int) -> None:
        """Take one of the chat's images for today, or raise QuotaExceeded; 0 means unlimited."""
        now = time.time()
        if limit == 0:
            changed = await self.db.execute("UPDATE jobs SET counted = 1 WHERE id = ?", (job_id,))
        else:
            # Count and take in one statement, serialized per chat, so two jobs of the same chat (in any two
            # processes) cannot both take the last image.
            changed = await self.db.execute(
                "UPDATE jobs SET counted = 1 WHERE id = ? AND ("
                " SELECT COUNT(*) FROM jobs WHERE platform = ? AND chat_id = ? AND counted = 1"
                " AND state IN ('running', 'done') AND created_at >= ?) < ?",
                (job_id, chat.platform, chat.chat_id, day_start(now), limit),
                serialize=f"quota {chat.platform}:{chat.chat_id}",
            )
        if changed == 0:
            raise QuotaExceeded(limit, int(day_start(now) + DAY))

    async def unchanged(self, job_id: int) -> None:
        """The remover found nothing to remove: the job gives its daily image back and is marked unchanged."""
        await self.db.execute("UPDATE jobs SET counted = 0, unchanged = 1 WHERE id = ?", (job_id,))

    async def set_task(self, job_id: int, task_id: str) -> None:
        """Keep PicWish's task id so a restart can resume instead of paying again."""
        await self.db.execute("UPDATE jobs SET task_id = ? WHERE id = ?", (task_id, job_id))

    async def finish(self, job_id: int, *, error_code: str | None = None, result: Image | None = None,
                     cached: bool = False, api_ms: int | None = None) -> None:
        """Close the job's row: done with a result, or failed with the error's code."""
        now = time.time()
        await self.db.execute(
            "UPDATE jobs SET state = ?, error_code = ?, cached = ?, api_ms = ?, finished_at = ?,"
            " total_ms = CAST((? - created_at) * 1000 AS INTEGER),"
            " bytes_out = ?, width_out = ?, height_out = ? WHERE id = ?",
            (
                _state(error_code), error_code, int(cached), api_ms, now, now,
                len(result.data) if result else None, result.width if result else None,
                result.height if result else None, job_id,
            ),
        )

    async def remember_result(self, sha256: str, result: Image) -> None:
        """Keep a result an hour so the same image sent again is answered without the API."""
        now = time.time()
        await self.db.execute("DELETE FROM results WHERE created_at < ?", (now - RESULT_TTL,))
        await self.db.execute(
            "INSERT INTO results (sha256, data, format, width, height, created_at, result_sha256)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET data = excluded.data,"
            " format = excluded.format, width = excluded.width, height = excluded.height,"
            " created_at = excluded.created_at, result_sha256 = excluded.result_sha256",
            (sha256, result.data, result.format, result.width, result.height, now, result.sha256),
        )

    async def recent_result(self, sha256: str) -> Image | None:
        """The result for this input if it was cleaned within the hour."""
        row = await self.db.fetch_one(
            "SELECT data, format, width, height, result_sha256 FROM results WHERE sha256 = ? AND created_at >= ?",
            (sha256, time.time() - RESULT_TTL),
        )
        if row is None:
            return None
        return Image(data=bytes(row["data"]), format=row["format"], width=row["width"], height=row["height"],
                     sha256=row["result_sha256"] or hashlib.sha256(row["data"]).hexdigest())

    async def delivered(self, job_id: int, *, cached: bool = False) -> None:
        """The answer reached the chat: a restart from here on closes the row and sends nothing again. A cache
        answer is marked now, so /usage typed right after it already says it came free."""
        await self.db.execute("UPDATE jobs SET delivered_at = ?, cached = ? WHERE id = ?",
                              (time.time(), int(cached), job_id))

    async def unfinished(self, platform: str) -> list[StoredJob]:
        """The platform's jobs that a stop or a crash left queued or running, oldest first."""
        rows = await self.db.fetch_all(
            "SELECT * FROM jobs WHERE platform = ? AND state IN ('queued', 'running') ORDER BY id", (platform,),
        )
        return [_stored(row) for row in rows]

    async def stored(self, job_id: int) -> StoredJob | None:
        """The job's row if it is still queued or running; None once it is closed (or was never there)."""
        row = await self.db.fetch_one("SELECT * FROM jobs WHERE id = ? AND state IN ('queued', 'running')", (job_id,))
        return _stored(row) if row else None

    async def chat_usage(self, chat: ChatRef) -> Usage:
        """This chat's usage: today, last 30 days, all time, success rate, median time."""
        rows = await self.usage(platform=chat.platform, chat_id=chat.chat_id)
        if rows:
            return rows[0]
        return Usage(chat.platform, chat.chat_id, 0, 0, 0, 0, 0, None, None)

    async def totals(self) -> Usage:
        """Everyone's usage together, for admins."""
        return (await self.usage(group_by_chat=False))[0]

    async def active_chats(self, days: int) -> int:
        """How many chats sent anything in the last ``days`` days."""
        row = await self.db.fetch_one(
            "SELECT COUNT(*) AS chats FROM (SELECT 1 FROM jobs WHERE created_at >= ? GROUP BY platform, chat_id) AS c",
            (time.time() - days * DAY,),
        )
        return int(row["chats"]) if row else 0

    async def usage(self, *, platform: str | None = None, chat_id: str | None = None, days: int | None = None,
                    group_by_chat: bool = True) -> list[Usage]:
        """Usage per chat (busiest first), optionally filtered; ``days`` limits to chats active recently."""
        now = time.time()
        where, params = ["1 = 1"], []  # params: WHERE's, then HAVING's
        if platform:
            where.append("platform = ?")
            params.append(platform)
        if chat_id:
            where.append("chat_id = ?")
            params.append(chat_id)
        columns = "platform, chat_id" if group_by_chat else "NULL AS platform, NULL AS chat_id"
        grouping = "GROUP BY platform, chat_id" if group_by_chat else ""
        if days is not None and group_by_chat:
            grouping += " HAVING MAX(created_at) >= ?"  # in SQL, so quiet chats cost no median query
            params.append(now - days * DAY)
        refusals = ", ".join("?" * len(REFUSALS))
        # `today` counts what claim() counts, so /usage and the limit agree: cache answers cost nothing.
        query = f"""
            SELECT {columns},
                   COUNT(*) FILTER (WHERE counted = 1 AND state IN ('running', 'done') AND created_at >= ?) AS today,
                   COUNT(*) FILTER (WHERE cached = 1 AND state IN ('running', 'done') AND created_at >= ?)
                       AS cached_today,
                   COUNT(*) FILTER (WHERE state = 'done' AND unchanged = 0 AND created_at >= ?) AS last_30_days,
                   COUNT(*) FILTER (WHERE state = 'done' AND unchanged = 0) AS all_time,
                   COUNT(*) FILTER (WHERE state = 'done' AND unchanged = 1) AS unchanged,
                   COUNT(*) FILTER (WHERE state IN ('failed', 'interrupted')
                                    AND COALESCE(error_code, '') NOT IN ({refusals})) AS failed,
                   COUNT(*) FILTER (WHERE state = 'failed' AND error_code IN ({refusals})) AS refused,
                   SUM(cached) AS cached
            FROM jobs WHERE {" AND ".join(where)} {grouping}
            ORDER BY last_30_days DESC, all_time DESC
        """
        today = day_start(now)
        codes = sorted(REFUSALS)
        rows = await self.db.fetch_all(query, (today, today, now - 30 * DAY, *codes, *codes, *params))
        result = []
        for row in rows:
            # An image with no watermark was answered well, but not cleaned: a success, not a cleaned image.
            done, failed = (row["all_time"] or 0) + (row["unchanged"] or 0), row["failed"] or 0
            result.append(Usage(
                platform=row["platform"], chat_id=row["chat_id"], today=row["today"] or 0,
                last_30_days=row["last_30_days"] or 0, all_time=row["all_time"] or 0, failed=failed,
                cached=row["cached"] or 0, unchanged=row["unchanged"] or 0,
                success_rate=done / (done + failed) if done + failed else None,
                median_seconds=await self._median_seconds(row["platform"], row["chat_id"], now - 30 * DAY),
                cached_today=row["cached_today"] or 0, refused=row["refused"] or 0,
            ))
        return result

    async def _median_seconds(self, platform: str | None, chat_id: str | None, since: float) -> float | None:
        where = "state = 'done' AND cached = 0 AND created_at >= ?"
        params: list[object] = [since]
        if platform is not None:
            where += " AND platform = ? AND chat_id = ?"
            params += [platform, chat_id]
        rows = await self.db.fetch_all(f"SELECT total_ms FROM jobs WHERE {where} AND total_ms IS NOT NULL", params)
        times = [row["total_ms"] for row in rows]
        return statistics.median(times) / 1000 if times else None


def _stored(row: Row) -> StoredJob:
    return StoredJob(
        job_id=row["id"],
        job=ImageJob(chat=ChatRef(row["platform"], row["chat_id"], row["user_id"]), source=row["source"],
                     answer_to=row["answer_to"], filename=row["filename"] or "image", size=row["size_announced"],
                     url=row["url"], request=row["request"], language=row["language"] or ""),
        created_at=row["created_at"], task_id=row["task_id"], sha256=row["sha256"], counted=bool(row["counted"]),
        delivered=row["delivered_at"] is not None, running=row["state"] == "running",
    )


def _state(error_code: str | None) -> str:
    if error_code is None:
        return "done"
    return "interrupted" if error_code == "interrupted" else "failed"
