"""Per-minute message limits with GCRA (the generic cell rate algorithm).

One timestamp per key, no background timers, exact `Retry-After`. It lives in process memory: with several
instances each enforces the limit on its own share of the traffic, until a shared store backs it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Forget keys idle this long; sweeping when the table grows keeps memory bounded without a timer task.
_SWEEP_THRESHOLD = 10_000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until the next message would be allowed; 0 when allowed


class RateLimiter:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}  # theoretical arrival time per key, in seconds

    def check(self, key: str, per_minute: int, now: float) -> Decision:
        """Count one message for `key`; a burst of `per_minute` is allowed, then one every 60/per_minute s."""
        interval = 60.0 / per_minute
        tolerance = interval * (per_minute - 1)
        tat = max(self._tat.get(key, now), now)
        if tat - now > tolerance:
            return Decision(False, tat - now - tolerance)
        self._tat[key] = tat + interval
        if len(self._tat) > _SWEEP_THRESHOLD:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return Decision(True, 0.0)
