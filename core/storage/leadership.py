"""Leadership: which one of the processes on a database runs the database-wide chores (sweeping reservations,
purging the inbox) and exports the database-wide gauges (inbox depth).

On PostgreSQL the leader is the process that holds a session advisory lock on a connection of its own; when it
dies its connection closes, the lock goes with it, and another process takes it at its next look. SQLite serves
one process: it always leads.
"""

from __future__ import annotations

from typing import Protocol


class Leadership(Protocol):
    @property
    def leading(self) -> bool:
        """What the last `check` found (False before the first)."""
        ...

    async def check(self) -> bool:
        """Take the lead if nobody holds it; True while this process holds it."""
        ...

    async def close(self) -> None: ...


class SoleLeader:
    """One process on the database (SQLite): it always leads."""

    leading = True

    async def check(self) -> bool:
        return True

    async def close(self) -> None:
        return None
