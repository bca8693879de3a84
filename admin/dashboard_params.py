"""Query parameters of the dashboard routes: the time range, the bucket size, the grouping and the account scope.

Every bad value is a 400 with the contract's envelope naming the parameter; nothing falls back silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from admin.auth import check_account, principal
from core.clock import month_bounds
from gateway.errors import bad_request
from gateway.keys import CLOCK, SERVICES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BUCKETS_MS = {"hour": HOUR_MS, "day": DAY_MS}
GROUPS = ("model", "bot", "platform")
# A year of hours (8,760) fits; more points than this is no chart anyone reads, and a response to refuse.
MAX_BUCKETS = 9000
# Grouped series: the `top` groups by model calls, the rest folded into one "other" series, so a response holds
# at most (top + 1) x buckets cells whatever the account's number of bots or models (300 bots over a year of hours
# were 2.6M cells, 63 MB of JSON). MAX_TOP is derived so that bound holds for any bucket count allowed.
MAX_CELLS = 200_000
DEFAULT_TOP = 10
MAX_TOP = min(20, MAX_CELLS // MAX_BUCKETS - 1)
# Up to the last millisecond of year 9999: what datetime can render back as ISO-8601.
_MAX_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def parse_instant(raw: str, name: str) -> int:
    """Epoch milliseconds, or ISO-8601 (`2026-03-01`, `2026-03-01T12:00:00Z`; no offset means UTC)."""
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= 16:
        value = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise bad_request(
                f"'{name}' must be epoch milliseconds or an ISO-8601 time such as 2026-03-01T00:00:00Z", field=name
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # Exact integer arithmetic: float timestamps would be off by a millisecond now and then.
        value = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= value <= _MAX_MS:
        raise bad_request(f"'{name}' is out of range (1970 to 9999)", field=name)
    return value


def parse_range(request: web.Request) -> TimeRange:
    """`from` and `to`; without them the current UTC month up to now. `from` alone runs to now; `to` alone starts
    at the beginning of its month (a `to` on a month boundary: the month before it)."""
    query = request.query
    raw_from, raw_to = query.get("from"), query.get("to")
    end = parse_instant(raw_to, "to") if raw_to is not None else request.config_dict[CLOCK].now_ms()
    start = parse_instant(raw_from, "from") if raw_from is not None else month_bounds(max(end - 1, 0))[0]
    if start >= end:
        raise bad_request("'from' must be earlier than 'to'", field="from")
    return TimeRange(start, end)


def parse_optional_range(request: web.Request) -> TimeRange | None:
    """Like parse_range when `from` or `to` is given; None (no time bounds) when neither is."""
    if "from" not in request.query and "to" not in request.query:
        return None
    return parse_range(request)


def parse_buckets(request: web.Request, span: TimeRange) -> Buckets:
    name = request.query.get("bucket", "day")
    size = BUCKETS_MS.get(name)
    if size is None:
        raise bad_request("'bucket' must be one of: hour, day", field="bucket")
    origin = span.start - span.start % size  # epoch-aligned, so buckets start on UTC hours and days
    count = -(-(span.end - origin) // size)
    if count > MAX_BUCKETS:
        raise bad_request(
            f"that range holds {count} {name} buckets; at most {MAX_BUCKETS} are allowed: narrow it or use day",
            field="bucket",
            max_buckets=MAX_BUCKETS,
        )
    return Buckets(name, size, origin, count)


def parse_group_by(request: web.Request) -> str | None:
    value = request.query.get("group_by")
    if value is None:
        return None
    if value not in GROUPS:
        raise bad_request("'group_by' must be one of: model, bot, platform", field="group_by")
    return value


def parse_top(request: web.Request) -> int:
    """How many groups get a series of their own (the rest are summed into "other"): 1..MAX_TOP."""
    raw = request.query.get("top")
    if raw is None:
        return DEFAULT_TOP
    # Length first: int() of thousands of digits is slow, and refused past 4,300.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_TOP:
        raise bad_request(f"'top' must be a whole number from 1 to {MAX_TOP}", field="top")
    return int(raw)


async def report_account(request: web.Request) -> str | None:
    """The account a report covers: an owner's or viewer's own; for an admin the `account_id` asked for, or
    None (every account). Another account's id is a 404 for owners and viewers, like an id that does not exist."""
    who = principal(request)
    asked = request.query.get("account_id")
    if asked is not None:
        check_account(who, asked)
        if who.is_admin:
            await request.config_dict[SERVICES].accounts.get(asked)  # an unknown id is a 404, not an empty report
        return asked
    return who.account_id  # None for an admin: totals across accounts


async def required_account(request: web.Request) -> str:
    """Like report_account, but an admin must name the account (a per-account figure has no total)."""
    account_id = await report_account(request)
    if account_id is None:
        raise bad_request("'account_id' is required for an admin token", field="account_id")
    return account_id
