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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from core.storage.write_lock import WriteLock

Row = Mapping[str, Any]
Params = Sequence[Any]
T = TypeVar("T")

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


class ThreadTransaction:
    """The statements of a transaction run on the database thread itself: see `Database.run`."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    def execute(self, sql: str, params: Params = ()) -> int:
        return _rowcount(self._raw.execute(sql, params))

    def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        """One statement over many parameter rows; returns the rows changed (inserts that were not ignored)."""
        return _rowcount(self._raw.executemany(sql, rows))

    def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self._raw.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return self._raw.execute(sql, params).fetchall()


class Transaction:
    """Statements inside one BEGIN IMMEDIATE ... COMMIT on the writer connection.

    Each statement is one hop to aiosqlite's thread, and BEGIN travels with the first statement: a transaction of
    N statements costs N + 1 hops (the last is COMMIT) instead of 2N + 2. Every hop is time the write lock is
    held while the event loop and the database thread hand work back and forth, and the webhook acknowledgement
    waits behind that lock. Hot transactions with no awaits between their statements use `Database.run`.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.began = False

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._hop(lambda tx: tx.execute(sql, params))

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        """One statement over many parameter rows; returns the rows changed (inserts that were not ignored)."""
        return await self._hop(lambda tx: tx.execute_many(sql, rows))

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return await self._hop(lambda tx: tx.fetch_one(sql, params))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._hop(lambda tx: tx.fetch_all(sql, params))

    async def _hop(self, work: Callable[[ThreadTransaction], T]) -> T:
        begin, self.began = not self.began, True

        def run() -> T:
            raw = _raw(self._conn)
            if begin:
                raw.execute("BEGIN IMMEDIATE")
            return work(ThreadTransaction(raw))

        return await _on_thread(self._conn, run)


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
            tx = Transaction(self._writer)
            try:
                yield tx
                if tx.began:
                    # Shielded: a cancelled caller must not leave the shared connection mid-transaction.
                    await asyncio.shield(_on_thread(self._writer, lambda: _end(_raw(self._writer), "COMMIT")))
            except BaseException:
                if tx.began:
                    # Queued behind any hop still running (one cancelled while BEGIN waited for another
                    # process's lock, say), and decided there: the thread looks whether a transaction is open.
                    await asyncio.shield(_on_thread(self._writer, lambda: _end(_raw(self._writer), "ROLLBACK")))
                raise

    async def run(self, work: Callable[[ThreadTransaction], T], *, urgent: bool = False) -> T:
        """A whole write transaction in one hop: BEGIN IMMEDIATE, `work`, COMMIT, all on the database thread.

        For hot transactions whose statements need no await in between (claiming inbox work, recording a sent
        part, the webhook's group commit): the write lock is held for the SQL alone, not for a round trip through
        a busy event loop per statement. `work` runs on another thread: it must only use its transaction and
        values it was given. Shielded: once started, a cancelled caller does not stop the commit.
        """
        async with self._write_lock.hold(urgent=urgent):
            return await asyncio.shield(_on_thread(self._writer, lambda: _atomically(_raw(self._writer), work)))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement as its own transaction, in one hop: SQLite commits a lone statement atomically."""
        async with self._write_lock.hold():
            return await asyncio.shield(
                _on_thread(self._writer, lambda: _rowcount(_raw(self._writer).execute(sql, params)))
            )

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


def _raw(conn: aiosqlite.Connection) -> sqlite3.Connection:
    return conn._conn  # the sqlite3 connection aiosqlite's thread owns; only touched from that thread


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[[], T]) -> T:
    """Run `fn` on the connection's own thread, in order with everything else queued there: one hop.

    aiosqlite's `_execute` is the primitive its public methods are built on; using it lets a whole unit of work
    (BEGIN and a statement, or a statement and its rows) cross to the thread once instead of once per call.
    """
    return await conn._execute(fn)


def _rowcount(cursor: sqlite3.Cursor) -> int:
    count = cursor.rowcount
    cursor.close()
    return count


def _atomically(raw: sqlite3.Connection, work: Callable[[ThreadTransaction], T]) -> T:
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = work(ThreadTransaction(raw))
    except BaseException:
        _end(raw, "ROLLBACK")
        raise
    try:
        raw.execute("COMMIT")
    except BaseException:
        _end(raw, "ROLLBACK")
        raise
    return result


def _end(raw: sqlite3.Connection, verb: str) -> None:
    if raw.in_transaction:
        raw.execute(verb)


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves instead of sqlite3's implicit DEFERRED begins.
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    # execute_fetchall steps each statement to its end, so no half-read PRAGMA cursor keeps a lock open.
    await conn.execute_fetchall(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await conn.execute_fetchall("PRAGMA synchronous=FULL")
    await conn.execute_fetchall("PRAGMA foreign_keys=ON")
    # Case-insensitive search (conversations `q`) folds both sides with `casefold(...)`: SQLite's LOWER() folds
    # ASCII only, so "Émile" would never match "émile". PostgreSQL would define casefold(text) as LOWER($1), which
    # follows the database's collation there (Unicode-aware with a UTF-8/ICU locale).
    await conn.create_function("casefold", 1, casefold, deterministic=True)
    return conn


def casefold(value: object) -> object:
    """The SQL `casefold(x)`: Unicode case folding of text; NULL and non-text values pass through unchanged."""
    return value.casefold() if isinstance(value, str) else value
