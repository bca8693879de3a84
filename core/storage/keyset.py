"""Newest-first keyset pages over an append-only table ordered by (created_at, id): the activity feed, the audit
trail. A page never skips or repeats a row, however many are appended meanwhile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.storage.db import Database, Row


async def newest_first(
    db: Database,
    table: str,
    columns: str,
    equal: Mapping[str, Any],
    *,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` rows older than the `(created_at, id)` key `after`, where each column of `equal` whose value
    is not None equals it. `table`, `columns` and the keys of `equal` are the caller's constants, never input."""
    where = [f"{column} = ?" for column, value in equal.items() if value is not None]
    params: list[Any] = [value for value in equal.values() if value is not None]
    if after is not None:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [after[0], after[0], after[1]]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {columns} FROM {table}{clause} ORDER BY created_at DESC, id DESC LIMIT ?"
    return await db.fetch_all(sql, (*params, limit))
