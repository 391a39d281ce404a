"""Open a SQLite file the way unmark runs every one: WAL, a busy timeout, rows by name, migrations applied."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiosqlite

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def connect(path: Path | str, migrations: Sequence[str], *, name: str) -> AsyncIterator[aiosqlite.Connection]:
    """Connect, bring the schema up to date, and close however we leave."""
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
