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
        (ms(1969, 12, 31, 23), ms(1969, 12, 1), ms(1970, 1, 1)),  # before the epoch: the hour still floors
        (ms(9999, 12, 31, 23, 59), ms(9999, 12, 1), 253_402_300_800_000),
    ],
)
def test_month_bounds_hold_every_instant_of_the_month(now: int, start: int, end: int) -> None:
    assert month_bounds(now) == (start, end)
    assert month_bounds(now) == (start, end)  # asked again within the hour: the same answer


def test_consecutive_hours_across_a_month_end_get_their_own_months() -> None:
    last_hour = ms(2027, 2, 1) - 1  # 23:59:59.999 on 31 January
    assert month_bounds(last_hour) == (ms(2027, 1, 1), ms(2027, 2, 1))
    assert month_bounds(last_hour + 1) == (ms(2027, 2, 1), ms(2027, 3, 1))


def test_iso_utc_is_rfc3339_to_the_second() -> None:
    assert iso_utc(ms(2026, 12, 7, 19, 30, 5) + 999) == "2026-12-07T19:30:05Z"
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
