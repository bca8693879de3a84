"""The time range and buckets of the dashboard reports, from their query parameters.

Every bad value is a 400 with the contract's envelope naming the parameter; nothing falls back silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from api.errors import bad_request
from api.query import AccountQuery, Count, Instant
from core.clock import month_bounds

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BUCKETS_MS = {"hour": HOUR_MS, "day": DAY_MS}
# A year of hours (8,760) fits; more points than this is no chart anyone reads, and a response to refuse.
MAX_BUCKETS = 9000
# Grouped series: the `top` groups by model calls, the rest folded into one "other" series, so a response holds
# at most (top + 1) x buckets cells whatever the account's number of bots or models (300 bots over a year of hours
# were 2.6M cells, 63 MB of JSON). MAX_TOP is derived so that bound holds for any bucket count allowed.
MAX_CELLS = 200_000
DEFAULT_TOP = 10
MAX_TOP = min(20, MAX_CELLS // MAX_BUCKETS - 1)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start, end) in epoch milliseconds."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Buckets:
    """`count` buckets of `size_ms`, the first starting at `origin` (a UTC hour or day boundary)."""

    name: str  # hour | day
    size_ms: int
    origin: int
    count: int

    def starts(self) -> list[int]:
        return [self.origin + i * self.size_ms for i in range(self.count)]


class RangeQuery(AccountQuery):
    """`from` and `to`; without them the current UTC month up to now. `from` alone runs to now; `to` alone starts
    at the beginning of its month (a `to` on a month boundary: the month before it)."""

    from_: Annotated[int, Instant()] | None = Field(
        default=None,
        alias="from",
        description="start (inclusive): epoch milliseconds or ISO-8601 (no offset means UTC); 400 if unreadable",
    )
    to: Annotated[int, Instant()] | None = Field(
        default=None, description="end (exclusive), same forms; default now. `from` must be earlier than `to`"
    )

    def span(self, now_ms: int) -> TimeRange:
        end = self.to if self.to is not None else now_ms
        start = self.from_ if self.from_ is not None else month_bounds(max(end - 1, 0))[0]
        if start >= end:
            raise bad_request("'from' must be earlier than 'to'", field="from")
        return TimeRange(start, end)

    def optional_span(self, now_ms: int) -> TimeRange | None:
        """Like span when `from` or `to` is given; None (no time bounds) when neither is."""
        return None if self.from_ is None and self.to is None else self.span(now_ms)


class UsageQuery(RangeQuery):
    bucket: Literal["hour", "day"] = Field(
        default="day",
        description=f"bucket size; buckets start on UTC hours or days; at most {MAX_BUCKETS} buckets per request "
        "(400 beyond)",
    )
    group_by: Literal["model", "bot", "platform"] | None = Field(
        default=None,
        description="one series per model, bot or platform (relay, messenger, instagram, whatsapp), for the `top` "
        "groups by model calls, plus one `other` series summing the rest; without it one series",
    )
    top: Annotated[int, Count(1, MAX_TOP)] = Field(
        default=DEFAULT_TOP,
        description=f"with group_by: how many groups get a series of their own (1 to {MAX_TOP}; 400 beyond); the "
        f"others are summed into one series with `other` true. Bounds a response to (top + 1) x buckets cells "
        f"(at most {MAX_CELLS:,}).",
    )

    def buckets(self, span: TimeRange) -> Buckets:
        size = BUCKETS_MS[self.bucket]
        origin = span.start - span.start % size  # epoch-aligned, so buckets start on UTC hours and days
        count = -(-(span.end - origin) // size)
        if count > MAX_BUCKETS:
            raise bad_request(
                f"that range holds {count} {self.bucket} buckets; at most {MAX_BUCKETS} are allowed: narrow it or "
                "use day",
                field="bucket",
                max_buckets=MAX_BUCKETS,
            )
        return Buckets(self.bucket, size, origin, count)
