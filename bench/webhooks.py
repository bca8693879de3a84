"""Webhook benchmark: signed WhatsApp deliveries acknowledged (durably), ack latency while workers are busy,
and messages answered end to end, each next to a floor measured in the same run.

    python -m bench.webhooks                              # defaults: about a minute on 2 cores
    python -m bench.webhooks --deliveries 10000 --concurrency 64 --rate 1500 --seconds 5
    python -m bench.webhooks --profile                    # plus the ingest run's hotspots under cProfile
    python -m bench.webhooks --profile-ack                # plus the ack run's hotspots (by cumulative and own time)
    python -m bench.webhooks --profile-e2e                # plus the end-to-end run's hotspots (likewise)
    python -m bench.webhooks --database postgresql://postgres@127.0.0.1:5432/postgres   # on PostgreSQL instead:
                                                          # 1 web + 1 and 1 web + 2 worker processes, about 4 minutes

Phases, each on its own temp SQLite file (WAL, synchronous=FULL) and its own random 127.0.0.1 ports:
  1. floor: a bare aiohttp handler that reads the raw body, checks X-Hub-Signature-256 with hmac.compare_digest,
     parses the JSON and inserts one row per message, one commit (one fsync) per request: the naive durable
     handler. Closed loop: --deliveries signed deliveries (one text message each, distinct wamids) by
     --concurrency senders.
  2. gateway ingest: the real app (`create_app`, Settings(workers=0)), a tenant and a WhatsApp channel made
     through the admin API, the same load. Target: at least 0.6 x the floor's deliveries/s. Phases 1 and 2
     alternate for --rounds rounds (fresh databases each time) and are pooled, so drift in the machine's load
     falls on both alike.
  3. ack under load: the app with --workers workers answering through a fake OpenAI with --model-latency and a
     fake Graph, while an open-loop generator offers --rate deliveries/s for --seconds (sends are scheduled at
     fixed intervals whatever the answers do). Target: ack p99 under 10 ms at 1,000/s offered. The workers give
     way to acknowledgements as in production (WORKER_ACK_TARGET_MS); --worker-ack-target-ms 0 measures them
     never giving way.
  4. end to end: zero-latency fakes, --messages deliveries posted, timed until the fake Graph has received that
     many text replies.

The load generator runs in a separate process (spawn), and so do the fake OpenAI and the fake Graph (phases 3 and
4, `bench.fakes_process`): they are not part of the system under test, and in the main process their CPU and their
callbacks would show up as gateway event-loop lag and as server CPU per delivery. The gateway and the floor run in
the main process's event loop, as they would on one core in production. Ack latency is measured by the generator:
request start to response read.

With --database, the phases run on PostgreSQL with the gateway as real processes (one web process, one or more
worker processes) instead: bench/webhooks_postgres.py says what they measure. The machine's 2 cores are shared by
the generator, the fakes, PostgreSQL and every gateway process there, and the report shows where the CPU went.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import pstats
import secrets
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from bench.common import GcPauses, provision_with_channel, serving
from bench.fakes_process import FakesProcess, FakesStats
from bench.floor import FLOOR_SCHEMA, floor_app
from bench.load import PHONE_NUMBER_ID, SHOW_FAILURES, WEBHOOK_PATH, Generator, LoadResult, LoadSpec
from bench.postgres import check_server
from bench.webhooks_postgres import bench_postgres
from core.storage.sqlite_db import SqliteDatabase
from core.tokens import TokenCounter
from gateway.app import create_app, gc_for_serving
from gateway.keys import STORAGE
from gateway.logging import configure_logging
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph

HOST = "127.0.0.1"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
E2E_TIMEOUT = 120.0  # longest wait for the end-to-end replies
ACK_P99_TARGET_MS = 10.0
INGEST_RATIO_TARGET = 0.6


# ---- what each phase measured --------------------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    name: str
    load: LoadResult
    stored: int  # rows (messages) found in the database afterwards, or replies received for end to end
    server_cpu: float  # CPU seconds of this (server) process, all threads, while measured
    throughput: float  # deliveries acknowledged/s, or messages answered/s end to end
    commits: int = 0  # commits while measured: the writer thread's, and one per write made on the loop's thread
    transactions: int = 0  # whole transactions those commits carried (deliveries, and the workers' writes)
    notes: list[str] = field(default_factory=list)

    @property
    def per_commit(self) -> float:
        return self.transactions / self.commits if self.commits else float("nan")


def count_rows(path: Path, sql: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def measure(spec: LoadSpec, within: float) -> tuple[LoadResult, float]:
    """Run one generator; returns its result and this process's CPU seconds over the measured run."""
    async with Generator(spec) as generator:
        cpu = time.process_time()
        generator.go()
        load = await generator.result(within)
        return load, time.process_time() - cpu


