"""Calendar months in UTC, the quota's periods: their bounds at the edges, and the API's timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.clock import iso_utc, month_bounds


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (ms(2026, 12, 7, 19, 30), ms(2026, 12, 1), ms(2027, 1, 1)),
        (ms(2026, 12, 1), ms(2026, 12, 1), ms(2027, 1, 1)),  # the first millisecond of the month is in it
        (ms(2026, 12, 1) - 1, ms(2026, 11, 1), ms(2026, 12, 1)),  # the last one before is not
        (ms(2028, 2, 29, 23, 59, 59), ms(2028, 2, 1), ms(2028, 3, 1)),
        (ms(1969, 12, 31, 23), ms(1969, 12, 1), ms(1970, 1, 1)),  # before the epoch
        (-1, ms(1969, 12, 1), ms(1970, 1, 1)),  # the hour floors (toward the past), it is not cut toward zero
        (-1_800_000, ms(1969, 12, 1), ms(1970, 1, 1)),
        (ms(9999, 12, 31, 23, 59), ms(9999, 12, 1), 253_402_300_800_000),
    ],
)
def test_month_bounds_hold_every_instant_of_the_month(now: int, start: int, end: int) -> None:
    assert month_bounds(now) == (start, end)


def test_every_instant_of_an_hour_gets_its_months_bounds() -> None:
    """An hour's answer is kept (a turn asks three times): its first and last instants get the same, right one."""
    for hour_start in (ms(2027, 1, 31, 23), ms(2027, 2, 1), ms(2028, 2, 29, 23), ms(1969, 12, 31, 23)):
        expected = _uncached(hour_start)
        assert month_bounds(hour_start) == expected
        assert month_bounds(hour_start + 3_599_999) == expected == _uncached(hour_start + 3_599_999)


def _uncached(now_ms: int) -> tuple[int, int]:
    at = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    end = datetime(at.year + (at.month == 12), at.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def test_consecutive_hours_across_a_month_end_get_their_own_months() -> None:
    last_hour = ms(2027, 2, 1) - 1  # 23:59:59.999 on 31 January
    assert month_bounds(last_hour) == (ms(2027, 1, 1), ms(2027, 2, 1))
    assert month_bounds(last_hour + 1) == (ms(2027, 2, 1), ms(2027, 3, 1))


def test_iso_utc_is_rfc3339_to_the_second() -> None:
    assert iso_utc(ms(2026, 12, 7, 19, 30, 5) + 999) == "2026-12-07T19:30:05Z"
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
