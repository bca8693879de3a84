"""Per-minute message limits shared by every process on the database: GCRA (the generic cell rate algorithm).

One row per key (a conversation) holding its theoretical arrival time (TAT) in microseconds; no timers, an exact
`Retry-After`. A message is allowed when the TAT is at most `tolerance` ahead of now; allowing it moves the TAT one
interval on. The test and the move are one conditional UPDATE, so processes checking the same key at once are
counted one after the other (the row lock), never both against the same TAT: the limit is the plan's, not N times
it. Rows whose TAT has passed carry no state (a new row would be the same) and are swept by the housekeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.storage.db import Database, Transaction

_MICROS_PER_MINUTE = 60_000_000
_LATER = "CASE WHEN tat_us > ? THEN tat_us ELSE ? END"  # max(tat, now), portably
_TAKE = f"""UPDATE rate_limits SET tat_us = {_LATER} + ?
    WHERE key = ? AND {_LATER} - ? <= ? RETURNING tat_us"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until the next message would be allowed; 0 when allowed


class RateLimitStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def check(self, key: str, per_minute: int) -> Decision:
        """`take` in a transaction of its own."""
        return await self._db.run(lambda tx: self.take(tx, key, per_minute))

    async def take(self, tx: Transaction, key: str, per_minute: int) -> Decision:
        """Count one message for `key`, inside the caller's transaction (a turn's reservation: undone with it); a
        burst of `per_minute` is allowed, then one every 60/per_minute s."""
        now = self._clock.now_ms() * 1000
        interval = _MICROS_PER_MINUTE // per_minute
        tolerance = interval * (per_minute - 1)
        # Deferred: it travels with the UPDATE (one round trip on PostgreSQL).
        await tx.defer("INSERT INTO rate_limits (key, tat_us) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, now))
        if await tx.fetch_one(_TAKE, (now, now, interval, key, now, now, now, tolerance)) is not None:
            return Decision(True, 0.0)
        row = await tx.fetch_one("SELECT tat_us FROM rate_limits WHERE key = ?", (key,))
        tat = int(row["tat_us"]) if row is not None else now
        return Decision(False, max(tat - now - tolerance, 0) / 1_000_000)

    async def sweep(self) -> int:
        """Forget keys whose TAT has passed (they are as good as new); returns how many."""
        return await self._db.execute("DELETE FROM rate_limits WHERE tat_us < ?", (self._clock.now_ms() * 1000,))