# ---- phase 1: the floor --------------------------------------------------------------------------------------


async def floor_phase(args: argparse.Namespace, tmp: Path, secret: str, round_no: int) -> Phase:
    path = tmp / f"floor{round_no}.db"
    db = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        await db.execute_fetchall("PRAGMA journal_mode=WAL")
        await db.execute_fetchall("PRAGMA synchronous=FULL")
        await db.execute(FLOOR_SCHEMA)
        async with serving(floor_app(db.execute, secret.encode())) as (base, _):
            tag, url = f"FLR{round_no}", base + WEBHOOK_PATH
            spec = LoadSpec(url, secret, tag, args.deliveries, args.warmup, args.concurrency, args.customers)
            load, cpu = await measure(spec, within=600)
    finally:
        await db.close()
    stored = count_rows(path, "SELECT COUNT(*) FROM messages") - args.warmup
    return Phase("floor (bare handler)", load, stored, cpu, load.throughput)


# ---- the gateway ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Env:
    """What every gateway phase shares: secrets, the preloaded token counter and the temp directory."""

    tmp: Path
    app_secret: str
    jwt_secret: str
    secrets_key: str
    tokens: TokenCounter


def gateway_settings(
    env: Env, name: str, *, workers: int, ack_target_ms: int, openai_base: str, graph_base: str
) -> Settings:
    return Settings(
        host=HOST,
        port=0,
        database_url=f"sqlite:///{env.tmp / name}",
        openai_api_key="sk-bench",
        openai_base_url=openai_base,
        meta_app_secret=env.app_secret,
        meta_verify_token=secrets.token_urlsafe(16),
        graph_api_base_url=graph_base,
        admin_jwt_secret=env.jwt_secret,
        secrets_key=env.secrets_key,
        data_dir=PROJECT_DATA,
        log_level="WARNING",
        log_format="console",
        workers=workers,
        worker_ack_target_ms=ack_target_ms,
    )


async def gateway_phase(
    args: argparse.Namespace,
    env: Env,
    name: str,
    *,
    db_name: str,
    workers: int,
    openai_base: str,
    graph_base: str,
    spec_for: Callable[[str], LoadSpec],
    during: Callable[[], Any] | None = None,
    profile: cProfile.Profile | None = None,
) -> Phase:
    settings = gateway_settings(
        env,
        db_name,
        workers=workers,
        ack_target_ms=args.worker_ack_target_ms,
        openai_base=openai_base,
        graph_base=graph_base,
    )
    gateway = create_app(settings, tokens=env.tokens)
    gc_for_serving(gateway)  # as `python -m gateway` does: the benchmark measures a serving process
    async with serving(gateway) as (base, app):
        await provision_with_channel(base, env.jwt_secret, PHONE_NUMBER_ID)
        db = app[STORAGE].db
        assert isinstance(db, SqliteDatabase)  # its group commit is measured
        spec = spec_for(base + WEBHOOK_PATH)
        async with Generator(spec) as generator:
            (commits, transactions), cpu = db.commits, time.process_time()
            if profile is not None:
                profile.enable()
            generator.go()
            try:
                with GcPauses() as pauses:
                    if during is not None:
                        await during()
                    load = await generator.result(within=600)
            finally:
                if profile is not None:
                    profile.disable()
            cpu = time.process_time() - cpu
            commits, transactions = db.commits[0] - commits, db.commits[1] - transactions
    stored = count_rows(env.tmp / db_name, "SELECT COUNT(*) FROM inbox") - spec.warmup
    return Phase(name, load, stored, cpu, load.throughput, commits, transactions, notes=[str(pauses)])


