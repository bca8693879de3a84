"""Dashboard benchmark: the usage time series over a year of data, next to a bare COUNT/SUM of the same rows.

    python -m bench.dashboard                   # 1M usage rows for the measured account, 500k for two others
    python -m bench.dashboard --rows 200000     # quicker

Builds the real app (`create_app`, a temp SQLite file) on a random 127.0.0.1 port and provisions through the admin
HTTP API: a plan, the measured account with --bots bots, and two other accounts. Then fills usage_records straight
into the file (one sqlite3 connection, batched inserts) with a year of calls ending now: time ordered, the accounts
interleaved as production traffic would leave them, several models and platforms, 2% failures, 1% unpriced.

Measured, each --repeat times (median and worst), through HTTP with an owner token:
  - the baseline: `SELECT COUNT(*), SUM(total_tokens)` over the same rows (account and year), run on the app's own
    reader connection, so it is the floor any per-row report pays on this machine;
  - GET /api/dashboard/usage for bucket=day|hour x group_by none|model|bot|platform over the year;
  - GET /api/dashboard/metrics over the year, and GET /api/dashboard/bots (lifetime totals);
  - a one-row read on the app's main connection while an hourly report runs (what a relay call's API key lookup
    would wait).
Every series is checked to add up to the baseline's count (exit status 1 if not). The query plan of the series
query is printed too: an index range on usage_account_time and a temp B-tree for the GROUP BY.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from admin.tokens import mint_token
from bench.common import admin_post, roll_up_anew
from core.storage.sqlite_db import SqliteDatabase
from gateway.app import create_app
from gateway.keys import STORAGE
from gateway.logging import configure_logging
from gateway.settings import Settings

HOST = "127.0.0.1"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
YEAR_MS = 365 * 24 * 3600 * 1000
MODELS = ("gpt-4o-mini", "gpt-4o-mini", "gpt-4.1", "gpt-5-mini", "o4-mini", "ft:custom-unpriced")
PLATFORMS = ("relay", "messenger", "messenger", "instagram", "whatsapp", "whatsapp")
BASELINE = """SELECT COUNT(*) AS n, SUM(total_tokens) AS t FROM usage_records
    WHERE account_id = ? AND created_at >= ? AND created_at < ?"""
SERIES_PLAN = """EXPLAIN QUERY PLAN SELECT (created_at - ?) / ? AS bucket, model AS grp, COUNT(*), SUM(prompt_tokens),
    SUM(cached_tokens), SUM(completion_tokens), SUM(cost_nanousd) FROM usage_records
    WHERE account_id = ? AND created_at >= ? AND created_at < ? GROUP BY bucket, grp"""
_INSERT = (
    "INSERT INTO usage_records (id, account_id, bot_id, contact_id, channel, model, prompt_tokens, cached_tokens,"
    " completion_tokens, reasoning_tokens, total_tokens, cost_nanousd, latency_ms, attempts, outcome, error_code,"
    " created_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, 0, ?, ?, ?, 1, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Owner:
    account_id: str
    bot_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Timing:
    name: str
    runs_ms: tuple[float, ...]
    size: int  # response bytes (0 for the baseline)
    detail: str

    @property
    def median(self) -> float:
        return statistics.median(self.runs_ms)


async def provision(session: aiohttp.ClientSession, base: str, token: str, bots: int) -> tuple[Owner, list[Owner]]:
    plan = await admin_post(
        session,
        base,
        token,
        "/plans",
        {"name": "bench", "monthly_token_limit": 10**12, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"},
    )
    owners = []
    for index, n_bots in enumerate((bots, 2, 2)):
        account = await admin_post(session, base, token, "/accounts", {"name": f"Bench {index}", "plan_id": plan["id"]})
        bot_ids = []
        for n in range(n_bots):
            bot = await admin_post(
                session, base, token, f"/accounts/{account['id']}/bots", {"name": f"bot {n}", "persona": "p"}
            )
            bot_ids.append(bot["id"])
        owners.append(Owner(account["id"], tuple(bot_ids)))
    return owners[0], owners[1:]


def fill(path: Path, measured: Owner, others: Sequence[Owner], rows: int, other_rows: int, end: int) -> int:
    """A year of calls before `end`, in time order; returns how many rows the measured account got."""
    rng = random.Random(7)
    total = rows + other_rows
    start = end - YEAR_MS
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture, not data to keep
        batch: list[tuple[Any, ...]] = []
        mine = 0
        for i in range(total):
            # Spread the measured account's share evenly through the stream, the rest to the others.
            if (i * rows) // total != ((i + 1) * rows) // total:
                owner, mine = measured, mine + 1
            else:
                owner = others[i % len(others)]
            model = rng.choice(MODELS)
            prompt, completion = rng.randrange(40, 3000), rng.randrange(5, 400)
            failed = rng.random() < 0.02
            if failed:
                prompt = completion = 0
            priced = not model.startswith("ft:")
            batch.append(
                (
                    f"use_b{i:09d}",
                    owner.account_id,
                    rng.choice(owner.bot_ids),
                    rng.choice(PLATFORMS),
                    model,
                    prompt,
                    rng.randrange(prompt + 1) // 4,
                    completion,
                    prompt + completion,
                    (prompt * 150 + completion * 600) // 1000 if priced or failed else None,
                    None if failed else rng.randrange(150, 6000),
                    "upstream_error" if failed else "ok",
                    "server_error" if failed else None,
                    start + (i * YEAR_MS) // total,
                )
            )
            if len(batch) >= 50_000:
                conn.executemany(_INSERT, batch)
                conn.commit()
                batch.clear()
        conn.executemany(_INSERT, batch)
        conn.commit()
    return mine


async def timed_get(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], headers: dict[str, str], repeat: int
) -> tuple[list[float], bytes]:
    runs, raw = [], b""
    for _ in range(repeat):
        started = time.perf_counter()
        async with session.get(url, params=params, headers=headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {url} {params} answered {resp.status}: {raw[:300]!r}")
        runs.append((time.perf_counter() - started) * 1000)
    return runs, raw


async def measure(args: argparse.Namespace, app: web.Application, base: str, settings: Settings) -> int:
    assert settings.admin_jwt_secret is not None
    now_s = int(time.time())
    admin = mint_token(settings.admin_jwt_secret, role="admin", sub="bench", account_id=None, ttl=7200, now=now_s)
    db = app[STORAGE].db
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        measured, others = await provision(session, base, admin, args.bots)
        end = int(time.time() * 1000)
        started = time.perf_counter()
        assert isinstance(db, SqliteDatabase)  # filled through sqlite3 directly
        mine = await asyncio.to_thread(fill, db.path, measured, others, args.rows, args.other_rows, end)
        print(f"filled {args.rows + args.other_rows:,} usage rows in {time.perf_counter() - started:.1f} s")
        # The hours that are over are rolled up, as the housekeeping leader does (core/storage/rollups.py): the
        # reports sum those and read only the last hour or so call by call.
        started = time.perf_counter()
        hours = await roll_up_anew(db, app[STORAGE].rollups)
        print(f"{hours:,} hours rolled up in {time.perf_counter() - started:.1f} s")
        owner = mint_token(
            settings.admin_jwt_secret, role="owner", sub="bench", account_id=measured.account_id, ttl=7200, now=now_s
        )
        headers = {"Authorization": f"Bearer {owner}"}
        span = {"from": str(end - YEAR_MS), "to": str(end + 1)}
        params = (measured.account_id, end - YEAR_MS, end + 1)

        async def baseline() -> tuple[list[float], int]:
            runs, count = [], 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                row = await db.fetch_one(BASELINE, params)
                runs.append((time.perf_counter() - t0) * 1000)
                count = int(row["n"]) if row else 0
            return runs, count

        base_runs, count = await baseline()
        if count != mine:
            print(f"baseline counted {count} rows, {mine} were written for the account")
            return 1
        timings, failures = [], 0
        for bucket in ("day", "hour"):
            for group in (None, "model", "bot", "platform"):
                query = {**span, "bucket": bucket, **({"group_by": group} if group else {})}
                runs, raw = await timed_get(session, f"{base}/api/dashboard/usage", query, headers, args.repeat)
                body = json.loads(raw)
                got = sum(sum(s["requests"]) for s in body["series"])
                if got != count:
                    failures += 1
                    print(f"  usage bucket={bucket} group_by={group}: series add up to {got}, expected {count}")
                detail = f"{len(body['buckets'])} buckets x {len(body['series'])} series"
                timings.append(Timing(f"usage {bucket} by {group or '-'}", tuple(runs), len(raw), detail))
        runs, raw = await timed_get(session, f"{base}/api/dashboard/metrics", span, headers, args.repeat)
        timings.append(Timing("metrics (the year)", tuple(runs), len(raw), f"{json.loads(raw)['requests']} requests"))
        runs, raw = await timed_get(session, f"{base}/api/dashboard/bots", {}, headers, args.repeat)
        timings.append(Timing("bots (lifetime)", tuple(runs), len(raw), f"{len(json.loads(raw)['bots'])} bots"))
        more_runs, _ = await baseline()  # again at the end: drift in the machine's load shows here
        base_runs += more_runs
        plan = await db.fetch_all(SERIES_PLAN, (end - YEAR_MS, 3_600_000, *params))
        stall = await read_stall(session, f"{base}/api/dashboard/usage", {**span, "bucket": "hour"}, headers, db)
    report(args, mine, base_runs, timings, [str(r["detail"]) for r in plan])
    print(
        f"a one-row read on the app's main connection, issued while the hourly report runs: {stall:.1f} ms "
        "(reports have connections of their own)"
    )
    return 1 if failures else 0


async def read_stall(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], headers: dict[str, str], db: Any
) -> float:
    """How long a tiny read (an API key lookup, say) takes while a year-long report is being computed."""

    async def report() -> None:
        async with session.get(url, params=params, headers=headers) as resp:
            await resp.read()

    task = asyncio.create_task(report())
    await asyncio.sleep(0.05)  # the report's query is running by now
    started = time.perf_counter()
    await db.fetch_one("SELECT id FROM accounts LIMIT 1")
    waited = (time.perf_counter() - started) * 1000
    await task
    return waited


def report(args: argparse.Namespace, mine: int, base_runs: list[float], timings: list[Timing], plan: list[str]) -> None:
    floor = statistics.median(base_runs)
    print(
        f"\ndashboard benchmark: {mine:,} usage rows of the measured account over 365 days "
        f"(+{args.other_rows:,} of two other accounts, interleaved), SQLite {sqlite3.sqlite_version}, "
        f"{args.repeat} runs each"
    )
    print(f"series query plan: {' | '.join(plan)}")
    header = f"{'':<26} {'median ms':>10} {'worst ms':>9} {'x baseline':>10} {'KiB':>7}  shape"
    print(header)
    print("-" * (len(header) + 24))
    print(f"{'baseline COUNT/SUM':<26} {floor:>10.1f} {max(base_runs):>9.1f} {1.0:>10.2f} {'':>7}  same rows, no HTTP")
    for t in timings:
        print(
            f"{t.name:<26} {t.median:>10.1f} {max(t.runs_ms):>9.1f} {t.median / floor:>10.2f} "
            f"{t.size / 1024:>7.0f}  {t.detail}"
        )


async def bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="nexus-bench-dashboard-") as tmp:
        settings = Settings(
            host=HOST,
            port=0,
            database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
            admin_jwt_secret=secrets.token_urlsafe(48),
            data_dir=PROJECT_DATA,
            log_level="WARNING",
            log_format="console",
            workers=0,
        )
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            return await measure(args, app, f"http://{HOST}:{runner.addresses[0][1]}", settings)
        finally:
            await runner.cleanup()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage rows of the measured account (1000000)")
    parser.add_argument("--other-rows", type=int, default=500_000, help="usage rows of two other accounts (500000)")
    parser.add_argument("--bots", type=int, default=5, help="bots of the measured account (5)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each request (5; the median is reported)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.other_rows < 0 or args.bots < 1 or args.repeat < 1:
        parser.error("--rows, --bots and --repeat must be positive; --other-rows at least 0")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
