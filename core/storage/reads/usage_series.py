"""The usage time series: LLM calls per time bucket (and per model, bot or platform), grouped by the database.

The bucket is integer arithmetic on the epoch-millisecond timestamp, `(created_at - origin) / size`, the same on
SQLite and PostgreSQL (BIGINT division truncates, and created_at >= origin keeps it non-negative). Only the
non-empty (bucket, group) cells come back from the database; they are laid on the full list of buckets here.

A model call is a usage row with attempts > 0; a turn refused for quota before any call (attempts = 0) is counted
apart, as a quota refusal. Grouped, only the `top` groups by model calls get a series of their own and the
database sums every other group into one "other" series, so the response holds at most (top + 1) x buckets cells
however many bots or models the account has. It is one statement, so one snapshot: the (bucket, group) cells, the
groups ranked from those cells, then the ranked groups' cells as they are and the other cells summed per bucket
(NULL, calls of no bot, is a group like any other).

Cost on SQLite: one range walk of usage_account_time (or usage_time for every account) plus a sort of the range
for the GROUP BY, since SQLite aggregates by sorting; ranking and folding work on the materialised cells (a year of
hours by model: 44k cells, about 35 ms more than returning them unranked). bench/dashboard.py measures it against
a bare COUNT/SUM of the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.storage import rollups
from core.storage.db import Database
from core.storage.reads.totals import ReportScope
from core.storage.rollups import usage_source

# What `group_by` names, and the usage_records column it groups on.
GROUP_COLUMNS = {"model": "model", "bot": "bot_id", "platform": "channel"}

# Over the hourly rollups and the raw rows around them (core/storage/rollups.py): `u` holds the figures of a call,
# or of a rolled-up group with its hour as created_at (buckets are whole hours or days, so a group falls in one).
_FIGURES = """COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(refusals), 0) AS refusals,
    SUM(turns) AS turns, SUM(prompt_tokens) AS prompt_tokens, SUM(cached_tokens) AS cached_tokens,
    SUM(completion_tokens) AS completion_tokens, COALESCE(SUM(cost), 0) AS cost, SUM(uncosted) AS unpriced"""
_SERIES = f"""SELECT (created_at - ?) / ? AS bucket, NULL AS series_key, 0 AS is_other, NULL AS group_count, {_FIGURES}
    FROM {{source}} GROUP BY bucket"""
# Ranked by model calls, then by rows (a group with refusals only still ranks), NULL placed explicitly (SQLite and
# PostgreSQL sort it differently); the window counts every group, before LIMIT. The ranked groups' cells pass as they
# are; only the others are summed (per bucket), so the usual case, every group ranked, sorts nothing more. GROUP BY
# names output aliases that are no input column's name (PostgreSQL resolves a bare name to an input column first,
# and would not match a repeated expression holding parameters).
_SAME_GROUP = "(r.top_key = c.grp OR (r.top_key IS NULL AND c.grp IS NULL))"
_GROUPED = f"""WITH cells AS (
        SELECT (created_at - ?) / ? AS bucket, {{column}} AS grp, {_FIGURES}
        FROM {{source}} GROUP BY bucket, grp),
    ranked AS (
        SELECT grp AS top_key, SUM(requests) AS total_requests, SUM(turns) AS total_turns,
            COUNT(*) OVER () AS group_count
        FROM cells GROUP BY grp
        ORDER BY total_requests DESC, total_turns DESC, CASE WHEN grp IS NULL THEN 1 ELSE 0 END, grp LIMIT ?)
    SELECT c.bucket AS bucket, c.grp AS series_key, 0 AS is_other, r.group_count AS group_count, c.requests,
        c.refusals, c.prompt_tokens, c.cached_tokens, c.completion_tokens, c.cost, c.unpriced
    FROM cells c JOIN ranked r ON {_SAME_GROUP}
    UNION ALL
    SELECT c.bucket, NULL, 1, NULL, SUM(c.requests), SUM(c.refusals), SUM(c.prompt_tokens), SUM(c.cached_tokens),
        SUM(c.completion_tokens), SUM(c.cost), SUM(c.unpriced)
    FROM cells c WHERE NOT EXISTS (SELECT 1 FROM ranked r WHERE {_SAME_GROUP}) GROUP BY c.bucket"""


@dataclass(frozen=True, slots=True)
class Series:
    """One group's figures, one entry per bucket (zeros where nothing happened)."""

    key: str | None  # the model, bot id or platform; None for the ungrouped series, "other", or calls with no bot
    requests: list[int]  # model calls (attempts > 0), failed ones included
    quota_refusals: list[int]  # turns refused before any call: the account's allowance was used up
    prompt_tokens: list[int]
    cached_tokens: list[int]
    completion_tokens: list[int]
    cost_nanousd: list[int]
    unpriced_requests: list[int]
    other: bool = False  # the sum of every group beyond the top ones

    @classmethod
    def empty(cls, key: str | None, count: int, *, other: bool = False) -> Series:
        zeros = [[0] * count for _ in range(7)]
        return cls(key, zeros[0], zeros[1], zeros[2], zeros[3], zeros[4], zeros[5], zeros[6], other=other)


@dataclass(frozen=True, slots=True)
class SeriesSet:
    series: list[Series]  # most model calls first; the "other" series, if any, last
    groups: int | None  # distinct groups with rows in the range (None without grouping)


class UsageSeriesReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def series(
        self, scope: ReportScope, *, origin: int, size_ms: int, count: int, group_by: str | None, top: int
    ) -> SeriesSet:
        """`count` buckets of `size_ms` from `origin` (<= scope.start), per group.

        Without grouping there is always one series, even an all-zero one; grouped, one per group with rows for the
        `top` groups by model calls, plus one "other" series summing the rest when there are more."""
        if origin > scope.start or size_ms <= 0 or scope.end > origin + count * size_ms:
            raise ValueError("the buckets must cover the scope's range")
        if top < 1:
            raise ValueError("top must be at least 1")
        source, params = usage_source(scope.account_id, scope.start, scope.end, await rollups.through(self._db))
        if group_by is None:
            sql, values = _SERIES.format(source=source), (origin, size_ms, *params)
        else:
            column = GROUP_COLUMNS[group_by]  # KeyError for anything else: never interpolate input
            sql = _GROUPED.format(column=column, source=source)
            values = (origin, size_ms, *params, top)
        by_key: dict[tuple[bool, str | None], Series] = {}
        if group_by is None:
            by_key[False, None] = Series.empty(None, count)
        groups: int | None = None if group_by is None else 0
        # Laid straight into the columns: at most (top + 1) x buckets cells, so no object per cell.
        for row in await self._db.fetch_all(sql, values):
            key = (bool(row["is_other"]), row["series_key"])
            series = by_key.get(key)
            if series is None:
                series = by_key[key] = Series.empty(row["series_key"], count, other=key[0])
            if row["group_count"] is not None:  # on the ranked groups' rows
                groups = int(row["group_count"])
            i = int(row["bucket"])
            series.requests[i] = int(row["requests"])
            series.quota_refusals[i] = int(row["refusals"])
            series.prompt_tokens[i] = int(row["prompt_tokens"])
            series.cached_tokens[i] = int(row["cached_tokens"])
            series.completion_tokens[i] = int(row["completion_tokens"])
            series.cost_nanousd[i] = int(row["cost"])
            series.unpriced_requests[i] = int(row["unpriced"])
        ordered = sorted(
            by_key.values(),
            key=lambda s: (s.other, -sum(s.requests), -sum(s.quota_refusals), s.key is None, s.key or ""),
        )
        return SeriesSet(ordered, groups)

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