def closed_spec(args: argparse.Namespace, env: Env, tag: str, count: int, warmup: int) -> Callable[[str], LoadSpec]:
    return lambda url: LoadSpec(url, env.app_secret, tag, count, warmup, args.concurrency, args.customers)


async def ingest_phase(args: argparse.Namespace, env: Env, round_no: int, profile: cProfile.Profile | None) -> Phase:
    # The fake Graph only answers the ownership check when the channel is connected; idle during the load.
    async with FakeGraph(implicit_grants=True).serve(HOST, 0) as graph_base:
        return await gateway_phase(
            args,
            env,
            "gateway ingest (workers=0)",
            db_name=f"ingest{round_no}.db",
            workers=0,
            openai_base="http://127.0.0.1:9/v1",  # never called: no workers
            graph_base=graph_base,
            spec_for=closed_spec(args, env, f"ING{round_no}", args.deliveries, args.warmup),
            profile=profile,
        )


def pooled(rounds: Sequence[Phase]) -> Phase:
    """Several runs of one phase as one: counts and times added up, latencies pooled."""
    load = LoadResult(
        sent=sum(p.load.sent for p in rounds),
        latencies_ms=[ms for p in rounds for ms in p.load.latencies_ms],
        failures=sum((p.load.failures for p in rounds), Counter()),
        elapsed=sum(p.load.elapsed for p in rounds),
        cpu_seconds=sum(p.load.cpu_seconds for p in rounds),
    )
    return Phase(
        rounds[0].name,
        load,
        stored=sum(p.stored for p in rounds),
        server_cpu=sum(p.server_cpu for p in rounds),
        throughput=load.throughput,
        commits=sum(p.commits for p in rounds),
        transactions=sum(p.transactions for p in rounds),
        notes=[f"round {i}: {note}" for i, p in enumerate(rounds, 1) for note in p.notes],
    )


async def floor_and_ingest(args: argparse.Namespace, env: Env) -> tuple[Phase, Phase]:
    """The floor and the gateway's ingest, alternated for --rounds rounds so that drift in the machine's load
    (other processes, CPU frequency) falls on both alike; the rounds are pooled, and their ratios shown."""
    floors, ingests = [], []
    profile = cProfile.Profile() if args.profile else None
    for round_no in range(1, args.rounds + 1):
        print(f"floor, round {round_no} ...", flush=True)
        floors.append(await floor_phase(args, env.tmp, env.app_secret, round_no))
        print(f"gateway ingest, round {round_no} ...", flush=True)
        ingests.append(await ingest_phase(args, env, round_no, profile))
    if profile is not None:
        print("\ncProfile of the gateway process's event loop thread during the ingest runs (by own time):")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile_lines)
    floor, ingest = pooled(floors), pooled(ingests)
    if args.rounds > 1:
        ratios = ", ".join(f"{i.throughput / f.throughput:.3f}" for f, i in zip(floors, ingests, strict=True))
        rates = ", ".join(f"{f.throughput:.0f}/{i.throughput:.0f}" for f, i in zip(floors, ingests, strict=True))
        ingest.notes.append(f"per round deliveries/s floor/gateway {rates}; ratio {ratios}")
    return floor, ingest


def fakes_note(stats: FakesStats | None, sent: int) -> str:
    if stats is None:
        return "fakes process: no final report (it did not stop cleanly)"
    return (
        f"fakes process (not in srv us/d): {stats.cpu_seconds:.2f} CPU s from start to stop, warm-up included "
        f"(= {stats.cpu_seconds / sent * 1e6 if sent else float('nan'):.0f} us per measured delivery); "
        f"{stats.openai_calls} OpenAI calls, {stats.graph_requests} Graph requests"
    )


