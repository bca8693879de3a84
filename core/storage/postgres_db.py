"""The PostgreSQL backend of the database interface (core/storage/db.py): many processes on one database.

psycopg 3 with its connection pool. Statements are the stores' portable SQL: `?` placeholders become psycopg's
`%s` once per distinct statement (cached). Values are bound on the server, and a statement a connection runs
again and again is prepared there (psycopg does it at the sixth run): the server then skips parsing and planning,
which was most of its CPU per statement (measured with a turn's statements: 50-300 us each bound on the client,
23-43 us prepared). Connections run in autocommit; a transaction is an explicit BEGIN ... COMMIT on one pooled
connection, at READ COMMITTED (core/storage/db.py says what the stores do about that).

Round trips are what a statement costs most here after that, so none is spent on ceremony: BEGIN travels with the
transaction's first statement and a deferred write (`Transaction.defer`) with the next statement or the COMMIT, in
psycopg's pipeline mode (sent together, answered together); `execute` and `execute_returning` run their one
statement in autocommit, where it is a transaction by itself. A transaction that ran no statement sends nothing.

What differs from SQLite, and is handled here rather than in the stores:
- `SUM(bigint)` is NUMERIC in PostgreSQL: whole numbers come back as `int` (as SQLite gives them), others as float.
- Text cannot hold NUL: a NUL in a bound value is stored and matched as U+FFFD, as the webhook parsers already
  store it (adapters/text_clean.py), instead of failing the statement.
- A transaction PostgreSQL aborted to break a deadlock or a serialisation conflict is run again from the start
  (`run` only: its work is a function of the transaction alone); what still fails is StorageUnavailable.
- `casefold(x)` is a SQL function the migrations create: `lower(x)` under the database's collation, which folds
  Unicode (É to é) with a UTF-8 locale (SQLite's `casefold` is Python's str.casefold).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import structlog
from psycopg.adapt import Buffer, Loader
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg.types.numeric import Int8Dumper
from psycopg_pool import AsyncConnectionPool

from core.errors import Conflict, StorageUnavailable, ValueOutOfRange
from core.storage.db import POSTGRES, Dialect, Fetched, Params, Prefetched, Row, Transaction, WriteHealth
from core.storage.leadership import Leadership
from core.storage.postgres_doorbell import CommitWaitReports, PostgresDoorbell, PostgresLeadership

T = TypeVar("T")
log = structlog.get_logger("core.storage.postgres_db")

Connection = psycopg.AsyncConnection[dict[str, Any]]

# How long a caller waits for a free pooled connection before the request is answered 503.
POOL_WAIT_SECONDS = 10.0
# Attempts of a `run` transaction that PostgreSQL aborted (deadlock, serialisation failure).
RUN_ATTEMPTS = 3
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_BEGIN = "BEGIN"
# What a statement's result is once it has been answered (a pipeline that failed leaves the rest unanswered).
_ANSWERED = frozenset({psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK})


@lru_cache(maxsize=4096)
def pg_statement(sql: str) -> str:
    """The stores' `?` placeholders as psycopg's `%s` (a literal % doubled first). No statement of the stores has
    a `?` or `%` inside a string literal: patterns (LIKE) are bound values."""
    return sql.replace("%", "%%").replace("?", "%s")


def _stale_plan(exc: psycopg.Error) -> bool:
    """A statement prepared on this connection whose result columns changed since (another process migrated
    the database: `SELECT a.*` over a table that gained a column). Run again once unprepared, it works."""
    if not isinstance(exc, psycopg.errors.FeatureNotSupported):
        return False
    # The server function that refuses it, whatever language the server's messages are in.
    return exc.diag.source_function == "RevalidateCachedQuery" or "cached plan must not change" in str(exc)


def _retryable(exc: psycopg.Error) -> bool:
    return isinstance(exc, _RETRYABLE) or _stale_plan(exc)


def _query(sql: str, params: Params) -> tuple[str, Sequence[Any] | None]:
    """A statement as psycopg takes it: without parameters as it is (its `%` are not placeholders)."""
    return (pg_statement(sql), _bound(params)) if params else (sql, None)


def _bound(params: Params) -> Sequence[Any]:
    return [p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in params]


class NumericLoader(Loader):
    """NUMERIC (from SUM, AVG over integers) as int when whole, else float: what the stores expect of SQLite."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        if "." not in text and "e" not in text.lower() and text.lstrip("-").isdigit():
            return int(text)
        value = float(text)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value


