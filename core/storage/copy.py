"""Moving a SQLite database into an empty PostgreSQL one: `python -m gateway copy-database --to postgresql://...`.

What it relies on and guarantees:
- Both databases are at this build's latest schema version (the target is migrated here first), and their table
  and column sets are compared, so a table added by a later migration is copied, never silently left behind.
- The target's tables hold no rows: checked before the migrations run, and again under `LOCK TABLE ... IN
  EXCLUSIVE MODE` inside the copy's transaction, so another writer cannot slip rows in (readers still can read).
- Every row goes in ONE target transaction: a failure anywhere rolls all of it back, and the target's tables
  are as empty as before (its schema stays migrated, so the copy can simply be run again).
- The source is read inside BEGIN IMMEDIATE: SQLite's write lock, held to the end, gives one consistent snapshot
  and makes a gateway still writing to the file wait or fail rather than change it under the copy.
- Rows are read in keyset pages on the primary key (never the whole table in memory) and written with COPY
  (PostgresTransaction.copy_rows), parents first, in the order the source's foreign keys give.
- Values are copied as stored: TEXT, BIGINT, INTEGER and DOUBLE PRECISION map one to one, and sealed secrets are
  just text here (never opened). PostgreSQL text cannot hold NUL: a NUL becomes U+FFFD, as the PostgreSQL backend
  stores it (core/storage/postgres_db.py), and such values are counted in the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.storage.backends import connect_database
from core.storage.db import Database, DatabaseURL, DatabaseURLError, Row, Transaction
from core.storage.migrations import LATEST_VERSION, apply_migrations, current_version

if TYPE_CHECKING:  # the command imports psycopg when it runs: the CLI module loads without it
    from core.storage.postgres_db import PostgresTransaction

# Rows per page read from the source and written with one COPY into the target.
BATCH_ROWS = 1000
# Tables whose rows are large take smaller pages: a kept photo is a data URL of up to a few hundred kB.
_LARGE_ROWS = {"message_images": 16}
# Each database keeps the versions it applied here; the target has its own rows.
_MIGRATIONS_TABLE = "schema_migrations"
# How long the copy waits for a lock on the target's tables (a transaction left open elsewhere) before giving up.
_LOCK_TIMEOUT = "30s"


class CopyRefused(ValueError):
    """The copy did not run, or was rolled back: no row was written to the target's tables."""


@dataclass(frozen=True, slots=True)
class TableCopy:
    name: str
    rows: int
    nuls_replaced: int  # text values that held NUL, stored with U+FFFD in its place


@dataclass(frozen=True, slots=True)
class CopyReport:
    version: int
    tables: tuple[TableCopy, ...]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)

    @property
    def nuls_replaced(self) -> int:
        return sum(table.nuls_replaced for table in self.tables)


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key's columns, in key order: the pages' order
    parents: frozenset[str]  # tables its foreign keys reference


async def copy_database(source_url: str, target_url: str, *, batch_rows: int = BATCH_ROWS) -> CopyReport:
    """Copy every row of the SQLite database `source_url` into the empty PostgreSQL database `target_url`."""
    if batch_rows < 1:
        raise CopyRefused("the batch size must be at least 1")
    source_path = _parse(source_url, "sqlite", "the source (DATABASE_URL) must be a sqlite:/// URL").path
    _parse(target_url, "postgresql", "--to must be a postgresql:// URL")
    if source_path is None or not source_path.is_file():
        # Opening a missing file would create an empty database; say what is wrong instead.
        raise CopyRefused(f"the source database {source_path} does not exist")
    started = time.monotonic()
    source = await connect_database(source_url)
    try:
        target = await connect_database(target_url, pool_size=1)
        try:
            from core.storage.postgres_db import PostgresDatabase

            assert isinstance(target, PostgresDatabase)  # the URL said postgresql; its COPY is what we load with
            version, tables = await _prepare(source, target)
            async with source.transaction() as snapshot, target.transaction() as tx:
                copied = await _copy_all(snapshot, tx, tables, batch_rows)
        finally:
            await target.close()
    finally:
        await source.close()
    return CopyReport(version, tuple(copied), round(time.monotonic() - started, 3))


def _parse(url: str, scheme: str, wrong_scheme: str) -> DatabaseURL:
    try:
        parsed = DatabaseURL.parse(url)
    except DatabaseURLError as exc:
        raise CopyRefused(f"{wrong_scheme}: {exc}") from exc
    if parsed.scheme != scheme:
        raise CopyRefused(wrong_scheme)
    return parsed


