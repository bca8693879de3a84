"""Clocks for the app factory's `clock=` argument, where real time would make a test depend on luck."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class SteppingClock:
    """Real time, but never the same millisecond twice: "newest first" is then never decided by a tie."""

    last: int = 0

    def now_ms(self) -> int:
        self.last = max(int(time.time() * 1000), self.last + 1)
        return self.last
