"""Opening the database DATABASE_URL names: the one place that knows which backends exist."""

from __future__ import annotations

from pathlib import Path

from core.storage.db import Database, DatabaseURL
from core.storage.sqlite_db import SqliteDatabase


async def connect_database(
    url: str, *, base_dir: Path | None = None, pool_size: int = 10, idle: bool = False
) -> Database:
    """The database of `url`, opened (not migrated). `pool_size`: PostgreSQL connections at most, per handle;
    `idle`: none opened before the first use (a second handle for occasional reports)."""
    parsed = DatabaseURL.parse(url, base_dir=base_dir)
    if parsed.scheme == "postgresql":
        # Imported here: psycopg and its pool are 9 MB of memory that a gateway on SQLite never needs.
        from core.storage.postgres_db import PostgresDatabase

        return await PostgresDatabase.open(parsed.url, pool_size=pool_size, idle=idle)
    assert parsed.path is not None
    return await SqliteDatabase.open(parsed.path)