async def busy_phase(args: argparse.Namespace, env: Env) -> Phase:
    count = max(1, round(args.rate * args.seconds))
    profile = cProfile.Profile() if args.profile_ack else None
    async with FakesProcess(model_latency=args.model_latency) as fakes:
        answered_before = 0

        async def mark() -> None:
            nonlocal answered_before
            answered_before = fakes.replies

        phase = await gateway_phase(
            args,
            env,
            f"ack @{args.rate:g}/s offered (workers={args.workers})",
            db_name="busy.db",
            workers=args.workers,
            openai_base=fakes.openai_base,
            graph_base=fakes.graph_base,
            spec_for=lambda url: LoadSpec(
                url, env.app_secret, "BSY", count, args.warmup, args.concurrency, args.customers, rate=args.rate
            ),
            during=mark,
            profile=profile,
        )
        answered = fakes.replies - answered_before
    if profile is not None:
        for key, title in (("cumulative", "cumulative time"), ("tottime", "own time")):
            print(f"\ncProfile of the gateway process's event loop thread during the ack run (by {title}):")
            pstats.Stats(profile, stream=sys.stdout).sort_stats(key).print_stats(args.profile_lines)
    load = phase.load
    pending = "SELECT COUNT(*) FROM inbox WHERE state = 'pending'"
    phase.notes.append(
        f"offered {load.offered_rate:.0f}/s of {args.rate:g}/s requested over {load.send_span:.2f} s "
        f"({load.sent} deliveries; a send started up to {load.max_lateness_ms:.1f} ms behind schedule)"
    )
    if load.offered_rate < 0.95 * args.rate:
        phase.notes.append(
            "the generator did not keep up with the requested rate on this machine: "
            "the figures are for the rate it achieved"
        )
    give_way = (
        f"they give way while a commit waits over {args.worker_ack_target_ms} ms"
        if args.worker_ack_target_ms
        else "they never give way"
    )
    phase.notes.append(
        f"workers busy meanwhile: {answered} replies sent during the run ({answered / load.send_span:.0f}/s; model "
        f"latency {args.model_latency * 1000:g} ms, {args.workers} workers: at most "
        f"{args.workers / args.model_latency if args.model_latency else float('inf'):.0f}/s; {give_way}), "
        f"{count_rows(env.tmp / 'busy.db', pending)} still pending at the end"
    )
    phase.notes.append(fakes_note(fakes.stats, load.sent))
    return phase


async def e2e_phase(args: argparse.Namespace, env: Env) -> Phase:
    profile = cProfile.Profile() if args.profile_e2e else None
    async with FakesProcess() as fakes:
        answered_at: float | None = None

        async def wait_for_replies() -> None:
            nonlocal answered_at
            started = time.perf_counter()
            while time.perf_counter() - started < E2E_TIMEOUT:
                if fakes.replies >= args.messages:
                    answered_at = time.perf_counter() - started
                    return
                await asyncio.sleep(0.01)

        phase = await gateway_phase(
            args,
            env,
            f"end to end (workers={args.workers})",
            db_name="e2e.db",
            workers=args.workers,
            openai_base=fakes.openai_base,
            graph_base=fakes.graph_base,
            spec_for=closed_spec(args, env, "E2E", args.messages, 0),
            during=wait_for_replies,
            profile=profile,
        )
    if profile is not None:
        for key, title in (("cumulative", "cumulative time"), ("tottime", "own time")):
            print(f"\ncProfile of the gateway process's event loop thread during the end-to-end run (by {title}):")
            pstats.Stats(profile, stream=sys.stdout).sort_stats(key).print_stats(args.profile_lines)
    stats = fakes.stats
    replies = stats.replies if stats is not None else fakes.replies
    calls = stats.openai_calls if stats is not None else "?"
    phase.stored = replies
    if answered_at is None:
        phase.throughput = float("nan")
        phase.notes.append(f"only {replies} of {args.messages} replies within {E2E_TIMEOUT:g} s")
    else:
        phase.throughput = args.messages / answered_at
        phase.notes.append(
            f"{args.messages} deliveries posted in {phase.load.elapsed:.2f} s, all {replies} replies received "
            f"{answered_at:.2f} s after the first post; {calls} OpenAI calls"
        )
    phase.notes.append(fakes_note(stats, phase.load.sent))
    return phase


