"""Syncing the SQLite WAL to the disk, on a thread of its own, for commits made on the event loop's thread.

A durable write transaction made on the event loop's thread (SqliteDatabase.run) commits without waiting for the
disk (synchronous=NORMAL: its frames are written to the WAL file, not synced) and then waits here. One fdatasync
of the WAL file, begun after its COMMIT, makes its frames and every frame before them survive a power cut, as
synchronous=FULL would have made them at COMMIT; WAL recovery keeps a prefix of the log, so no later commit can
survive without an earlier one. Commits made while a sync is under way share the next one.

The event loop pays for its transaction's SQL (tens of microseconds) and one wake-up; the writer thread's hop
cost ten times the SQL, and each of its statements took the GIL back from a busy loop.

A failed sync is not retried: after an fdatasync error Linux may report the next one clean although the pages
were dropped. The waiting callers get StorageUnavailable, and `failed` tells SqliteDatabase to refuse every write
until the gateway restarts (their commits are visible and may not be on the disk).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from pathlib import Path

import structlog

from core.errors import StorageUnavailable

log = structlog.get_logger("core.storage.wal_sync")

_sync = getattr(os, "fdatasync", os.fsync)  # SQLite's own choice on Linux; macOS has only fsync


class WalSync:
    """Created and used on the event loop's thread; `start` before the first commit, `close` after the last."""

    def __init__(self, wal: Path) -> None:
        self._wal = wal  # SQLite's own name for it (SqliteDatabase.open: symbolic links resolved)
        self._fd = -1
        self._thread = threading.Thread(target=self._serve, name="sqlite-wal-sync", daemon=True)
        self._cond = threading.Condition()
        # Shared with the thread, under _cond:
        self._wanted = 0  # sync every commit up to this one (0: no sync asked for)
        self._closed = False
        # The event loop's own:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committed = 0  # commits counted so far: each is numbered in the order it was made
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._idle = asyncio.Event()  # no sync asked for and not answered
        self._idle.set()
        self.failed: OSError | None = None
        self._closing = False

    def start(self) -> None:
        """Open the WAL file (it exists once a connection has read the database) and sync its directory once, as
        SQLite does for a WAL it creates: a problem with either fails the start, not the first write."""
        self._loop = asyncio.get_running_loop()
        self._fd = os.open(self._wal, os.O_RDONLY)
        try:
            directory = os.open(self._wal.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException:
            os.close(self._fd)
            raise
        self._thread.start()

    def committed(self) -> asyncio.Future[None]:
        """A future set once the commit the event loop's thread has just made is on the disk (or failed with
        StorageUnavailable)."""
        assert self._loop is not None, "WalSync.start() was not called"
        if self._closing:
            raise StorageUnavailable("sqlite: the database is closed")
        self._committed += 1
        done = self._loop.create_future()
        self._waiters.append((self._committed, done))
        if self._idle.is_set():
            self._ask(self._committed)
        return done

    async def close(self) -> None:
        """Answer every waiting commit, then end the thread."""
        self._closing = True
        await self._idle.wait()
        with self._cond:
            self._closed = True
            self._cond.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _ask(self, upto: int) -> None:
        self._idle.clear()
        with self._cond:
            self._wanted = upto
            self._cond.notify()

    def _synced(self, upto: int, error: OSError | None) -> None:
        """On the event loop's thread: a sync asked for up to commit `upto` has ended."""
        if error is not None and self.failed is None:
            self.failed = error
            log.critical("sqlite_wal_sync_failed", error=f"{type(error).__name__}: {error}")
        while self._waiters and self._waiters[0][0] <= upto:
            _, done = self._waiters.popleft()
            if done.done():
                continue  # its caller was cancelled: the commit stands all the same
            if self.failed is not None:
                done.set_exception(StorageUnavailable(f"sqlite: the WAL could not be synced: {self.failed}"))
            else:
                done.set_result(None)
        if self._waiters:
            self._ask(self._committed)
        else:
            self._idle.set()

    def _serve(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._wanted or self._closed):
                        self._cond.wait()
                    upto, self._wanted = self._wanted, 0
                if not upto:
                    return  # closed, and nothing left to sync
                error: OSError | None = None
                try:
                    if self.failed is not None:
                        raise self.failed
                    _sync(self._fd)
                except OSError as exc:
                    error = exc
                except BaseException as exc:  # not the disk's answer, but nobody may wait for ever either
                    error = OSError(f"{type(exc).__name__}: {exc}")
                try:
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._synced, upto, error)
                except RuntimeError:
                    return  # the loop is closed: nobody is waiting any more
        finally:
            os.close(self._fd)
