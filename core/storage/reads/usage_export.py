"""Usage records for exports, read page by page with keyset pagination on (created_at, id).

An export may cover a year of records: it is never loaded whole. Each page is one indexed range query that
starts strictly after the last row of the previous page, so every page costs the same however deep into the
export it is (OFFSET would rescan everything before it) and rows inserted meanwhile cannot shift or repeat rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from core.storage.db import Database, Row

# Rows per query: large enough that the per-query overhead vanishes, small enough to keep memory flat.
DEFAULT_PAGE_SIZE = 1000

_COLUMNS = (
    "id, created_at, account_id, bot_id, contact_id, channel, model, response_model, prompt_tokens, cached_tokens,"
    " completion_tokens, reasoning_tokens, total_tokens, cost_nanousd, latency_ms, attempts, outcome, error_code,"
    " request_id, reported_usage"
)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which records: one account or all (None), created in [from_ms, to_ms) where a bound is given."""

    account_id: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: str
    created_at: int
    account_id: str
    bot_id: str | None
    contact_id: str | None
    channel: str
    model: str
    response_model: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_nanousd: int | None  # None: no price was known for the model
    latency_ms: int | None
    attempts: int
    outcome: str
    error_code: str | None
    request_id: str | None
    reported_usage: str | None  # the provider's usage as it reported it (JSON), when it was not charged as reported


def _row(r: Row) -> ExportRow:
    return ExportRow(**r)  # by name: the query's columns are ExportRow's fields


class ExportReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def pages(
        self, where: ExportFilter, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncGenerator[list[ExportRow], None]:
        """Every matching record in (created_at, id) order, one page (a list) at a time.

        The next page is read while the caller renders this one (the database works in its own thread), so a
        page costs the slower of the two rather than their sum; at most two pages are ever held. Use it under
        `contextlib.aclosing`, so a caller that stops early cancels the read in flight at once.
        """
        fetch = asyncio.ensure_future(self._page(where, None, page_size))
        try:
            while True:
                page = await fetch
                if len(page) < page_size:
                    if page:
                        yield page
                    return
                last = page[-1]
                fetch = asyncio.ensure_future(self._page(where, (last.created_at, last.id), page_size))
                yield page
        finally:
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch

    async def _page(self, where: ExportFilter, cursor: tuple[int, str] | None, limit: int) -> list[ExportRow]:
        return [_row(r) for r in await self._db.fetch_all(*_page_query(where, cursor, limit))]


def _page_query(where: ExportFilter, cursor: tuple[int, str] | None, limit: int) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if where.account_id is not None:
        clauses.append("account_id = ?")
        params.append(where.account_id)
    lower = where.from_ms
    if cursor is not None:
        # `created_at >= ts AND (created_at > ts OR id > last_id)`: a plain range on the indexed column (the
        # planner walks the index from there) plus a filter that only bites within the cursor's millisecond.
        lower = cursor[0] if lower is None else max(lower, cursor[0])
    if lower is not None:
        clauses.append("created_at >= ?")
        params.append(lower)
    if cursor is not None:
        clauses.append("(created_at > ? OR id > ?)")
        params.extend(cursor)
    if where.to_ms is not None:
        clauses.append("created_at < ?")
        params.append(where.to_ms)
    condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {_COLUMNS} FROM usage_records {condition} ORDER BY created_at, id LIMIT ?"
    params.append(limit)
    return sql, params
