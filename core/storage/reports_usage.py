"""The usage time series: LLM calls per time bucket (and per model, bot or platform), grouped by the database.

The bucket is integer arithmetic on the epoch-millisecond timestamp, `(created_at - origin) / size`, the same on
SQLite and PostgreSQL (BIGINT division truncates, and created_at >= origin keeps it non-negative). Only the
non-empty (bucket, group) cells come back from the database; they are laid on the full list of buckets here.

Cost on SQLite: one range walk of usage_account_time (or usage_time for every account) plus a sort of the range
for the GROUP BY, since SQLite aggregates by sorting; bench/dashboard.py measures it against a bare COUNT/SUM of
the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.storage.db import Database
from core.storage.reports import ReportScope

# What `group_by` names, and the usage_records column it groups on.
GROUP_COLUMNS = {"model": "model", "bot": "bot_id", "platform": "channel"}

_SERIES = """SELECT (created_at - ?) / ? AS bucket, {group} AS grp, COUNT(*) AS requests,
    SUM(prompt_tokens) AS prompt_tokens, SUM(cached_tokens) AS cached_tokens,
    SUM(completion_tokens) AS completion_tokens, COALESCE(SUM(cost_nanousd), 0) AS cost,
    COUNT(*) - COUNT(cost_nanousd) AS unpriced
    FROM usage_records WHERE {where} GROUP BY {group_by}"""


@dataclass(frozen=True, slots=True)
class Series:
    """One group's figures, one entry per bucket (zeros where nothing happened)."""

    key: str | None  # the model, bot id or platform; None for the ungrouped series (or calls with no bot)
    requests: list[int]
    prompt_tokens: list[int]
    cached_tokens: list[int]
    completion_tokens: list[int]
    cost_nanousd: list[int]
    unpriced_requests: list[int]

    @classmethod
    def empty(cls, key: str | None, count: int) -> Series:
        return cls(key, [0] * count, [0] * count, [0] * count, [0] * count, [0] * count, [0] * count)


class UsageSeriesStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def series(
        self, scope: ReportScope, *, origin: int, size_ms: int, count: int, group_by: str | None
    ) -> list[Series]:
        """`count` buckets of `size_ms` from `origin` (<= scope.start), per group; most requests first.

        Without grouping there is always one series, even an all-zero one; grouped, one per group with calls."""
        if origin > scope.start or size_ms <= 0 or scope.end > origin + count * size_ms:
            raise ValueError("the buckets must cover the scope's range")
        where, params = scope.where()
        if group_by is None:
            sql = _SERIES.format(group="NULL", where=where, group_by="bucket")
        else:
            column = GROUP_COLUMNS[group_by]  # KeyError for anything else: never interpolate input
            sql = _SERIES.format(group=column, where=where, group_by="bucket, grp")
        by_key: dict[str | None, Series] = {}
        if group_by is None:
            by_key[None] = Series.empty(None, count)
        # Laid straight into the columns: a year of hours by model is ~44k cells, so no object per cell.
        for row in await self._db.fetch_all(sql, (origin, size_ms, *params)):
            series = by_key.get(row["grp"])
            if series is None:
                series = by_key[row["grp"]] = Series.empty(row["grp"], count)
            i = int(row["bucket"])
            series.requests[i] = int(row["requests"])
            series.prompt_tokens[i] = int(row["prompt_tokens"])
            series.cached_tokens[i] = int(row["cached_tokens"])
            series.completion_tokens[i] = int(row["completion_tokens"])
            series.cost_nanousd[i] = int(row["cost"])
            series.unpriced_requests[i] = int(row["unpriced"])
        return sorted(by_key.values(), key=lambda s: (-sum(s.requests), s.key or ""))

    async def bot_names(self, bot_ids: Iterable[str]) -> dict[str, str]:
        """Names of bots, deleted ones included: their past usage still belongs to them."""
        ids = sorted(set(bot_ids))
        names: dict[str, str] = {}
        # Bounded IN lists: SQLite limits bound parameters per statement.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self._db.fetch_all(
                f"SELECT id, name FROM bots WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            )
            names.update({r["id"]: r["name"] for r in rows})
        return names
