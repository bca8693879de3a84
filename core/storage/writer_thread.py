"""The writer connection's own thread: an urgent lane, and whole transactions committed together.

Two things made the webhook acknowledgement wait on the writer (measured with `python -m bench.webhooks` at 1,000
deliveries/s with eight busy workers, when the writer was an aiosqlite connection):
- aiosqlite runs a connection's work in the order it arrives, so the webhook's group commit queued behind the
  workers' transactions (3 ms at the median, 11 ms at p99). Urgent work is taken first here.
- Every transaction paid its own fsync (synchronous=FULL): 650 commits a second, and COMMIT was 45% of the
  thread's time. Whole transactions that are queued together now share one commit: the thread runs each inside
  its own SAVEPOINT (so one that fails is rolled back alone, and its caller gets its error) and answers every
  caller only after the shared COMMIT is durable (a batch made only of transactions that need not be durable
  commits without the sync). This is the inbox's group commit, applied to every writer.

Jobs are either whole transactions (`transaction`) or raw steps of a transaction that spans several hops under
the write lock (`submit`); raw steps run alone, in order within their lane, and a batch never reaches past one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("core.storage.writer_thread")

# Whole transactions committed together at most: bounds how long the first of them waits for the others' SQL.
MAX_BATCH = 64
# How every commit but an unsynced one reaches the disk (the writer connection's setting, sqlite_db.py).
SYNCHRONOUS = "FULL"


@dataclass(frozen=True, slots=True)
class _Job:
    done: asyncio.Future[Any]
    fn: Callable[[sqlite3.Connection], Any]
    whole: bool  # a whole transaction (batched, run in a savepoint) or a raw step of an open transaction
    durable: bool = True  # False: its commit need not reach the disk before it is answered (Database.run)


class WriterThread:
    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str = "sqlite-writer") -> None:
        self._connect = connect
        self._urgent: deque[_Job] = deque()
        self._ordinary: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.commits = 0  # shared commits, and the transactions they carried: for benchmarks
        self.transactions = 0
        self._busy = False  # running a batch or a step (set and cleared by the thread)
        self._last: asyncio.Future[Any] | None = None  # the answer to the job queued last

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> WriterThread:
        """Start the thread and open the connection on it (a connection stays on the thread that made it)."""
        writer = cls(connect)
        writer._thread.start()
        try:
            await writer.submit(lambda _: None)
        except BaseException:
            await writer.close()
            raise
        return writer

    def transaction(
        self, fn: Callable[[sqlite3.Connection], T], *, urgent: bool = False, durable: bool = True
    ) -> asyncio.Future[T]:
        """Queue a whole transaction's work now (before returning); the thread opens and commits the transaction
        around it, possibly shared with others, and sets the future only once the commit is durable (`durable`
        False: once it is committed; a commit carrying only such transactions is not synced to the disk)."""
        job = _Job(asyncio.get_running_loop().create_future(), fn, whole=True, durable=durable)
        return self._queue(job, urgent)

    def submit(self, fn: Callable[[sqlite3.Connection], T], *, urgent: bool = False) -> asyncio.Future[T]:
        """Queue a raw step now: it runs alone, as given (BEGIN, a statement, COMMIT: the caller's business)."""
        return self._queue(_Job(asyncio.get_running_loop().create_future(), fn, whole=False), urgent)

    async def close(self) -> None:
        """Run what is queued, close the connection and end the thread."""
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._ready.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _queue(self, job: _Job, urgent: bool) -> asyncio.Future[Any]:
        with self._ready:
            if self._closed:
                raise ValueError("Connection closed")
            (self._urgent if urgent else self._ordinary).append(job)
            self._ready.notify()
        self._last = job.done
        return job.done

    def _serve(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._fail_all(exc, [])
            return
        jobs: list[_Job] = []
        try:
            while jobs := self._next(open_transaction=conn.in_transaction):
                if jobs[0].whole:
                    self._commit_together(conn, jobs)
                else:
                    value, failed = _run(conn, jobs[0])
                    self._busy = False  # before the caller hears: its next write may find the writer idle
                    _post(jobs[0].done, value, failed=failed)
            self._fail_all(ValueError("Connection closed"), [])  # nothing is left queued; if it were, answered
        except BaseException as exc:  # ROLLBACK itself failed (a disk error, say): the connection is unusable
            log.critical("sqlite_writer_failed", error=f"{type(exc).__name__}: {exc}")
            self._fail_all(exc, jobs)
        finally:
            conn.close()

    @property
    def idle(self) -> bool:
        """Open, nothing queued and nothing running: a hint read without the lock (the file's own lock is what
        decides whether another connection may write now; see SqliteDatabase.run). The lanes are read before
        `_busy`, which the thread sets before it takes a job from them."""
        return not (self._closed or self._urgent or self._ordinary or self._busy)

    async def drained(self) -> None:
        """Wait until the job queued last has been answered, however it ended (the thread is then idle, unless
        something was queued since)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait((last,))

    @property
    def alive(self) -> bool:
        """False once the thread has ended (closed, or the connection failed): writes are refused then."""
        return self._thread.is_alive() and not self._closed

    def _fail_all(self, exc: BaseException, running: list[_Job]) -> None:
        """Refuse new work and answer everything in hand with `exc`: nobody waits forever on a dead writer."""
        with self._ready:
            self._closed = True
            jobs = [*running, *self._urgent, *self._ordinary]
            self._urgent.clear()
            self._ordinary.clear()
        for job in jobs:
            if not job.done.done():
                _post(job.done, exc, failed=True)

    def _next(self, *, open_transaction: bool) -> list[_Job]:
        """The next raw step alone, or the whole transactions at the head of the lanes (urgent first); [] once
        closed and drained. While a raw step has left a transaction open, only raw steps are handed out (the
        rest of that transaction), whatever their lane: a whole transaction never runs inside another."""
        with self._ready:
            while True:
                if open_transaction:
                    for lane in (self._urgent, self._ordinary):
                        step = next((job for job in lane if not job.whole), None)
                        if step is not None:
                            self._busy = True
                            lane.remove(step)
                            return [step]
                elif self._urgent or self._ordinary:
                    break
                if self._closed:
                    return []
                self._ready.wait()
            self._busy = True
            batch: list[_Job] = []
            for lane in (self._urgent, self._ordinary):
                if lane and not lane[0].whole:
                    return batch or [lane.popleft()]
                while lane and lane[0].whole and len(batch) < MAX_BATCH:
                    batch.append(lane.popleft())
                if lane:  # a raw step or a full batch stops the batch here, keeping each lane's order
                    break
            return batch

    def _commit_together(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        alone = len(jobs) == 1
        outcomes: list[tuple[Any, bool]] = []
        # Only when no transaction of the batch needs it: the commit is not synced (in WAL mode a crash keeps the
        # file whole, and the next synced commit syncs this one's pages with its own).
        unsynced = not any(job.durable for job in jobs)
        try:
            if unsynced:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                outcomes.append(_run(conn, job) if alone else _in_savepoint(conn, job))
            if alone and outcomes[0][1]:
                end_transaction(conn, "ROLLBACK")  # its only transaction failed: nothing to commit
            else:
                conn.execute("COMMIT")
        except BaseException as exc:  # BEGIN, a savepoint or COMMIT failed: nothing of the batch is committed
            end_transaction(conn, "ROLLBACK")
            outcomes = [(exc, True)] * len(jobs)
        finally:
            if unsynced and not conn.in_transaction:  # (a ROLLBACK that failed left one open: the error says why)
                conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        self.commits += 1
        self.transactions += len(jobs)
        self._busy = False  # before the callers hear: their next writes may find the writer idle
        for job, (value, failed) in zip(jobs, outcomes, strict=True):
            _post(job.done, value, failed=failed)


def _run(conn: sqlite3.Connection, job: _Job) -> tuple[Any, bool]:
    try:
        return job.fn(conn), False
    except Exception as exc:
        return exc, True


def _in_savepoint(conn: sqlite3.Connection, job: _Job) -> tuple[Any, bool]:
    conn.execute("SAVEPOINT job")
    try:
        value = job.fn(conn)
    except Exception as exc:
        if not conn.in_transaction:  # SQLite gave up the whole transaction (disk full, say): the batch fails
            raise
        conn.execute("ROLLBACK TO job")  # this transaction alone is undone; its caller gets the error
        conn.execute("RELEASE job")
        return exc, True
    conn.execute("RELEASE job")
    return value, False


def end_transaction(conn: sqlite3.Connection, verb: str) -> None:
    """COMMIT or ROLLBACK, if a transaction is open (a failed BEGIN leaves none)."""
    if conn.in_transaction:
        conn.execute(verb)


def _post(done: asyncio.Future[Any], value: Any, *, failed: bool) -> None:
    def settle() -> None:
        if done.cancelled():
            return
        if failed:
            done.set_exception(value)
        else:
            done.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        done.get_loop().call_soon_threadsafe(settle)
