"""The one place where tests reach the service's database directly, and the one test module that knows its backend.

Tests read what the service really stored (`rows`), stage what the API cannot make (`execute`, `insert`: rows at
past instants, an expired lease, a record lost in a crash), drive the storage layer itself (`open_database` opens
the service's own database handle), and name a fresh database of their own (`scratch_url`). No test module opens
the database on its own, so the whole suite runs on either backend:

- `TEST_DATABASE=sqlite` (the default): a `sqlite:///path` URL names a file in the test's temporary directory.
- `TEST_DATABASE=postgresql`: the server at `TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/
  postgres). The run creates one database of its own (dropped at the end, tests/conftest.py) and every scratch
  database is a new schema in it, named by the URL's `search_path`: as empty as a new SQLite file, at the cost of
  a CREATE SCHEMA.

Statements are written in the portable SQL the service's stores use (core/storage/db.py): `?` placeholders, no
backend-only syntax; what differs is here (`table_names`, `integrity_check`). A row reads by column name and by
position, and `tuple(row)` is its values in column order.

Tests of the SQLite backend's own machinery (its writer thread, another process holding SQLite's write lock) need
a raw connection to the file: `sqlite_connection`, and the `sqlite_only` mark that skips them on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg.rows import RowMaker

from core.storage.backends import connect_database
from core.storage.db import Database, DatabaseURL
from core.storage.migrations import apply_migrations
from core.storage.postgres_db import NumericLoader, pg_statement
from gateway.settings import Settings

Target = Settings | str  # the service's settings, or a DATABASE_URL

# Long enough to wait out the service's own write transactions, and a gateway process's in the crash tests.
BUSY_TIMEOUT_SECONDS = 10.0

BACKEND = os.environ.get("TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"TEST_DATABASE must be sqlite or postgresql, not {BACKEND!r}")
WARM_SCHEMAS = 3
POSTGRES_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class Row(tuple[Any, ...]):
    """A row by position and by column name, like sqlite3.Row."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


class _Run:
    """This test run's PostgreSQL database, made on first use, and the schemas handed out in it.

    Migrating a new schema takes PostgreSQL about 0.1 s, most of a short test's time: a thread keeps a few
    migrated schemas ready (`migrated_url`), made by the service's own `apply_migrations`, while the tests run."""

    def __init__(self) -> None:
        self.database: str | None = None
        self.schemas: dict[str, str] = {}
        self._count = itertools.count(1)
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=WARM_SCHEMAS)
        self._stop = threading.Event()
        self._warmers: list[threading.Thread] = []

    def url(self, schema: str | None = None) -> str:
        assert self.database is not None
        parts = urlsplit(POSTGRES_SERVER)
        # synchronous_commit=off: commits do not wait for the server's disk (a test never outlives the server).
        query = f"options={quote(f'-csearch_path={schema} -csynchronous_commit=off')}" if schema else ""
        return urlunsplit(parts._replace(path=f"/{self.database}", query=query))

    def schema_for(self, key: str, *, migrated: bool = False) -> str:
        if self.database is None:
            name = f"gateway_test_{os.getpid()}_{secrets.token_hex(3)}"
            with closing(psycopg.connect(POSTGRES_SERVER, autocommit=True)) as admin:
                _drop_abandoned(admin)
                admin.execute(f'CREATE DATABASE "{name}"')
            self.database = name
        if key not in self.schemas:
            self.schemas[key] = self._take_migrated() if migrated else self._new_schema()
        return self.schemas[key]

    def _new_schema(self) -> str:
        schema = f"t{next(self._count)}"  # itertools.count: atomic under the GIL, so the warmers never share one
        with closing(psycopg.connect(self.url(), autocommit=True)) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return schema

    def _take_migrated(self) -> str:
        if not self._warmers:
            self._warmers = [threading.Thread(target=self._warm, name="schema-warmer", daemon=True) for _ in range(2)]
            for warmer in self._warmers:
                warmer.start()
        schema = self._ready.get(timeout=60)
        if isinstance(schema, BaseException):
            raise schema
        return schema

    def _warm(self) -> None:
        while not self._stop.is_set():
            try:
                schema = self._new_schema()
                asyncio.run(_migrate(self.url(schema)))
                item: str | BaseException = schema
            except BaseException as exc:  # handed to the test that waits for a schema
                item = exc
            while not self._stop.is_set():
                try:
                    self._ready.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def drop(self) -> None:
        self._stop.set()
        for warmer in self._warmers:
            warmer.join(timeout=30)
        self._warmers = []
        if self.database is None:
            return
        with closing(psycopg.connect(POSTGRES_SERVER, autocommit=True)) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.database = None
        self.schemas.clear()


