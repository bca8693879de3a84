"""A bound on the heavy reads one process runs at once (usage exports, conversation searches).

Both run on the reports connection (gateway/services.py), one SQLite connection whose statements queue one after
another: without a bound, a burst of exports or of searches for a word nobody wrote would queue every dashboard
report behind them. A full gate answers at once with 429 `rate_limited` and a Retry-After rather than queueing
the caller: the slots free within seconds, and a client told to come back does not hold a connection meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.errors import rate_limited

# Two at a time per process: one may stream a long export while another still gets through.
DEFAULT_SLOTS = 2


class ReadSlots:
    """Counts the reads in progress; the event loop is single-threaded, so a plain counter is exact."""

    def __init__(self, what: str, *, slots: int = DEFAULT_SLOTS, retry_after_seconds: int = 1) -> None:
        self._what = what  # "exports", "searches": named in the 429's message
        self._slots = slots
        self._retry_after = retry_after_seconds
        self._in_use = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one slot for the body of the `async with`; raises the 429 when every slot is taken."""
        if self._in_use >= self._slots:
            raise rate_limited(
                f"{self._slots} {self._what} are already running on this server; try again in {self._retry_after} s",
                self._retry_after,
            )
        self._in_use += 1
        try:
            yield
        finally:
            self._in_use -= 1
