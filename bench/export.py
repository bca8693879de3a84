"""Export benchmark: a year of usage records downloaded through the real app, with memory that stays flat.

    python -m bench.export                     # 1,000,000 records over 365 days, 20 accounts
    python -m bench.export --rows 200000       # quicker
    python -m bench.export --tracemalloc       # also the Python heap peak of each phase (slower)

A temp SQLite file (WAL) is filled by a child process (so its memory never counts here), then, in this process:
  1. baseline: iterate every record through the export's own keyset pager (core/storage/reads/usage_export.py), doing
     nothing with them: the least any streaming export has to hold.
  2. csv / ndjson: `GET /api/admin/logs/export` of all accounts through the real app (`create_app`, a TCP socket,
     an admin JWT), the client reading and discarding the body as it arrives, counting lines.
  3. one account: the same for one account's records (the account index path).
For each phase: records/s, MB/s and the peak growth of this process's resident memory over the phase's start
(sampled every 5 ms from /proc/self/statm by a thread). Flat memory means the export's growth stays within a few
MB of the baseline's, whatever --rows is.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from admin.tokens import mint_token
from core.storage.migrations import apply_migrations
from core.storage.reads.usage_export import ExportFilter, ExportReader
from core.storage.sqlite_db import SqliteDatabase
from gateway.app import create_app
from gateway.logging import configure_logging
from gateway.settings import DEFAULT_DATA_DIR, Settings

HOST = "127.0.0.1"
YEAR_MS = 365 * 24 * 3600 * 1000
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MODELS = ("gpt-4o-mini", "gpt-4.1", "gpt-5-mini")
CHANNELS = ("relay", "messenger", "instagram", "whatsapp")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    rows: int
    bytes: int
    seconds: float
    rss_growth_mb: float
    heap_peak_mb: float | None


class RssSampler:
    """Peak resident memory over a phase, relative to its start (current RSS, not the process's high-water mark,
    which an earlier phase may have set)."""

    def __init__(self, every: float = 0.005) -> None:
        self._every = every
        self._stop = threading.Event()
        self._start = 0
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self._start) / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, rss_bytes())


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def populate(path: str, rows: int, accounts: int) -> None:
    """Child process: plans, accounts and `rows` usage records spread evenly over a year (bulk insert)."""
    rng = random.Random(7)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.execute(
                "INSERT INTO plans (id, name, monthly_token_limit, models, default_model, created_at, updated_at)"
                " VALUES ('pln_bench', 'bench', 1000000000, '[\"gpt-4o-mini\"]', 'gpt-4o-mini', 0, 0)"
            )
            conn.executemany(
                "INSERT INTO accounts (id, name, plan_id, created_at, updated_at) VALUES (?, ?, 'pln_bench', 0, 0)",
                [(f"acc_bench{a:04d}", f"Bench {a}") for a in range(accounts)],
            )
        step = YEAR_MS / rows
        batch: list[tuple[object, ...]] = []
        for i in range(rows):
            prompt, completion = rng.randint(50, 3000), rng.randint(5, 800)
            failed = rng.random() < 0.02
            batch.append(
                (
                    f"use_{i:012x}",
                    f"acc_bench{i % accounts:04d}",
                    f"bot_bench{i % accounts:04d}",
                    f"con_{rng.getrandbits(40):010x}",
                    CHANNELS[i % len(CHANNELS)],
                    MODELS[i % len(MODELS)],
                    None if failed else f"{MODELS[i % len(MODELS)]}-2025-01-01",
                    0 if failed else prompt,
                    0 if failed else prompt // 4,
                    0 if failed else completion,
                    0,
                    0 if failed else prompt + completion,
                    0 if failed else (None if i % 97 == 0 else prompt * 150 + completion * 600),
                    None if failed else rng.randint(200, 4000),
                    3 if failed else 1,
                    f"req_{i:016x}",
                    "upstream_error" if failed else "ok",
                    "rate_limit_exceeded" if failed else None,
                    START_MS + int(i * step),
                )
            )
            if len(batch) == 50_000 or i == rows - 1:
                with conn:
                    conn.executemany(
                        "INSERT INTO usage_records (id, account_id, bot_id, contact_id, channel, model, response_model,"
                        " prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, total_tokens,"
                        " cost_nanousd, latency_ms, attempts, request_id, outcome, error_code, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        batch,
                    )
                batch.clear()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def measure(name: str, run: Callable[[], Awaitable[tuple[int, int]]], heap: bool) -> Phase:
    if heap:
        tracemalloc.start()
    with RssSampler() as rss:
        started = time.perf_counter()
        rows, size = await run()
        seconds = time.perf_counter() - started
    heap_peak = None
    if heap:
        heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return Phase(name, rows, size, seconds, rss.growth_mb, heap_peak)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        yield f"http://{HOST}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="nexus-bench-export-") as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite:///{path}"
        db = await SqliteDatabase.open(path)
        await apply_migrations(db)
        await db.close()
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=populate, args=(str(path), args.rows, 20))
        child.start()
        await asyncio.to_thread(child.join)
        if child.exitcode != 0:
            print(f"populating the database failed (exit code {child.exitcode})", file=sys.stderr)
            return 1
        print(f"{args.rows:,} usage records over 365 days written in {time.perf_counter() - started:.1f} s")

        secret = secrets.token_urlsafe(48)
        settings = Settings(
            database_url=url,
            admin_jwt_secret=secret,
            data_dir=DEFAULT_DATA_DIR,
            workers=0,
            log_level="WARNING",
            log_format="console",
        )
        token = mint_token(secret, role="admin", sub="bench", account_id=None, ttl=3600, now=int(time.time()))
        phases: list[Phase] = []

        db = await SqliteDatabase.open(path)
        try:

            async def iterate() -> tuple[int, int]:
                count = 0
                async for page in ExportReader(db).pages(ExportFilter()):
                    count += len(page)
                return count, 0

            await iterate()  # warm the page cache, so the first measured phase does not pay for the disk
            phases.append(await measure("baseline: iterate rows", iterate, args.tracemalloc))
        finally:
            await db.close()

        async with serve(settings) as base, aiohttp.ClientSession() as session:

            def download(query: dict[str, str], header_lines: int) -> Callable[[], Awaitable[tuple[int, int]]]:
                async def run() -> tuple[int, int]:
                    lines = size = 0
                    headers = {"Authorization": f"Bearer {token}"}
                    async with session.get(f"{base}/api/admin/logs/export", params=query, headers=headers) as resp:
                        if resp.status != 200:
                            raise RuntimeError(f"export answered {resp.status}: {await resp.text()}")
                        async for chunk in resp.content.iter_chunked(256 * 1024):
                            size += len(chunk)
                            lines += chunk.count(b"\n")  # CSV cells here hold no newlines
                    return lines - header_lines, size

                return run

            phases.append(await measure("csv, all accounts", download({"format": "csv"}, 1), args.tracemalloc))
            phases.append(await measure("ndjson, all accounts", download({"format": "ndjson"}, 0), args.tracemalloc))
            one = {"format": "csv", "account_id": "acc_bench0007"}
            phases.append(await measure("csv, one account of 20", download(one, 1), args.tracemalloc))
    report(phases, args)
    expected = {"csv, one account of 20": len(range(7, args.rows, 20))}
    wrong = [p.name for p in phases if p.rows != expected.get(p.name, args.rows)]
    if wrong:
        print(f"record counts are wrong in: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


def report(phases: Sequence[Phase], args: argparse.Namespace) -> None:
    heap = args.tracemalloc
    print()
    print(f"{'phase':<26}{'records':>11}{'seconds':>9}{'records/s':>11}{'MB/s':>8}{'RSS growth':>12}", end="")
    print(f"{'heap peak':>11}" if heap else "")
    for p in phases:
        rate = p.rows / p.seconds if p.seconds else 0.0
        mb_s = f"{p.bytes / 2**20 / p.seconds:8.1f}" if p.bytes else f"{'-':>8}"
        line = f"{p.name:<26}{p.rows:>11,}{p.seconds:>9.2f}{rate:>11,.0f}{mb_s}{p.rss_growth_mb:>9.1f} MB"
        print(line + (f"{p.heap_peak_mb:>8.1f} MB" if heap and p.heap_peak_mb is not None else ""))
    baseline = phases[0].rss_growth_mb
    worst = max(p.rss_growth_mb for p in phases[1:])
    print(f"\nexport RSS growth at most {worst:.1f} MB against {baseline:.1f} MB for just iterating the rows")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage records to export (1,000,000)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    args = parser.parse_args(argv)
    if args.rows < 20:
        parser.error("--rows must be at least 20")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
