"""The one place where tests reach the service's database directly, and the one test module that knows its backend.

Tests read what the service really stored (`rows`), stage what the API cannot make (`execute`, `insert`: rows at
past instants, an expired lease, a record lost in a crash), drive the storage layer itself (`open_database` opens
the service's own `core.storage.db.Database`), and name a fresh database of their own (`scratch_url`). No test
module opens the database on its own: pointing the suite at another backend (PostgreSQL, next) means changing
this module, not the tests.

The backend today is SQLite: a `sqlite:///path` URL names a file. Statements are written in the portable SQL the
service's stores use (core/storage/db.py): `?` placeholders, no SQLite-only syntax; what only SQLite has is here
(`table_names`, `integrity_check`). A row reads by column name and by position, and `tuple(row)` is its values in
column order.

Tests of the SQLite backend's own machinery (its writer thread, another process holding SQLite's write lock) need
a raw connection to the file: `sqlite_connection`, named for what it is, so the tests that are SQLite's alone say so.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

from core.storage.db import Database, DatabaseURL
from gateway.settings import Settings

Target = Settings | str  # the service's settings, or a DATABASE_URL
Row = sqlite3.Row

# Long enough to wait out the service's own write transactions, and a gateway process's in the crash tests.
BUSY_TIMEOUT_SECONDS = 10.0


def scratch_url(directory: Path, name: str = "gateway.db") -> str:
    """The DATABASE_URL of a new, empty database of the test's own, created when it is first opened."""
    return f"sqlite:///{directory / name}"


def rows(target: Target, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """Read the service's database directly, as an operator would, to check what was really stored."""
    with closing(_connect(target)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def quota_row(target: Target, account_id: str) -> Row:
    """The account's one row of quota state: used and reserved tokens, the period."""
    [row] = rows(target, "SELECT * FROM quota_state WHERE account_id = ?", (account_id,))
    return row


def execute(target: Target, sql: str, params: Sequence[Any] = ()) -> int:
    """One statement, committed on its own; the number of rows it changed."""
    with closing(_connect(target)) as conn, conn:
        return conn.execute(sql, params).rowcount


def insert(target: Target, table: str, new_rows: Iterable[Mapping[str, Any]]) -> None:
    """Rows written straight into `table` in one transaction; each mapping's keys name its columns."""
    with closing(_connect(target)) as conn, conn:
        for columns, group in itertools.groupby(new_rows, key=tuple):
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            conn.executemany(sql, (tuple(row[column] for column in columns) for row in group))


def table_names(target: Target) -> list[str]:
    """Every table in the database, for scans that must miss none (a secret stored anywhere, a change anywhere)."""
    return [row["name"] for row in rows(target, "SELECT name FROM sqlite_master WHERE type = 'table'")]


def integrity_check(target: Target) -> str:
    """The backend's own consistency check of the whole database: "ok" when it is sound."""
    return str(rows(target, "PRAGMA integrity_check")[0][0])


@asynccontextmanager
async def open_database(target: Target) -> AsyncIterator[Database]:
    """The service's own `Database` on `target`, closed on leaving: for tests that drive the storage layer directly."""
    db = await Database.open(_url(target))
    try:
        yield db
    finally:
        await db.close()


def sqlite_connection(target: Target | Path, **options: Any) -> sqlite3.Connection:
    """A raw connection to the SQLite file (`options` go to `sqlite3.connect`; the caller closes it), for tests of
    the SQLite backend's own machinery: its writer thread, or another process holding the write lock."""
    return sqlite3.connect(target if isinstance(target, Path) else _path(target), **options)


def _url(target: Target) -> str:
    return target.database_url if isinstance(target, Settings) else target


def _path(target: Target) -> Path:
    return DatabaseURL.parse(_url(target)).path


def _connect(target: Target) -> sqlite3.Connection:
    return sqlite3.connect(_path(target), timeout=BUSY_TIMEOUT_SECONDS)