# ---- report ----------------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, floor: Phase, phases: Sequence[Phase]) -> int:
    print(
        f"\nwebhooks benchmark: signed WhatsApp deliveries, one text message each, from {args.customers} customers; "
        f"closed loop {args.rounds} x {args.deliveries} deliveries at concurrency {args.concurrency} "
        f"({args.warmup} warm-up excluded each time); open loop {args.rate:g}/s for {args.seconds:g} s; "
        f"end to end {args.messages} messages; load generator in its own process, {os.cpu_count()} CPUs"
    )
    print(
        "fake OpenAI and fake Graph (ack and end-to-end phases): in their own process (spawn), not in the server "
        "process; the floor and the gateway run in the main process"
    )
    columns = (
        ("sent", 6),
        ("acked", 6),
        ("stored", 6),
        ("rate/s", 8),
        ("x floor", 7),
        ("p50 ms", 7),
        ("p99 ms", 7),
        ("max ms", 7),
        ("srv us/d", 8),
        ("gen cpu", 7),
    )
    header = f"{'':<34} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    failed = 0
    for phase in (floor, *phases):
        load = phase.load
        failed += sum(load.failures.values())
        ratio = phase.throughput / floor.throughput if floor.throughput else float("nan")
        per_delivery_us = phase.server_cpu / load.sent * 1e6 if load.sent else float("nan")
        gen_cpu = load.cpu_seconds / load.elapsed if load.elapsed else float("nan")
        print(
            f"{phase.name:<34} {load.sent:>6} {load.acked:>6} {phase.stored:>6} {phase.throughput:>8.1f} "
            f"{ratio:>7.3f} {load.pct(50):>7.2f} {load.pct(99):>7.2f} {max(load.latencies_ms, default=0):>7.2f} "
            f"{per_delivery_us:>8.0f} {gen_cpu:>7.0%}"
        )
    print(
        "rate/s: deliveries acknowledged per second (end to end: messages answered per second); stored: rows in the "
        "database (end to end: replies at the fake Graph); p50/p99/max: ack latency seen by the generator; "
        "srv us/d: CPU of the server process (all threads) per delivery; gen cpu: the generator process's CPU use"
    )
    ingest, busy, e2e = phases
    print()
    for phase in phases:
        print(
            f"{phase.name}: {phase.transactions} write transactions in {phase.commits} commits = "
            f"{phase.per_commit:.1f} per commit"
        )
    for phase in phases:
        for note in phase.notes:
            print(f"{phase.name}: {note}")
    ratio = ingest.throughput / floor.throughput if floor.throughput else float("nan")
    verdict = "met" if ratio >= INGEST_RATIO_TARGET else "MISSED"
    print(f"\ntarget ingest >= {INGEST_RATIO_TARGET:g} x floor: {ratio:.3f} ({verdict})")
    p99 = busy.load.pct(99)
    verdict = "met" if p99 < ACK_P99_TARGET_MS and busy.load.acked == busy.load.sent else "MISSED"
    print(
        f"target ack p99 < {ACK_P99_TARGET_MS:g} ms at {args.rate:g}/s offered with busy workers: "
        f"{p99:.2f} ms, {busy.load.acked}/{busy.load.sent} acknowledged ({verdict})"
    )
    print(f"end to end: {e2e.throughput:.1f} messages answered/s = {e2e.throughput / floor.throughput:.3f} x floor")
    for phase in (floor, *phases):
        for failure, count in phase.load.failures.most_common(SHOW_FAILURES):
            print(f"  {phase.name}: {count} x {failure}")
    return 1 if failed else 0


