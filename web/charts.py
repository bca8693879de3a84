"""Pictures drawn on the server: a bar chart of a usage series as SVG shapes (no script, no inline style)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from api.dashboard.models import UsageReport

WIDTH, HEIGHT = 600, 160


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str  # the day, for the bar's tooltip and the table beside the chart


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return self.peak == 0


def daily_tokens(report: UsageReport) -> Chart:
    """Tokens (prompt and completion) per bucket of an ungrouped usage report, one bar each."""
    totals = [0] * len(report.buckets)
    for series in report.series:
        for index, (prompt, completion) in enumerate(zip(series.prompt_tokens, series.completion_tokens, strict=True)):
            totals[index] += prompt + completion
    peak = max(totals, default=0)
    slot = WIDTH / max(len(totals), 1)
    bars = []
    for index, (start, value) in enumerate(zip(report.buckets, totals, strict=True)):
        height = 0.0 if peak == 0 else round((HEIGHT - 10) * value / peak, 1)
        day = datetime.fromtimestamp(start / 1000, UTC).strftime("%d %b")
        bars.append(Bar(round(index * slot + slot * 0.1, 1), HEIGHT - height, round(slot * 0.8, 1), height, value, day))
    return Chart(tuple(bars), peak)
