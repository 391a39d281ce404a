"""Where unmark keeps its records: one SQLite file (the default), or PostgreSQL when processes share them.

``Database`` is the small seam the stores write their queries against, in the SQL both dialects read (``?``
placeholders, ``INSERT … ON CONFLICT``, ``COUNT(*) FILTER``); ``open_database`` picks the engine from the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

logger = logging.getLogger(__name__)

Row = Mapping[str, Any]


class Database(Protocol):
    """Run a statement and read its rows; each call is its own transaction."""

    dialect: str  # "sqlite" | "postgresql"

    async def execute(self, sql: str, params: Sequence[Any] = (), *, serialize: str | None = None) -> int:
        """Run one statement and return how many rows it changed.

        Statements given the same ``serialize`` key run one at a time across every process sharing the database
        (SQLite has one writer already; PostgreSQL takes a transaction-scoped advisory lock on the key).
        """
        ...

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...


def is_postgres(target: str | Path) -> bool:
    """Whether UNMARK_DATABASE names a PostgreSQL server rather than a SQLite file."""
    return str(target).startswith(("postgresql://", "postgres://"))


@contextlib.asynccontextmanager
async def open_database(target: str | Path, migrations: Sequence[str], *, name: str,
                        pool_size: int = 10) -> AsyncIterator[Database]:
    """Connect to ``target`` (a SQLite path or a ``postgresql://`` URL), migrate, and close however we leave."""
    if is_postgres(target):
        # psycopg loads only for a shared database.
        from bot.postgres import PostgresDatabase

        async with PostgresDatabase.open(str(target), migrations, name=name, pool_size=pool_size) as db:
            yield db
        return
    async with connect(target, migrations, name=name) as connection:
        yield SqliteDatabase(connection)


class SqliteDatabase:
    """One aiosqlite connection; each statement runs alone and commits at once.

    The connection is shared by every coroutine of the process: without the lock one coroutine's commit could land
    while another's SELECT is still reading ("cannot commit transaction - SQL statements in progress"). aiosqlite
    runs statements one at a time on its thread anyway, so the lock costs no throughput.
    """

    dialect = "sqlite"

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._lock = asyncio.Lock()

    async def execute(self, sql: str, params: Sequence[Any] = (), *, serialize: str | None = None) -> int:
        # One connection and one writer: a single statement is already atomic against every other.
        async with self._lock:
            cursor = await self._db.execute(sql, params)
            await self._db.commit()
            return cursor.rowcount

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._lock:
            async with self._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            if self._db.in_transaction:  # a RETURNING statement writes too
                await self._db.commit()
            return [dict(row) for row in rows]

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None


@contextlib.asynccontextmanager
async def connect(path: Path | str, migrations: Sequence[str], *, name: str) -> AsyncIterator[aiosqlite.Connection]:
    """Open a SQLite file the way unmark runs every one: WAL, a busy timeout, rows by name, migrations applied."""
    async with aiosqlite.connect(path) as db:
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        await migrate(db, migrations, name=name)
        yield db


async def migrate(db: aiosqlite.Connection, migrations: Sequence[str], *, name: str) -> int:
    """Apply the migrations this database has not seen; each is atomic with its ``user_version`` bump.

    ``migrations`` is appended to, never edited: migration N brings a database from version N-1 to N.
    """
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > len(migrations):
        raise RuntimeError(f"{name} schema {version} is newer than this unmark ({len(migrations)})")
    for number, script in enumerate(migrations[version:], start=version + 1):
        await db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        logger.info("%s migrated to schema %d", name, number)
    return len(migrations)