async def _prepare(source: Database, target: Database) -> tuple[int, list[_Table]]:
    """Every check that can refuse, with nothing written before the migrations; then the target migrated."""
    version = await current_version(source)
    if version != LATEST_VERSION:
        if version < LATEST_VERSION:
            raise CopyRefused(
                f"the source database is at schema version {version}, this build's latest is {LATEST_VERSION}: "
                "run `python -m gateway migrate` on the source (DATABASE_URL) first, then copy"
            )
        raise CopyRefused(
            f"the source database is at schema version {version}, newer than this build knows ({LATEST_VERSION}): "
            "copy it with the build that wrote it"
        )
    tables = await _source_tables(source)
    before = await _target_tables(target)
    if foreign := sorted(before.keys() - {table.name for table in tables}):
        raise CopyRefused(f"the target has tables the gateway does not ({', '.join(foreign)}): use an empty database")
    if filled := await _filled(target, before):
        raise CopyRefused(f"the target already holds data (tables {', '.join(filled)}): copy only into an empty one")
    await apply_migrations(target)
    if (target_version := await current_version(target)) != LATEST_VERSION:
        raise CopyRefused(f"the target is at schema version {target_version} after migrating, not {LATEST_VERSION}")
    _same_tables(tables, await _target_tables(target))
    return version, _parents_first(tables)


async def _source_tables(source: Database) -> list[_Table]:
    names = await source.fetch_all(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        " AND name <> ? ORDER BY name",
        (_MIGRATIONS_TABLE,),
    )
    # A full-text index (a virtual table and its shadow tables) is SQLite's own: PostgreSQL indexes the same
    # column with an index of its own, built as the rows arrive.
    virtual = [str(row["name"]) for row in names if str(row["sql"] or "").upper().startswith("CREATE VIRTUAL TABLE")]
    tables = []
    for row in names:
        name = str(row["name"])
        if any(name == v or name.startswith(v + "_") for v in virtual):
            continue
        columns = await source.fetch_all("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", (name,))
        key = tuple(str(c["name"]) for c in sorted((c for c in columns if c["pk"]), key=lambda c: int(c["pk"])))
        if not key:
            raise CopyRefused(f"table {name} has no primary key: it cannot be copied in keyset pages")
        parents = await source.fetch_all('SELECT DISTINCT "table" AS parent FROM pragma_foreign_key_list(?)', (name,))
        tables.append(
            _Table(
                name,
                tuple(str(c["name"]) for c in columns),
                key,
                frozenset(str(p["parent"]) for p in parents) - {name},
            )
        )
    return tables


async def _target_tables(target: Database) -> dict[str, frozenset[str]]:
    """The target's tables (in its current schema, the URL's search_path) and their columns."""
    rows = await target.fetch_all(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.table_name <> ?"
        # A generated column is PostgreSQL's own (a search vector): computed from the copied ones, never copied.
        " AND c.is_generated = 'NEVER'",
        (_MIGRATIONS_TABLE,),
    )
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(str(row["table_name"]), set()).add(str(row["column_name"]))
    return {name: frozenset(names) for name, names in columns.items()}


def _same_tables(tables: Sequence[_Table], target: Mapping[str, frozenset[str]]) -> None:
    source = {table.name: frozenset(table.columns) for table in tables}
    if source.keys() != target.keys():
        only_source = ", ".join(sorted(source.keys() - target.keys())) or "none"
        only_target = ", ".join(sorted(target.keys() - source.keys())) or "none"
        raise CopyRefused(
            "the two schemas do not have the same tables"
            f" (only in the source: {only_source}; only in the target: {only_target})"
        )
    for name, columns in source.items():
        if columns != target[name]:
            differ = sorted(columns ^ target[name])
            raise CopyRefused(f"table {name} has different columns in the two schemas: {', '.join(differ)}")


def _parents_first(tables: Sequence[_Table]) -> list[_Table]:
    """The tables in an order where every table comes after those its foreign keys reference."""
    by_name = {table.name: table for table in tables}
    ordered: list[_Table] = []
    placed: set[str] = set()
    while len(ordered) < len(tables):
        ready = [t for t in tables if t.name not in placed and t.parents & by_name.keys() <= placed]
        if not ready:
            cycle = sorted(t.name for t in tables if t.name not in placed)
            raise CopyRefused(f"the foreign keys of tables {', '.join(cycle)} form a cycle: no insert order exists")
        for table in ready:
            ordered.append(table)
            placed.add(table.name)
    return ordered


