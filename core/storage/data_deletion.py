"""Meta's data deletion requests: the confirmation code Meta shows the user, and what was erased."""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.storage.db import Database


@dataclass(frozen=True, slots=True)
class DeletionRequest:
    confirmation_code: str
    status: str  # completed
    records_erased: int
    requested_at: int
    completed_at: int | None


class DataDeletionStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def completed(self, code: str, records_erased: int) -> None:
        """Record an erasure under its code; a repeated request (same user, same code) adds to the count."""
        now = self._clock.now_ms()
        await self._db.execute(
            "INSERT INTO data_deletion_requests (confirmation_code, status, records_erased, requested_at, completed_at)"
            " VALUES (?, 'completed', ?, ?, ?) ON CONFLICT (confirmation_code) DO UPDATE SET"
            " records_erased = data_deletion_requests.records_erased + excluded.records_erased,"
            " completed_at = excluded.completed_at",
            (code, records_erased, now, now),
        )

    async def get(self, code: str) -> DeletionRequest | None:
        row = await self._db.fetch_one(
            "SELECT confirmation_code, status, records_erased, requested_at, completed_at FROM data_deletion_requests"
            " WHERE confirmation_code = ?",
            (code,),
        )
        if row is None:
            return None
        done = row["completed_at"]
        return DeletionRequest(
            row["confirmation_code"],
            row["status"],
            int(row["records_erased"]),
            int(row["requested_at"]),
            None if done is None else int(done),
        )
