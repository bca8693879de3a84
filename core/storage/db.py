"""What every store function relies on, whichever database is behind it: the interface of a database handle.

Two backends implement it: SQLite (`core/storage/sqlite_db.py`, the embedded default: one writer thread, an
urgent lane, group commit) and PostgreSQL (`core/storage/postgres_db.py`: a connection pool, many processes on one
database). Store functions are written once, in portable SQL: `?` placeholders, INSERT ... RETURNING,
ON CONFLICT, CASE instead of GREATEST, `casefold(x)` for case-insensitive matching. The few fragments that differ
come from the transaction's `Dialect` (row locks, the inbox claim's SKIP LOCKED, the migrations' lock).

Each backend turns its driver's failures into the domain's: a unique or foreign-key violation is a `Conflict`
(409), a busy, locked, full or unreachable database a `StorageUnavailable` (503), never a 500.

Isolation: PostgreSQL runs at READ COMMITTED, where a read followed by a write in one transaction can race
another process's transaction. A store function that reads a row and then writes from what it read locks that
row first (`dialect.locked()`, nothing on SQLite, whose write transactions run one at a time), or folds the
read into a conditional UPDATE whose row count decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from core.errors import StorageUnavailable
from core.storage.doorbell import Doorbell
from core.storage.leadership import Leadership

Row = Mapping[str, Any]
Params = Sequence[Any]
T = TypeVar("T")


# Row locks a SELECT may take (`Dialect.locked`), until its transaction ends:
# - "update": the transaction will change the rows from what it read; other writers of them wait. Inserts that
#   reference them (foreign keys) do not.
# - "delete": the transaction will delete them; inserts that reference them wait too, and then fail cleanly.
# - "share": the rows must not be deleted (or their key changed) before this transaction ends.
_ROW_LOCKS = {"update": " FOR NO KEY UPDATE", "delete": " FOR UPDATE", "share": " FOR KEY SHARE"}


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    row_locks: bool
    # Appended to the inbox claim's inner SELECT: rows another claimer holds are passed over, not waited for.
    skip_locked: str
    # A statement that holds a lock of `name` until the transaction ends, across every process on the database.
    advisory_lock: str | None
    # Whether one execute() may carry several statements (without parameters) separated by semicolons.
    scripts: bool = False

    def lock(self, name: str) -> str | None:
        return None if self.advisory_lock is None else self.advisory_lock.replace("{name}", name)

    def locked(self, mode: str = "update", *, of: str | None = None) -> str:
        """The clause to append to a SELECT to lock the rows it reads (of the table aliased `of` in a join)."""
        if not self.row_locks:
            return ""
        return _ROW_LOCKS[mode] + (f" OF {of}" if of else "")


# SQLite: every write transaction starts with BEGIN IMMEDIATE and holds the database's one write lock.
SQLITE = Dialect("sqlite", row_locks=False, skip_locked="", advisory_lock=None)
# Advisory locks are per database; the schema's name keeps two deployments sharing a database (tests) apart.
POSTGRES = Dialect(
    "postgresql",
    row_locks=True,
    skip_locked=" FOR UPDATE SKIP LOCKED",
    advisory_lock="SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':{name}', 0))",
    scripts=True,
)


class WriteHealth:
    """Whether the last write transaction failed for want of the database (a full disk, a lock held too long, the
    server gone) and none has succeeded since: readiness then probes with a write of its own instead of trusting
    that reads still work. A refused write of the caller's own making (a conflict, a missing row) says nothing."""

    def __init__(self) -> None:
        self.failing = False

    @contextmanager
    def watch(self) -> Iterator[None]:
        try:
            yield
        except StorageUnavailable:
            self.failing = True
            raise
        self.failing = False


class DatabaseURLError(ValueError):
    """DATABASE_URL names something this build cannot open."""


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    scheme: str  # sqlite | postgresql
    path: Path | None  # the SQLite file
    url: str  # as given (PostgreSQL's connection string)

    @classmethod
    def parse(cls, url: str, *, base_dir: Path | None = None) -> DatabaseURL:
        if url.startswith("sqlite:///"):
            raw = url[len("sqlite:///") :]
            if not raw or raw == ":memory:":
                raise DatabaseURLError("DATABASE_URL needs a file path: sqlite:///data/gateway.db")
            path = Path(raw)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            return cls("sqlite", path, url)
        if url.startswith(("postgresql://", "postgres://")):
            if "@" not in url and url.rstrip("/").count("/") < 3:
                raise DatabaseURLError("DATABASE_URL needs a database name: postgresql://user@host:5432/dbname")
            return cls("postgresql", None, url)
        raise DatabaseURLError(f"unsupported DATABASE_URL scheme in {url.split(':', 1)[0]!r}")


