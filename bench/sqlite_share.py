"""SQLite's own share of a turn: what no change to the gateway's Python can take away while a turn keeps its writes.

`python -m bench.relay --sqlite-share` measures, beside each run of the gateway on SQLite:
  - the event loop thread's CPU inside sqlite3's calls (each statement, BEGIN and COMMIT: SQLite's C code, the
    WAL's writes). Reading a SELECT's rows beyond its first is not in it (`fetchall`, a few microseconds a turn);
  - the CPU of every other thread of the process: the WAL's sync (the kernel's fdatasync), the writer thread, the
    reader's thread (what turns hand to them).
With the floor's CPU (a bare aiohttp proxy, HTTP in and out), their sum is what a turn costs before any work of
the gateway's own: key, quota, prompt, tokens, pricing, the JSON it reads and writes.

How: while installed, `sqlite3.connect` in this process makes connections of a subclass that times `execute` and
`executemany` when they are called on the thread that installed it (the event loop's). That costs about a
microsecond a call (a Python method around the C one, and two clock reads: 1.6 against 0.8 µs for a bare
`execute`, measured here), so some 0.01-0.02 ms a turn: the gateway's CPU per turn includes it while the flag is
on, and the time counted inside sqlite3 includes part of the clock reads (about 0.2 µs a call).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Share:
    """Seconds over one window: the loop thread's inside sqlite3 calls, and the other threads' CPU."""

    in_sqlite: float
    other_threads: float

    def __sub__(self, earlier: Share) -> Share:
        return Share(self.in_sqlite - earlier.in_sqlite, self.other_threads - earlier.other_threads)


class SqliteShare:
    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._native = threading.get_native_id()
        self._in_sqlite = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        share = self

        def timed(call: Callable[[], sqlite3.Cursor]) -> sqlite3.Cursor:
            if threading.get_ident() != share._thread:
                return call()
            started = time.thread_time()
            try:
                return call()
            finally:
                share._in_sqlite += time.thread_time() - started

        class Timed(sqlite3.Connection):
            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                return timed(lambda: super(Timed, self).execute(sql, parameters))

            def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
                return timed(lambda: super(Timed, self).executemany(sql, parameters))

        original = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            kwargs.setdefault("factory", Timed)
            connection: sqlite3.Connection = original(*args, **kwargs)
            return connection

        with mock.patch.object(sqlite3, "connect", connect):
            yield

    def now(self) -> Share:
        return Share(self._in_sqlite, self._other_threads_cpu())

    def _other_threads_cpu(self) -> float:
        """User + system CPU seconds of this process's threads but the installing one (Linux; 0 elsewhere). A
        thread that ends inside a window takes its share with it (a to_thread worker, say)."""
        total = 0
        with contextlib.suppress(OSError):
            for task in Path("/proc/self/task").iterdir():
                if task.name == str(self._native):
                    continue
                with contextlib.suppress(OSError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    total += int(fields[11]) + int(fields[12])
        return total / _TICKS
