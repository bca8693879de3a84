"""The database handle: SQLite through aiosqlite today, one query dialect meant to carry to PostgreSQL.

Queries everywhere use `?` placeholders and portable SQL (INSERT ... RETURNING, ON CONFLICT, CASE instead of
MAX/GREATEST), so a PostgreSQL backend only has to translate placeholders. Writes go through one connection
guarded by an asyncio lock, because two tasks sharing a connection would interleave statements inside each
other's transactions; reads that need no transaction use a separate connection (WAL lets them run beside the
writer). Every write transaction starts with BEGIN IMMEDIATE so read-then-write sequences hold the write lock
from their first statement, across processes too.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from core.storage.write_lock import WriteLock

Row = Mapping[str, Any]
Params = Sequence[Any]

# Errors that mean "the database is busy or unreachable right now": answered 503, never 500.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError,)

# Wait for another process's write lock instead of failing at once.
BUSY_TIMEOUT_MS = 5000


class DatabaseURLError(ValueError):
    """DATABASE_URL names something this build cannot open."""


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    scheme: str
    path: Path

    @classmethod
    def parse(cls, url: str, *, base_dir: Path | None = None) -> DatabaseURL:
        if url.startswith("sqlite:///"):
            raw = url[len("sqlite:///") :]
            if not raw or raw == ":memory:":
                raise DatabaseURLError("DATABASE_URL needs a file path: sqlite:///data/gateway.db")
            path = Path(raw)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            return cls("sqlite", path)
        if url.startswith(("postgresql://", "postgres://")):
            raise DatabaseURLError("PostgreSQL is not available in this version yet; use sqlite:///path/to/file.db")
        raise DatabaseURLError(f"unsupported DATABASE_URL scheme in {url.split(':', 1)[0]!r}")


class Transaction:
    """Statements run inside one BEGIN IMMEDIATE ... COMMIT on the writer connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        """One statement over many parameter rows; returns the rows changed (inserts that were not ignored)."""
        cursor = await self._conn.executemany(sql, rows)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._conn.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))


class Database:
    dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = WriteLock()
        self.path = path

    @classmethod
    async def open(cls, url: str, *, base_dir: Path | None = None) -> Database:
        parsed = DatabaseURL.parse(url, base_dir=base_dir)
        parsed.path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(parsed.path)
        try:
            # WAL lets readers run beside the writer; FULL makes a commit survive power loss, which the
            # quota ledger (and later the webhook inbox, acknowledged to Meta) relies on.
            await writer.execute_fetchall("PRAGMA journal_mode=WAL")
            reader = await _connect(parsed.path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, parsed.path)

    async def close(self) -> None:
        async with self._write_lock.hold():
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[Transaction]:
        """One write transaction. `urgent` ones (webhook acknowledgements) are let in before ordinary ones."""
        async with self._write_lock.hold(urgent=urgent):
            try:
                # Inside the try: if we are cancelled while BEGIN waits for another process's lock, the
                # statement still completes in aiosqlite's thread, and the rollback queued after it undoes it.
                await self._writer.execute_fetchall("BEGIN IMMEDIATE")
                yield Transaction(self._writer)
                # Shielded: a cancelled caller must not leave the shared connection mid-transaction.
                await asyncio.shield(self._writer.commit())
            except BaseException:
                await asyncio.shield(self._writer.rollback())
                raise

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._reader.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._reader.execute_fetchall(sql, params))

    async def ping(self) -> bool:
        try:
            await self._reader.execute_fetchall("SELECT 1")
        except (sqlite3.Error, ValueError):
            return False
        return True


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves instead of sqlite3's implicit DEFERRED begins.
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    # execute_fetchall steps each statement to its end, so no half-read PRAGMA cursor keeps a lock open.
    await conn.execute_fetchall(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await conn.execute_fetchall("PRAGMA synchronous=FULL")
    await conn.execute_fetchall("PRAGMA foreign_keys=ON")
    return conn