# ---- entry point -----------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    tokens = TokenCounter(PROJECT_DATA / "tokenizers")
    await asyncio.get_running_loop().run_in_executor(None, tokens.preload)
    with tempfile.TemporaryDirectory(prefix="nexus-bench-webhooks-") as tmp:
        env = Env(
            tmp=Path(tmp),
            app_secret=secrets.token_hex(16),
            jwt_secret=secrets.token_urlsafe(48),
            secrets_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            tokens=tokens,
        )
        floor, ingest = await floor_and_ingest(args, env)
        print("ack latency under an offered rate ...", flush=True)
        busy = await busy_phase(args, env)
        print("end to end ...", flush=True)
        e2e = await e2e_phase(args, env)
    return report(args, floor, [ingest, busy, e2e])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n\n")[0])

    def positive(kind: type, high: float) -> Callable[[str], Any]:
        def convert(raw: str) -> Any:
            value = kind(raw)
            if not 0 < value <= high:
                raise argparse.ArgumentTypeError(f"must be above 0 and at most {high:g}, got {raw}")
            return value

        return convert

    def latency(raw: str) -> float:
        value = float(raw)
        if not 0 <= value <= 2:
            raise argparse.ArgumentTypeError(f"must be between 0 and 2 seconds, got {raw}")
        return value

    add = parser.add_argument
    add("--deliveries", type=positive(int, 200_000), default=10_000, help="closed-loop deliveries per round (10000)")
    add("--concurrency", type=positive(int, 1000), default=32, help="closed-loop senders (32)")
    add("--rate", type=positive(float, 20_000), default=1000.0, help="open-loop deliveries/s offered (1000)")
    add("--seconds", type=positive(float, 60), default=5.0, help="open-loop duration in seconds (5)")
    add("--rounds", type=positive(int, 20), default=2, help="floor/ingest rounds, alternated and pooled (2)")
    add("--workers", type=positive(int, 256), default=32, help="inbox workers when answering (32, as WORKERS)")
    add(
        "--worker-ack-target-ms",
        type=int,
        default=Settings().worker_ack_target_ms,
        help=f"WORKER_ACK_TARGET_MS: workers give way above it, 0 never ({Settings().worker_ack_target_ms})",
    )
    add("--model-latency", type=latency, default=0.05, help="fake OpenAI latency while acks are timed (0.05 s)")
    add("--messages", type=positive(int, 100_000), default=2000, help="end-to-end messages to answer (2000)")
    add("--customers", type=positive(int, 10**6), default=1000, help="distinct WhatsApp users (1000)")
    add("--warmup", type=int, default=500, help="unmeasured deliveries before each measured run (500)")
    add(
        "--database",
        metavar="POSTGRESQL_URL",
        help="run the PostgreSQL phases instead (bench/webhooks_postgres.py): the gateway as 1 web + W worker "
        "processes on a database the benchmark creates on this server and drops (e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    add(
        "--worker-processes",
        type=positive(int, 16),
        nargs="+",
        default=[1, 2],
        help="with --database: the topologies, worker processes beside the one web process (1 2)",
    )
    add("--profile", action="store_true", help="print cProfile hotspots of the gateway during the ingest run")
    add("--profile-ack", action="store_true", help="print cProfile hotspots of the gateway during the ack run")
    add("--profile-e2e", action="store_true", help="print cProfile hotspots of the gateway, end to end")
    add("--profile-lines", type=positive(int, 500), default=30, help="hotspot lines printed per profile (30)")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.worker_ack_target_ms < 0:
        parser.error("--worker-ack-target-ms must be 0 or more")
    if args.rate * args.seconds > 200_000:
        parser.error("--rate x --seconds must stay at or below 200,000 deliveries")
    if args.database is not None:
        if not args.database.startswith(("postgresql://", "postgres://")):
            parser.error("--database takes a postgresql:// URL (the SQLite phases are the default)")
        if args.profile or args.profile_ack or args.profile_e2e:
            parser.error("the --profile options profile the in-process gateway of the SQLite phases")
        if why := check_server(args.database):
            parser.error(why)
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return asyncio.run(bench_postgres(args) if args.database else bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
