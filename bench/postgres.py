"""A PostgreSQL database of the benchmark's own on the server that `--database` names: created at the start
(`bench_<random>`), a fresh schema per phase (as empty as a new SQLite file), dropped at the end whatever happened.

    async with BenchDatabase("postgresql://postgres@127.0.0.1:5432/postgres") as pg:
        url = await pg.new_schema("e2e1")       # a DATABASE_URL whose search_path is that schema
        await pg.backend_pids()                 # the server processes serving this database now (CPU accounting)

Commits keep the server's own durability settings (synchronous_commit as configured): an acknowledgement on
PostgreSQL is measured as production would pay for it.
"""

from __future__ import annotations

import secrets
from types import TracebackType
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg


def with_database(server_url: str, database: str, schema: str | None = None) -> str:
    """`server_url` pointed at `database`, with `schema` as its search_path when given (libpq's `options`)."""
    parts = urlsplit(server_url)
    query = parts.query
    if schema is not None:
        option = f"options={quote(f'-csearch_path={schema}')}"
        query = f"{query}&{option}" if query else option
    return urlunsplit(parts._replace(path=f"/{database}", query=query))


def check_server(url: str) -> str | None:
    """Why the benchmark cannot use the server at `url` (said at once, before any phase), or None."""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"cannot connect to {url}: {exc}".strip()
    return None


class BenchDatabase:
    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"bench_{secrets.token_hex(4)}"
        self.server_version = ""
        self._created = False

    async def __aenter__(self) -> BenchDatabase:
        async with await psycopg.AsyncConnection.connect(self.server_url, autocommit=True) as admin:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
            self._created = True
            row = await (await admin.execute("SHOW server_version")).fetchone()
            self.server_version = str(row[0]) if row else "?"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._created:
            return
        async with await psycopg.AsyncConnection.connect(self.server_url, autocommit=True) as admin:
            # FORCE: a gateway process killed at the end may leave a connection the server has not reaped yet.
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def url(self, schema: str | None = None) -> str:
        return with_database(self.server_url, self.name, schema)

    async def new_schema(self, schema: str) -> str:
        """A new, empty schema in the bench database; the DATABASE_URL that works in it."""
        async with await psycopg.AsyncConnection.connect(self.url(), autocommit=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        return self.url(schema)

    async def backend_pids(self) -> list[int]:
        """Server processes connected to the bench database now (this query's own excluded)."""
        async with await psycopg.AsyncConnection.connect(self.url(), autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return [int(row[0]) for row in await cursor.fetchall()]

    async def count(self, url: str, sql: str) -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            row = await (await conn.execute(sql)).fetchone()
            return int(row[0]) if row else 0