async def _configure(conn: Connection) -> None:
    conn.adapters.register_loader("numeric", NumericLoader)
    # Every int as bigint (the stores' integer columns are): psycopg would otherwise type each by its size
    # (smallint, integer, bigint), and prepare a statement once per combination of its parameters' sizes.
    conn.adapters.register_dumper(int, Int8Dumper)


class _Pending:
    """A prefetched statement (`PostgresTransaction.prefetch`): its cursor once it has been sent."""

    __slots__ = ("_rows", "_tx", "cursor")

    def __init__(self, tx: PostgresTransaction) -> None:
        self._tx = tx
        self.cursor: psycopg.AsyncCursor[dict[str, Any]] | None = None
        self._rows: list[Row] | None = None

    async def rows(self) -> list[Row]:
        """Its rows, the same however often asked (as SQLite's `Fetched`)."""
        if self._rows is None:
            if self.cursor is None:
                await self._tx._flush_alone()  # nothing else came to take it (refused once the transaction ended)
            cursor = self.cursor
            assert cursor is not None  # the flush above set it
            result = cursor.pgresult
            if result is None or result.status not in _ANSWERED:  # its pipeline failed: the error was raised there
                raise RuntimeError("a prefetched statement was not answered: its transaction failed")
            self._rows = [] if cursor.description is None else list(await cursor.fetchall())
        return self._rows


class PostgresTransaction:
    """The statements of one transaction on `conn`. With `begin`, the transaction is opened by its first statement
    (BEGIN travels with it) and `opened` says whether that has happened; the owner commits or rolls back.
    Deferred writes and prefetched statements wait for the next statement or the commit and travel with it."""

    dialect: Dialect = POSTGRES

    def __init__(self, conn: Connection, *, begin: bool = False) -> None:
        self._conn = conn
        self._begin = begin
        self.opened = False
        self.ended = False
        # Statements waiting to travel with the next one: deferred writes, and prefetched statements (with the
        # handle that takes their cursor once sent).
        self._deferred: list[tuple[str, Sequence[Any] | None, _Pending | None]] = []

    async def _send(self, sql: str, params: Params) -> psycopg.AsyncCursor[dict[str, Any]]:
        self._refuse_if_ended()
        query, values = _query(sql, params)
        if not self._deferred and (self.opened or not self._begin):
            return await self._conn.execute(query, values)
        if values is None:  # perhaps a script of several statements, which a pipeline cannot carry
            await self._flush_alone()
            return await self._conn.execute(query)
        async with self._conn.pipeline():  # what waits (BEGIN, deferred writes) and the statement: one round trip
            await self._flush()
            return await self._conn.execute(query, values)

    def _refuse_if_ended(self) -> None:
        if self.ended:  # its connection is back in the pool, perhaps another caller's now
            raise RuntimeError("a statement was sent through a transaction that has ended")

    async def _flush(self) -> None:
        """Inside a pipeline: BEGIN if the transaction is not open yet, then the deferred writes."""
        if self._begin and not self.opened:
            self.opened = True  # from here the connection may be in a transaction, whatever the statement does
            await self._conn.execute(_BEGIN)
        deferred, self._deferred = self._deferred, []
        for query, values, pending in deferred:
            cursor = await self._conn.execute(query, values)
            if pending is not None:
                pending.cursor = cursor  # its rows are there once the pipeline has synced

    async def _flush_alone(self) -> None:
        """What waits to travel (BEGIN, deferred and prefetched statements), sent on its own: before a statement
        that cannot travel with them (executemany, COPY), or for a prefetched statement's rows."""
        self._refuse_if_ended()
        if self._deferred or (self._begin and not self.opened):
            async with self._conn.pipeline():
                await self._flush()

    async def defer(self, sql: str, params: Params = ()) -> None:
        if not self._begin:  # a statement in autocommit: no commit to travel with, so at once
            await self._send(sql, params)
            return
        self._deferred.append((*_query(sql, params), None))

    async def prefetch(self, sql: str, params: Params = ()) -> Prefetched:
        if not self._begin:  # autocommit: nothing to travel with
            return Fetched(await self.fetch_all(sql, params))
        pending = _Pending(self)
        self._deferred.append((*_query(sql, params), pending))
        return pending

    async def commit(self) -> None:
        """COMMIT, after the writes still deferred, in one round trip (nothing at all if nothing ran and nothing was
        deferred; a transaction's own setting, such as synchronous_commit, is deferred too)."""
        if not self._deferred:
            if self.opened:
                await self._conn.execute("COMMIT")
            return
        async with self._conn.pipeline():
            await self._flush()
            await self._conn.execute("COMMIT")

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self._send(sql, params)).rowcount

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        if not rows:
            return 0
        if len(rows) == 1:  # one statement, and BEGIN with it when it opens the transaction
            return await self.execute(sql, rows[0])
        await self._flush_alone()
        async with self._conn.cursor() as cursor:
            await cursor.executemany(pg_statement(sql), [_bound(row) for row in rows])
            return cursor.rowcount

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Params]) -> int:
        """Rows into `table` with COPY ... FROM STDIN: a bulk load, for `python -m gateway copy-database` (no store
        uses it). Many times faster than INSERTs: 50,000 usage-shaped rows into a bare table went in at 150,000
        rows/s, against 6,000 for multi-row INSERTs (measured with client-side binding). Values are
        written as given, without `_bound`'s pass over each: text holding NUL is refused (DataError), so the caller
        replaces it first."""
        statement = SQL("COPY {} ({}) FROM STDIN").format(
            Identifier(table), SQL(", ").join(Identifier(column) for column in columns)
        )
        count = 0
        await self._flush_alone()
        async with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row(row)
                count += 1
        return count

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        cursor = await self._send(sql, params)
        if cursor.description is None:
            return []
        rows: list[Row] = list(await cursor.fetchall())
        return rows


