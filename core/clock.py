"""Time as a dependency, so quota periods and expiries can be tested at a month boundary."""

from __future__ import annotations

import functools
import time
from datetime import MAXYEAR, UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


# 10000-01-01T00:00:00Z: the end of December 9999, which datetime cannot represent as a date of its own.
_YEAR_10000_MS = 253_402_300_800_000
_HOUR_MS = 3_600_000


def month_bounds(now_ms: int) -> tuple[int, int]:
    """First instant of the calendar month (UTC) holding `now_ms`, and of the next one, in epoch ms."""
    # Every instant of a UTC hour is in the same month: a turn asks three times, and the answer is the hour's.
    return _month_bounds_of_hour(now_ms // _HOUR_MS)


@functools.lru_cache(maxsize=32)
def _month_bounds_of_hour(hour: int) -> tuple[int, int]:
    now = datetime.fromtimestamp(hour * (_HOUR_MS // 1000), tz=UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12 and start.year == MAXYEAR:
        return int(start.timestamp() * 1000), _YEAR_10000_MS
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@functools.lru_cache(maxsize=256)  # a quota period's bounds come back in every answer of the month
def iso_utc(epoch_ms: int) -> str:
    """RFC 3339 with a Z suffix, second precision: the form every API answer uses."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