async def _filled(db: Database | Transaction, tables: Iterable[str]) -> list[str]:
    filled = []
    for name in sorted(tables):
        row = await db.fetch_one(f"SELECT EXISTS (SELECT 1 FROM {_quoted(name)}) AS filled")
        if row is not None and row["filled"]:
            filled.append(name)
    return filled


async def _copy_all(
    snapshot: Transaction, tx: PostgresTransaction, tables: Sequence[_Table], batch_rows: int
) -> list[TableCopy]:
    await tx.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
    # Nobody else writes the target's tables until this transaction ends; checked empty under that lock.
    await tx.execute(f"LOCK TABLE {', '.join(_quoted(t.name) for t in tables)} IN EXCLUSIVE MODE")
    if filled := await _filled(tx, (t.name for t in tables)):
        raise CopyRefused(f"the target already holds data (tables {', '.join(filled)}): copy only into an empty one")
    copied = []
    for table in tables:
        try:
            done = await _copy_table(snapshot, tx, table, min(batch_rows, _LARGE_ROWS.get(table.name, batch_rows)))
            # The pages must have met every row: a key they cannot order past (a NULL in it) would end them early.
            counted = await snapshot.fetch_one(f"SELECT COUNT(*) AS n FROM {_quoted(table.name)}")
            if counted is None or counted["n"] != done.rows:
                raise ValueError(f"{done.rows} rows read in pages, but the table holds {counted and counted['n']}")
            # Fresh planner statistics, committed with the rows: the gateway's first queries are planned well.
            await tx.execute(f"ANALYZE {_quoted(table.name)}")
        except Exception as exc:  # any failure: said with the table's name; the transaction is rolled back
            reason = next(iter(str(exc).strip().splitlines()), "")
            raise CopyRefused(
                f"copying table {table.name} failed, nothing was written: {type(exc).__name__}: {reason}"
            ) from exc
        copied.append(done)
    return copied


async def _copy_table(snapshot: Transaction, tx: PostgresTransaction, table: _Table, batch_rows: int) -> TableCopy:
    columns = ", ".join(_quoted(c) for c in table.columns)
    key = ", ".join(_quoted(c) for c in table.key)
    after = f"({key}) > ({', '.join('?' * len(table.key))})"  # row values: keyset on a composite key too
    first_page = f"SELECT {columns} FROM {_quoted(table.name)} ORDER BY {key} LIMIT ?"
    next_page = f"SELECT {columns} FROM {_quoted(table.name)} WHERE {after} ORDER BY {key} LIMIT ?"
    key_at = [table.columns.index(c) for c in table.key]
    copied = nuls = 0
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            page = await snapshot.fetch_all(first_page, (batch_rows,))
        else:
            page = await snapshot.fetch_all(next_page, (*last, batch_rows))
        if not page:
            break
        values, replaced = _cleaned(page)
        nuls += replaced
        if await tx.copy_rows(table.name, table.columns, values) != len(values):
            raise ValueError("not every row of a page was written")
        copied += len(values)
        last = tuple(values[-1][i] for i in key_at)
        if len(values) < batch_rows:
            break
    return TableCopy(table.name, copied, nuls)


def _cleaned(page: Sequence[Row]) -> tuple[list[tuple[Any, ...]], int]:
    """The page's rows as tuples, each NUL in text replaced by U+FFFD (what the PostgreSQL backend stores for it,
    core/storage/postgres_db.py `_bound`), and how many values held one. One pass over every value: on a large
    copy this loop is a good part of the time."""
    rows = []
    replaced = 0
    for row in page:
        values = tuple(row)
        nul = False
        for value in values:
            if isinstance(value, str):
                nul = nul or "\x00" in value
            elif isinstance(value, bytes):
                # No column of the schema holds bytes; COPY would store their hex text instead, another value.
                raise ValueError("a BLOB value, which no column of the schema expects")
        if nul:
            replaced += sum(1 for v in values if isinstance(v, str) and "\x00" in v)
            values = tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in values)
        rows.append(values)
    return rows, replaced


def _quoted(identifier: str) -> str:
    """An identifier read from the source's own catalogue, quoted for SQL."""
    return '"' + identifier.replace('"', '""') + '"'