class PostgresDatabase:
    dialect: Dialect = POSTGRES

    def __init__(self, pool: AsyncConnectionPool[Connection], url: str) -> None:
        self._pool = pool
        self.writes = WriteHealth()
        self._url = url
        self.doorbell = PostgresDoorbell(url, self._notify)
        self._commit_waits = CommitWaitReports(self.doorbell)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, idle: bool = False) -> PostgresDatabase:
        """`idle`: open no connection until one is needed (a handle for occasional reports)."""
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=0 if idle else 1,
            max_size=max(1, pool_size),
            open=False,
            timeout=POOL_WAIT_SECONDS,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            name="gateway",
        )
        try:
            with _translated():
                # One connection first: a wrong host, password or database name is reported as the server
                # said it, at once (the pool would only say it timed out, after retrying).
                if not idle:
                    first = await psycopg.AsyncConnection.connect(url, connect_timeout=int(POOL_WAIT_SECONDS))
                    await asyncio.shield(first.close())  # closed even when start-up is cancelled here
                await pool.open(wait=not idle, timeout=POOL_WAIT_SECONDS)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url)

    def watch_urgent_commits(self, listener: Callable[[float], None]) -> None:
        """Commits on separate connections do not queue behind each other as on SQLite's one writer, but the
        processes still share the machine's CPU: a webhook's commit waits for its process's event loop and for
        the server. The listener hears this process's urgent commits and what other processes report of theirs
        (core/storage/postgres_doorbell.py, CommitWaitReports), so worker processes give way to web processes."""
        self._commit_waits.watch(listener)

    def leadership(self, name: str) -> Leadership:
        return PostgresLeadership(self._url, name)

    async def close(self) -> None:
        await self._commit_waits.close()
        await self.doorbell.close()
        await self._pool.close()

    async def _notify(self, channel: str, payload: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify(current_schema() || %s, %s)", (channel, payload))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        with self.writes.watch(), _translated():
            async with self._pool.connection() as conn, _transaction(conn) as tx:
                yield tx

    async def run(
        self,
        work: Callable[[Transaction], Coroutine[Any, Any, T]],
        *,
        urgent: bool = False,
        durable: bool = True,
        small: bool = False,
    ) -> T:
        # Shielded like SQLite's: once started, a cancelled caller does not cut the transaction off midway.
        # `durable=False` is not taken up: a server may lose an unsynced commit and go on (Database.run); nor is
        # `small`: every transaction is a round trip to the server.
        started = time.monotonic()
        try:
            return await asyncio.shield(asyncio.ensure_future(self._run(work)))
        finally:
            if urgent:  # from the caller's side (the wait for a connection, the server, this event loop), failed too
                self._commit_waits.record((time.monotonic() - started) * 1000)

    async def _run(self, work: Callable[[Transaction], Coroutine[Any, Any, T]], *, begin: bool = True) -> T:
        with self.writes.watch():
            return await self._attempts(work, begin=begin)

    async def _attempts(self, work: Callable[[Transaction], Coroutine[Any, Any, T]], *, begin: bool) -> T:
        """`work` on a pooled connection (in a transaction with `begin`), run again from the start after a
        deadlock, a serialisation failure or a stale prepared statement."""
        with _translated():
            for attempt in range(1, RUN_ATTEMPTS + 1):
                try:
                    async with self._pool.connection() as conn:
                        try:
                            if not begin:
                                return await work(PostgresTransaction(conn))
                            async with _transaction(conn) as tx:
                                return await work(tx)
                        except psycopg.errors.FeatureNotSupported as exc:
                            if _stale_plan(exc):
                                await conn.execute("DEALLOCATE ALL")  # psycopg forgets its prepared statements too
                            raise
                except psycopg.Error as exc:
                    if attempt == RUN_ATTEMPTS or not _retryable(exc):
                        raise
                    log.info("transaction_retried", attempt=attempt, error=type(exc).__name__)
        raise AssertionError("unreachable")

    async def execute(self, sql: str, params: Params = (), *, urgent: bool = False, small: bool = False) -> int:
        return await self._alone(lambda tx: tx.execute(sql, params), urgent=urgent)

    async def execute_returning(
        self, sql: str, params: Params = (), *, urgent: bool = False, durable: bool = True, small: bool = False
    ) -> list[Row]:
        # `durable=False` and `small` are not taken up, as in run(): one autocommit statement, one round trip.
        return await self._alone(lambda tx: tx.fetch_all(sql, params), urgent=urgent)

    async def _alone(self, statement: Callable[[Transaction], Coroutine[Any, Any, T]], *, urgent: bool) -> T:
        """One statement in autocommit is a transaction of its own: no BEGIN, no COMMIT, one round trip."""
        started = time.monotonic()
        try:
            return await asyncio.shield(asyncio.ensure_future(self._run(statement, begin=False)))
        finally:
            if urgent:
                self._commit_waits.record((time.monotonic() - started) * 1000)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._attempts(lambda tx: tx.fetch_all(sql, params), begin=False)

    async def lookup(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.fetch_all(sql, params)  # a round trip to the server either way

    async def ping(self) -> bool:
        try:
            async with self._pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


@asynccontextmanager
async def _transaction(conn: Connection) -> AsyncIterator[PostgresTransaction]:
    """A transaction opened by its first statement (if it runs any): committed when the block ends, rolled back
    when it raises. Like psycopg's own transaction blocks, a failed rollback (the connection is gone) is logged and
    the block's error goes on; the pool discards a connection left in a transaction or broken."""
    tx = PostgresTransaction(conn, begin=True)
    try:
        yield tx
        await tx.commit()  # a deferred write that fails here rolls back like any statement
    except BaseException:
        if tx.opened:
            try:
                await conn.execute("ROLLBACK")
            except psycopg.Error as exc:
                log.warning("rollback_failed", error=type(exc).__name__)
        raise
    finally:
        tx.ended = True  # the connection goes back to the pool: nothing more may be sent through `tx`


@contextmanager
def _translated() -> Iterator[None]:
    """psycopg's failures as the domain's: a unique or foreign-key violation is a Conflict; a value the column
    cannot hold (a number out of range) is ValueOutOfRange; a connection lost,
    a pool exhausted, a disk full, a deadlock that persisted, a server shutting down is StorageUnavailable."""
    try:
        yield
    except psycopg.IntegrityError as exc:
        raise Conflict("this conflicts with a change made at the same moment; please retry") from exc
    except psycopg.errors.NumericValueOutOfRange as exc:  # a number beyond what the column's type holds
        raise ValueOutOfRange(f"postgresql: {type(exc).__name__}") from exc
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
        # A missing table is a database not migrated yet: unavailable, as SQLite reports it too.
        first_line = next(iter(str(exc).strip().splitlines()), "")
        raise StorageUnavailable(f"postgresql: {type(exc).__name__}: {first_line}") from exc