# A check on statements that travel with a later one (`Transaction.prefetch`): awaited before the transaction
# commits, it raises when what they found refuses the work (a lease lost), undoing all of it.
Check = Callable[[], Awaitable[None]]


class Prefetched(Protocol):
    """The rows of a statement sent ahead (`Transaction.prefetch`), once they are there."""

    async def rows(self) -> list[Row]: ...


@dataclass(frozen=True, slots=True)
class Fetched:
    """Rows already in hand: what a backend gives for `prefetch` when it runs the statement at once."""

    found: list[Row]

    async def rows(self) -> list[Row]:
        return self.found


class Transaction(Protocol):
    """The statements of one write transaction. Store functions take this and await each statement."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        """One statement over many parameter rows; returns the rows changed (inserts that were not ignored)."""
        ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def defer(self, sql: str, params: Params = ()) -> None:
        """A write whose outcome the caller does not need (no rows, no count): it may travel with the
        transaction's next statement or with its commit, one round trip for both on PostgreSQL. If it fails, the
        statement it travels with (or the commit) raises, and the whole transaction is rolled back."""
        ...

    async def prefetch(self, sql: str, params: Params = ()) -> Prefetched:
        """A statement whose rows the caller needs later, not now: like a deferred write it may travel with the
        transaction's next statement or its commit (one round trip for both on PostgreSQL), and `rows()` gives
        them once it has (sending it then if nothing has taken it yet). Statements still run in the order they
        were issued. If it fails, the statement it travels with (or `rows()`) raises."""
        ...


class Database(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def writes(self) -> WriteHealth: ...

    def watch_urgent_commits(self, listener: Callable[[float], None]) -> None:
        """Call `listener(milliseconds)` after each urgent transaction (a webhook waits on it) with the time it
        waited for its commit. A backend whose writers share one connection (SQLite) reports them, so that
        background work can give way when it slows acknowledgements down; PostgreSQL's commits do not queue
        behind each other, and it reports nothing."""
        ...

    def leadership(self, name: str) -> Leadership:
        """Leadership of the chore `name` among the processes on this database (core/storage/leadership.py)."""
        ...

    @property
    def doorbell(self) -> Doorbell:
        """Rung by stores after a commit others should hear of at once (core/storage/doorbell.py)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """One write transaction whose work may await other things between its statements."""
        ...

    async def run(
        self,
        work: Callable[[Transaction], Coroutine[Any, Any, T]],
        *,
        urgent: bool = False,
        durable: bool = True,
        small: bool = False,
    ) -> T:
        """A whole write transaction, answered once its commit is durable (unless `durable` is False, below).

        `work` must await nothing but its transaction's statements: a backend may run it in one step (SQLite's
        writer thread) or run it again from the start when the database aborted it (PostgreSQL's deadlock and
        serialisation failures). If it raises, its changes are undone and the error is raised here. Once
        started, a cancelled caller does not stop the commit. `urgent`: a webhook acknowledgement waits on it.
        `durable=False`: a write that is made again if a crash loses it (a quota reservation, the customer's
        latest message time), whose loss is harmless only if this process stops with it. A backend on which
        losing a commit stops the gateway too answers once the commit is visible to every connection, without
        waiting for the disk: SQLite, where only a power cut or a kernel crash loses it, whole, and nothing
        committed after it (the next durable commit makes it durable too). PostgreSQL waits for the disk all the
        same: a server may lose an unsynced commit (a crash, a failover) and go on serving, and a turn's charge
        would then meet a contact or a reservation that is not there.
        `small`: a few rows through an index, as every turn writes (its reservation, its charge, its inbox event):
        SQLite may make it on the event loop's thread, which it holds meanwhile (sqlite_db.py), and other
        connections may see it there before it is on the disk; it must never scan a table.
        """
        ...

    async def execute(self, sql: str, params: Params = (), *, urgent: bool = False, small: bool = False) -> int:
        """One statement as its own transaction. `small` as for `run`."""
        ...

    async def execute_returning(
        self, sql: str, params: Params = (), *, urgent: bool = False, durable: bool = True, small: bool = False
    ) -> list[Row]:
        """One statement that changes rows, as its own transaction: the rows its RETURNING clause gives back.
        `durable` and `small` as for `run`."""
        ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """A read outside any transaction: it sees what was committed."""
        ...

    async def lookup(self, sql: str, params: Params = ()) -> list[Row]:
        """`fetch_all` for a read of a few rows through an index, as every turn makes (its contact, its history):
        SQLite makes it on the event loop's thread (sqlite_db.py); it must never scan a table."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