def _drop_abandoned(admin: psycopg.Connection[Any]) -> None:
    """Databases of earlier runs whose process is gone (killed before its end could drop them)."""
    names = [row[0] for row in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'gateway_test_%'")]
    for name in names:
        pid = name.split("_")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    db = await connect_database(url, pool_size=1)
    try:
        await apply_migrations(db)
    finally:
        await db.close()


_RUN = _Run()


def drop_test_databases() -> None:
    """End of the run: the PostgreSQL database it made, with every schema in it, and the SQLite template
    (tests/conftest.py)."""
    _close_kept()
    _RUN.drop()
    while _TEMPLATE:
        shutil.rmtree(_TEMPLATE.pop().parent, ignore_errors=True)


def postgres_available() -> bool:
    try:
        with closing(psycopg.connect(POSTGRES_SERVER, connect_timeout=3)):
            return True
    except psycopg.Error:
        return False


def scratch_url(directory: Path, name: str = "gateway.db") -> str:
    """The DATABASE_URL of a new, empty database of the test's own (the same one for the same arguments)."""
    if BACKEND == "postgresql":
        return postgres_scratch_url(directory, name)
    return f"sqlite:///{directory / name}"


def postgres_scratch_url(directory: Path, name: str = "gateway.db") -> str:
    """A new, empty PostgreSQL schema of the test's own whatever TEST_DATABASE says: for tests that move a SQLite
    database to PostgreSQL (check `postgres_available()` first)."""
    return _RUN.url(_RUN.schema_for(str(directory / name)))


def migrated_url(directory: Path, name: str = "gateway.db") -> str:
    """Like `scratch_url`, with the schema already migrated: on PostgreSQL a schema the warmers made, on SQLite a
    copy of a file this process migrated once (a copy takes a millisecond, migrating a new file about ten)."""
    if BACKEND == "postgresql":
        return _RUN.url(_RUN.schema_for(str(directory / name), migrated=True))
    target = directory / name
    if not target.exists():
        shutil.copyfile(_sqlite_template(), target)
    return scratch_url(directory, name)


_TEMPLATE: list[Path] = []


def _sqlite_template() -> Path:
    """A SQLite file migrated by the service's own `apply_migrations`, closed (so its journal is folded in) and
    kept for the run; made on a thread of its own, as a test's event loop may be running here."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="gateway-template-")) / "template.db"
        failure: list[BaseException] = []

        def migrate() -> None:
            try:
                asyncio.run(_migrate(f"sqlite:///{path}"))
            except BaseException as exc:  # said in the test that asked
                failure.append(exc)

        worker = threading.Thread(target=migrate, name="sqlite-template")
        worker.start()
        worker.join()
        if failure:
            raise failure[0]
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def rows(target: Target, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """Read the service's database directly, as an operator would, to check what was really stored."""
    url = _url(target)
    if _is_postgres(url):
        with _pg_connection(url) as conn:
            cursor = conn.execute(pg_statement(sql), params) if params else conn.execute(sql)
            return list(cursor.fetchall())
    with closing(_connect(target)) as conn:
        conn.row_factory = lambda cursor, values: Row(values, {d[0]: i for i, d in enumerate(cursor.description)})
        return conn.execute(sql, params).fetchall()


def every_row(target: Target) -> dict[str, list[Row]]:
    """Every row of every table, read on one connection (a connection per table made the authorization matrix
    spend most of its time connecting)."""
    url = _url(target)
    if _is_postgres(url):
        with _pg_connection(url) as conn:
            sql = "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
            names = [row["name"] for row in conn.execute(sql).fetchall()]
            return {name: list(conn.execute(f"SELECT * FROM {name}").fetchall()) for name in names}
    with closing(_connect(target)) as conn:
        conn.row_factory = lambda cursor, values: Row(values, {d[0]: i for i, d in enumerate(cursor.description)})
        names = [row["name"] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: conn.execute(f"SELECT * FROM {name}").fetchall() for name in names}


def quota_row(target: Target, account_id: str) -> Row:
    """The account's one row of quota state: used and reserved tokens, the period."""
    [row] = rows(target, "SELECT * FROM quota_state WHERE account_id = ?", (account_id,))
    return row


def execute(target: Target, sql: str, params: Sequence[Any] = ()) -> int:
    """One statement, committed on its own; the number of rows it changed."""
    url = _url(target)
    if _is_postgres(url):
        with _pg_connection(url) as conn:
            return (conn.execute(pg_statement(sql), params) if params else conn.execute(sql)).rowcount
    with closing(_connect(target)) as conn, conn:
        return conn.execute(sql, params).rowcount


def insert(target: Target, table: str, new_rows: Iterable[Mapping[str, Any]]) -> None:
    """Rows written straight into `table` in one transaction; each mapping's keys name its columns."""
    url = _url(target)
    postgres = _is_postgres(url)
    with _pg_connection(url) if postgres else closing(_connect(target)) as conn:
        statements: list[tuple[str, list[tuple[Any, ...]]]] = []
        for columns, group in itertools.groupby(new_rows, key=tuple):
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            statements.append((sql, [tuple(row[column] for column in columns) for row in group]))
        if isinstance(conn, psycopg.Connection):
            with conn.transaction(), conn.cursor() as cursor:
                for sql, values in statements:
                    cursor.executemany(pg_statement(sql), values)
        else:
            with conn:
                for sql, values in statements:
                    conn.executemany(sql, values)


def table_names(target: Target) -> list[str]:
    """Every table in the database, for scans that must miss none (a secret stored anywhere, a change anywhere)."""
    if _is_postgres(_url(target)):
        sql = "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return [row["name"] for row in rows(target, sql)]


def integrity_check(target: Target) -> str:
    """The backend's own consistency check of the whole database: "ok" when it is sound. PostgreSQL has no
    cheap whole-database check: there, every table must be readable to its end (a torn page would fail that)."""
    if _is_postgres(_url(target)):
        for table in table_names(target):
            rows(target, f"SELECT COUNT(*) FROM {table}")
        return "ok"
    return str(rows(target, "PRAGMA integrity_check")[0][0])


def fail_writes(target: Target, table: str) -> None:
    """From now on every INSERT and UPDATE of `table` fails the way a full disk fails it: SQLite's "database or
    disk is full", PostgreSQL's disk_full (53100). `allow_writes` undoes it."""
    if _is_postgres(_url(target)):
        execute(
            target,
            "CREATE OR REPLACE FUNCTION fail_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$",
        )
        execute(
            target,
            f"CREATE TRIGGER fail_{table} BEFORE INSERT OR UPDATE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION fail_write()",
        )
        return
    for verb in ("INSERT", "UPDATE"):
        execute(
            target,
            f"CREATE TRIGGER fail_{table}_{verb.lower()} BEFORE {verb} ON {table}"
            " BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END",
        )


@contextmanager
def writes_refused(target: Target) -> Iterator[None]:
    """While inside, every write of the service fails for want of the database, as with a full disk: on
    PostgreSQL every table refuses inserts and updates with disk_full; on SQLite another process holds the write
    lock, so each write fails with "database is locked" once the busy timeout (5 s) runs out. Call from a thread
    (`asyncio.to_thread`) or with no transaction of the app open: blocking its loop would stall its commits."""
    if _is_postgres(_url(target)):
        tables = table_names(target)
        for table in tables:
            fail_writes(target, table)
        try:
            yield
        finally:
            for table in tables:
                allow_writes(target, table)
        return
    with closing(sqlite_connection(target, isolation_level=None, check_same_thread=False)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


def allow_writes(target: Target, table: str) -> None:
    if _is_postgres(_url(target)):
        execute(target, f"DROP TRIGGER fail_{table} ON {table}")
        return
    for verb in ("insert", "update"):
        execute(target, f"DROP TRIGGER fail_{table}_{verb}")


@asynccontextmanager
async def open_database(target: Target) -> AsyncIterator[Database]:
    """The service's own database handle on `target`, closed on leaving: for tests that drive the storage layer."""
    db = await connect_database(_url(target), pool_size=4)
    try:
        yield db
    finally:
        await db.close()


async def seed_bot(db: Database, bot_id: str = "bot_1") -> None:
    """A plan `pln_1`, an account `acc_1` on it and one bot, written directly (storage tests that need a tenant
    without the API)."""
    await db.execute(
        "INSERT INTO plans (id, name, monthly_token_limit, models, default_model, overage_percent,"
        " messages_per_minute, created_at, updated_at) VALUES ('pln_1', 'p', 1000, '[]', 'm', 0, NULL, 1, 1)"
    )
    await db.execute(
        "INSERT INTO accounts (id, name, plan_id, locked, created_at, updated_at)"
        " VALUES ('acc_1', 'A', 'pln_1', 0, 1, 1)"
    )
    await db.execute(
        "INSERT INTO bots (id, account_id, name, persona, max_reply_tokens, memory_tokens, fallback_message,"
        " handover_pause_minutes, seq, created_at, updated_at) VALUES (?, 'acc_1', 'b', 'p', 300, 2000, 'f', 30,"
        " 1, 1, 1)",
        (bot_id,),
    )


def sqlite_connection(target: Target | Path, **options: Any) -> sqlite3.Connection:
    """A raw connection to the SQLite file (`options` go to `sqlite3.connect`; the caller closes it), for tests of
    the SQLite backend's own machinery: its writer thread, or another process holding the write lock."""
    return sqlite3.connect(target if isinstance(target, Path) else _path(target), **options)


def _url(target: Target) -> str:
    return target.database_url if isinstance(target, Settings) else target


def _is_postgres(url: str) -> bool:
    return DatabaseURL.parse(url).scheme == "postgresql"


def _path(target: Target) -> Path:
    path = DatabaseURL.parse(_url(target)).path
    assert path is not None, "a SQLite file was expected"
    return path


def _connect(target: Target) -> sqlite3.Connection:
    return sqlite3.connect(_path(target), timeout=BUSY_TIMEOUT_SECONDS)


def _row_maker(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


def _pg_connect(url: str) -> psycopg.Connection[Row]:
    conn = psycopg.connect(url, autocommit=True, row_factory=_row_maker, cursor_factory=psycopg.ClientCursor)
    conn.adapters.register_loader("numeric", NumericLoader)
    return conn


# The newest few connections of the direct reads and writes below, by URL, kept open for the next: a test reads
# its schema many times (the authorization matrix snapshots every table around each call), and a connection costs
# about 4 ms to make. They hold no transaction and no lock between uses (autocommit).
_KEPT_CONNECTIONS = 4
_kept: dict[str, psycopg.Connection[Row]] = {}
_kept_lock = threading.Lock()


@contextmanager
def _pg_connection(url: str) -> Iterator[psycopg.Connection[Row]]:
    with _kept_lock:
        conn = _kept.pop(url, None)
    if conn is not None:
        try:
            conn.execute("SELECT 1")  # the server may have closed it meanwhile (a restart, an idle timeout)
        except psycopg.Error:
            conn.close()
            conn = None
    if conn is None:
        conn = _pg_connect(url)
    try:
        yield conn
    except BaseException:
        conn.close()  # whatever state the failure left it in, it is not handed to the next read
        raise
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.close()
        return
    with _kept_lock:
        displaced = _kept.pop(url, None)  # another use of the same URL ran meanwhile and kept its own
        if displaced is not None:
            displaced.close()
        _kept[url] = conn
        while len(_kept) > _KEPT_CONNECTIONS:
            _kept.pop(next(iter(_kept))).close()


def _close_kept() -> None:
    with _kept_lock:
        while _kept:
            _kept.popitem()[1].close()
