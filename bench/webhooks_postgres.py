"""The webhook benchmark on PostgreSQL, with the gateway as real processes (`python -m bench.webhooks --database
postgresql://postgres@127.0.0.1:5432/postgres`): the server's URL; the benchmark creates a database of its own
there (`bench_<random>`, a fresh schema per phase) and drops it at the end.

The gateway runs as the Procfile runs it: one `python -m gateway serve --role web` process (webhooks and the admin
API, no inbox workers) and W `serve --role worker` processes (--workers inbox workers each; they are woken across
processes by LISTEN/NOTIFY), each with DATABASE_URL and PORT in its environment. Phases:
  1. floor on PostgreSQL: a bare aiohttp handler in this process (bench/floor.py) whose one INSERT per request
     runs in autocommit on a pooled psycopg connection: one commit, one WAL flush per request. Against it, gateway
     ingest: the web process alone. Closed loop, --deliveries by --concurrency senders; alternated for --rounds
     rounds and pooled.
  2. floor at --rate deliveries/s offered, open loop for --seconds: the baseline of the ack latency below.
  3. ack at --rate offered, 1 web + W worker processes for each W of --worker-processes, the workers answering
     through a fake OpenAI with --model-latency (busy the whole run). Target: ack p99 under 10 ms at 1,000/s.
     The worker processes give way to the web process's acknowledgements as workers in one process do
     (WORKER_ACK_TARGET_MS): the web process reports its inbox commits' waits through NOTIFY.
  4. end to end, 1 web + W worker processes: zero-latency fakes, --messages deliveries posted (closed loop),
     timed from the first post until the fake Graph has received that many text replies. Alternated over the
     topologies for --rounds rounds and pooled. Target: the most worker processes answer at least 1.6 x what one
     answers.

The load generator and the fakes run in processes of their own, as for SQLite. This machine's cores are shared by
all of them: the generator, the fakes, PostgreSQL's backends, the web process and every worker process (and
whatever else runs on the machine meanwhile). So each phase also reports CPU: seconds per delivery (end to end:
per answered message) of each process, PostgreSQL's backends of the bench database, and the machine's busy time
that none of them account for ("others": other jobs, PostgreSQL's WAL writer, this orchestrating process), read
from /proc (bench/cpu.py). Where all the cores are busy, answered/s is bounded by the CPU a message costs, not by
the worker processes: the report shows that bound (cores / accounted CPU per message) next to the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from bench.common import HOST, provision_with_channel, serving
from bench.cpu import CpuMeter, CpuUse
from bench.fakes_process import FakesProcess
from bench.floor import FLOOR_SCHEMA, floor_app
from bench.gateway_processes import PROJECT_ROOT, GatewayProcesses
from bench.load import PHONE_NUMBER_ID, SHOW_FAILURES, WEBHOOK_PATH, Generator, LoadResult, LoadSpec
from bench.postgres import BenchDatabase

PROJECT_DATA = PROJECT_ROOT / "data"
E2E_TIMEOUT = 180.0  # longest wait for the end-to-end replies
ACK_P99_TARGET_MS = 10.0
SCALING_TARGET = 1.6  # the most worker processes against one, end to end
FLOOR_POOL = 10  # the floor's pooled connections: the gateway's DATABASE_POOL_SIZE default
PENDING = "SELECT COUNT(*) FROM inbox WHERE state = 'pending'"
CPU_GROUPS = ("web", "floor", "postgres", "fakes", "generator")  # and "worker N"; report order


@dataclass(slots=True)
class PgPhase:
    name: str
    load: LoadResult
    stored: int  # rows stored (ingest), or replies at the fake Graph (end to end)
    throughput: float  # deliveries acknowledged/s, or messages answered/s end to end
    cpu: CpuUse
    units: int  # what CPU is divided by: deliveries sent, or messages answered
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PgEnv:
    tmp: Path
    db: BenchDatabase
    app_secret: str
    jwt_secret: str
    secrets_key: str

    def process_env(self, url: str, *, workers: int, openai_base: str, graph_base: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(PROJECT_ROOT),
            "HOST": HOST,
            "DATABASE_URL": url,
            "DATA_DIR": str(PROJECT_DATA),
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": openai_base,
            "GRAPH_API_BASE_URL": graph_base,
            "ADMIN_JWT_SECRET": self.jwt_secret,
            "SECRETS_KEY": self.secrets_key,
            "META_APP_SECRET": self.app_secret,
            "META_VERIFY_TOKEN": secrets.token_urlsafe(16),
            "WORKERS": str(workers),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "console",
        }


async def measured(
    generator: Generator, meter: CpuMeter, groups: Callable[[], Awaitable[dict[str, list[int]]]], within: float
) -> tuple[LoadResult, CpuUse]:
    await meter.start(groups)
    generator.go()
    load = await generator.result(within)
    return load, await meter.stop()


def with_pids(env: PgEnv, named: Mapping[str, int | None]) -> Callable[[], Awaitable[dict[str, list[int]]]]:
    """The CPU groups of a phase: the named processes, and the PostgreSQL backends of the bench database."""

    async def groups() -> dict[str, list[int]]:
        found = {name: [pid] for name, pid in named.items() if pid is not None}
        return {**found, "postgres": await env.db.backend_pids()}

    return groups


# ---- phases 1 and 2: the floor, and the web process alone ------------------------------------------------------


async def floor_phase(args: argparse.Namespace, env: PgEnv, tag: str, *, rate: float | None = None) -> PgPhase:
    url = await env.db.new_schema(tag.lower())
    count = max(1, round(rate * args.seconds)) if rate else args.deliveries
    async with AsyncConnectionPool(
        url, min_size=FLOOR_POOL, max_size=FLOOR_POOL, kwargs={"autocommit": True}, open=False
    ) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            await conn.execute(FLOOR_SCHEMA)

        async def execute(sql: str, params: list[Any]) -> None:
            async with pool.connection() as conn:
                await conn.execute(sql.encode(), params)

        async with serving(floor_app(execute, env.app_secret.encode(), placeholder="%s")) as (base, _):
            spec = LoadSpec(
                base + WEBHOOK_PATH,
                env.app_secret,
                tag,
                count,
                args.warmup,
                args.concurrency,
                args.customers,
                rate=rate,
            )
            async with Generator(spec) as generator:
                groups = with_pids(env, {"floor": os.getpid(), "generator": generator.pid})
                load, cpu = await measured(generator, CpuMeter(), groups, within=600)
    stored = await env.db.count(url, "SELECT COUNT(*) FROM messages") - args.warmup
    name = f"floor @{rate:g}/s offered" if rate else "floor (bare handler)"
    phase = PgPhase(name, load, stored, load.throughput, cpu, load.sent)
    if rate:
        phase.notes.append(offered_note(load, rate))
    return phase


async def ingest_phase(args: argparse.Namespace, env: PgEnv, round_no: int) -> PgPhase:
    url = await env.db.new_schema(f"ingest{round_no}")
    # The fake Graph answers the channel's token check when it is connected; idle during the load.
    async with FakesProcess() as fakes:
        process_env = env.process_env(url, workers=0, openai_base=fakes.openai_base, graph_base=fakes.graph_base)
        async with GatewayProcesses(process_env, env.tmp / f"ingest{round_no}", worker_processes=0) as gateway:
            await provision_with_channel(gateway.web_url, env.jwt_secret, PHONE_NUMBER_ID)
            spec = LoadSpec(
                gateway.web_url + WEBHOOK_PATH,
                env.app_secret,
                f"ING{round_no}",
                args.deliveries,
                args.warmup,
                args.concurrency,
                args.customers,
            )
            async with Generator(spec) as generator:
                groups = with_pids(env, {**gateway.pids(), "generator": generator.pid})
                load, cpu = await measured(generator, CpuMeter(), groups, within=600)
    stored = await env.db.count(url, "SELECT COUNT(*) FROM inbox") - args.warmup
    return PgPhase("gateway ingest (1 web process)", load, stored, load.throughput, cpu, load.sent)


async def floor_and_ingest(args: argparse.Namespace, env: PgEnv) -> tuple[PgPhase, PgPhase]:
    floors, ingests = [], []
    for round_no in range(1, args.rounds + 1):
        print(f"floor on PostgreSQL, round {round_no} ...", flush=True)
        floors.append(await floor_phase(args, env, f"FLR{round_no}"))
        print(f"gateway ingest (1 web process), round {round_no} ...", flush=True)
        ingests.append(await ingest_phase(args, env, round_no))
    floor, ingest = pooled(floors), pooled(ingests)
    if args.rounds > 1:
        rates = ", ".join(f"{f.throughput:.0f}/{i.throughput:.0f}" for f, i in zip(floors, ingests, strict=True))
        ingest.notes.append(f"per round deliveries/s floor/gateway {rates}")
    return floor, ingest


# ---- phases 3 and 4: web and worker processes ----------------------------------------------------------------


async def ack_phase(args: argparse.Namespace, env: PgEnv, workers: int) -> PgPhase:
    count = max(1, round(args.rate * args.seconds))
    url = await env.db.new_schema(f"ack{workers}")
    async with FakesProcess(model_latency=args.model_latency) as fakes:
        process_env = env.process_env(
            url, workers=args.workers, openai_base=fakes.openai_base, graph_base=fakes.graph_base
        )
        async with GatewayProcesses(process_env, env.tmp / f"ack{workers}", worker_processes=workers) as gateway:
            await provision_with_channel(gateway.web_url, env.jwt_secret, PHONE_NUMBER_ID)
            spec = LoadSpec(
                gateway.web_url + WEBHOOK_PATH,
                env.app_secret,
                f"ACK{workers}",
                count,
                args.warmup,
                args.concurrency,
                args.customers,
                rate=args.rate,
            )
            async with Generator(spec) as generator:
                groups = with_pids(env, {**gateway.pids(), "fakes": fakes.pid, "generator": generator.pid})
                before = fakes.replies
                load, cpu = await measured(generator, CpuMeter(), groups, within=600)
                answered = fakes.replies - before
            pending = await env.db.count(url, PENDING)
    phase = PgPhase(f"ack @{args.rate:g}/s, {topology(workers)}", load, load.acked, load.throughput, cpu, load.sent)
    ceiling = workers * args.workers / args.model_latency if args.model_latency else float("inf")
    phase.notes.append(offered_note(load, args.rate))
    phase.notes.append(
        f"workers busy meanwhile: {answered} replies sent during the run ({answered / load.send_span:.0f}/s; model "
        f"latency {args.model_latency * 1000:g} ms, {workers} x {args.workers} workers: at most {ceiling:.0f}/s), "
        f"{pending} still pending at the end"
    )
    return phase


async def e2e_phase(args: argparse.Namespace, env: PgEnv, workers: int, round_no: int) -> PgPhase:
    url = await env.db.new_schema(f"e2e{workers}_{round_no}")
    async with FakesProcess() as fakes:
        process_env = env.process_env(
            url, workers=args.workers, openai_base=fakes.openai_base, graph_base=fakes.graph_base
        )
        log_dir = env.tmp / f"e2e{workers}_{round_no}"
        async with GatewayProcesses(process_env, log_dir, worker_processes=workers) as gateway:
            await provision_with_channel(gateway.web_url, env.jwt_secret, PHONE_NUMBER_ID)
            spec = LoadSpec(
                gateway.web_url + WEBHOOK_PATH,
                env.app_secret,
                f"E2E{workers}R{round_no}",
                args.messages,
                0,
                args.concurrency,
                args.customers,
            )
            async with Generator(spec) as generator:
                meter = CpuMeter()
                await meter.start(with_pids(env, {**gateway.pids(), "fakes": fakes.pid, "generator": generator.pid}))
                started = generator.go()
                answered_in = await replies(fakes, args.messages, started)
                cpu = await meter.stop()
                load = await generator.result(within=600)
    throughput = args.messages / answered_in if answered_in else float("nan")
    phase = PgPhase(f"end to end, {topology(workers)}", load, fakes.replies, throughput, cpu, args.messages)
    phase.notes.append(
        f"{args.messages} deliveries posted in {load.elapsed:.2f} s, "
        + (
            f"all replies received {answered_in:.2f} s after the first post"
            if answered_in
            else f"only {fakes.replies} replies within {E2E_TIMEOUT:g} s"
        )
    )
    return phase


async def replies(fakes: FakesProcess, count: int, started: float) -> float | None:
    """Seconds from `started` until the fake Graph has `count` replies (None if not within E2E_TIMEOUT)."""
    while (elapsed := time.perf_counter() - started) < E2E_TIMEOUT:
        if fakes.replies >= count:
            return elapsed
        await asyncio.sleep(0.01)
    return None


def topology(workers: int) -> str:
    return f"1 web + {workers} worker{'s' if workers > 1 else ''}"


def offered_note(load: LoadResult, rate: float) -> str:
    note = (
        f"offered {load.offered_rate:.0f}/s of {rate:g}/s requested over {load.send_span:.2f} s ({load.sent} "
        f"deliveries; a send started up to {load.max_lateness_ms:.1f} ms behind schedule)"
    )
    if load.offered_rate < 0.95 * rate:
        note += "; the generator did not keep up: the figures are for the rate it achieved"
    return note


def pooled(rounds: Sequence[PgPhase]) -> PgPhase:
    """Several runs of one phase as one: counts, times and CPU added up, latencies pooled; end to end, the
    messages answered over the seconds it took them."""
    load = LoadResult(
        sent=sum(p.load.sent for p in rounds),
        latencies_ms=[ms for p in rounds for ms in p.load.latencies_ms],
        failures=sum((p.load.failures for p in rounds), Counter()),
        elapsed=sum(p.load.elapsed for p in rounds),
        cpu_seconds=sum(p.load.cpu_seconds for p in rounds),
    )
    cpu = rounds[0].cpu
    for p in rounds[1:]:
        cpu = cpu.add(p.cpu)
    units = sum(p.units for p in rounds)
    seconds = sum(p.units / p.throughput if p.throughput > 0 else math.nan for p in rounds)
    notes = [note for p in rounds for note in p.notes]
    return PgPhase(rounds[0].name, load, sum(p.stored for p in rounds), units / seconds, cpu, units, notes)


# ---- report ----------------------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    env: PgEnv,
    floor: PgPhase,
    ingest: PgPhase,
    floor_rate: PgPhase,
    acks: Sequence[PgPhase],
    e2es: Sequence[PgPhase],
) -> int:
    cores = os.cpu_count() or 1
    print(
        f"\nwebhooks benchmark on PostgreSQL {env.db.server_version} (database {env.db.name}, dropped at the end): "
        f"the gateway as real processes (`python -m gateway serve --role web|worker`), {args.workers} inbox workers "
        f"per worker process; signed WhatsApp deliveries, one text message each, from {args.customers} customers; "
        f"closed loop {args.rounds} x {args.deliveries} at concurrency {args.concurrency} ({args.warmup} warm-up "
        f"excluded); open loop {args.rate:g}/s for {args.seconds:g} s; end to end {args.rounds} x {args.messages} "
        f"messages per topology"
    )
    print(
        f"{cores} CPUs shared by everything: the load generator and the fakes (processes of their own), PostgreSQL, "
        "the web process and the worker processes, and whatever else the machine runs (the 'others' column)"
    )
    columns = (
        ("sent", 6),
        ("acked", 6),
        ("stored", 6),
        ("rate/s", 8),
        ("x base", 7),
        ("p50 ms", 7),
        ("p99 ms", 7),
        ("max ms", 8),
    )
    header = f"{'':<36} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    one_worker = e2es[0]
    rows = [
        (floor, floor),
        (ingest, floor),
        (floor_rate, floor_rate),
        *((a, floor_rate) for a in acks),
        *((e, one_worker) for e in e2es),
    ]
    failed = 0
    for phase, base in rows:
        load = phase.load
        failed += sum(load.failures.values())
        ratio = phase.throughput / base.throughput if base.throughput else float("nan")
        print(
            f"{phase.name:<36} {load.sent:>6} {load.acked:>6} {phase.stored:>6} {phase.throughput:>8.1f} "
            f"{ratio:>7.3f} {load.pct(50):>7.2f} {load.pct(99):>7.2f} {max(load.latencies_ms, default=0):>8.2f}"
        )
    print(
        "rate/s: deliveries acknowledged per second (end to end: messages answered per second); x base: against the "
        "floor of the same kind (ack: the floor at the same offered rate; end to end: one worker process); "
        "p50/p99/max: ack latency seen by the generator; stored: rows in the database (end to end: replies)"
    )
    report_cpu([floor, ingest, floor_rate, *acks, *e2es])
    print()
    for phase in (ingest, floor_rate, *acks, *e2es):
        for note in phase.notes:
            print(f"{phase.name}: {note}")
    print()
    for phase in acks:
        p99 = phase.load.pct(99)
        verdict = "met" if p99 < ACK_P99_TARGET_MS and phase.load.acked == phase.load.sent else "MISSED"
        print(
            f"target ack p99 < {ACK_P99_TARGET_MS:g} ms at {args.rate:g}/s offered, {phase.name.split(', ')[1]}: "
            f"{p99:.2f} ms (p50 {phase.load.pct(50):.2f} ms), {phase.load.acked}/{phase.load.sent} acknowledged "
            f"({verdict}); the floor at the same rate: p99 {floor_rate.load.pct(99):.2f} ms"
        )
    for phase in e2es:
        workers = sum(s for n, s in phase.cpu.seconds.items() if n.startswith("worker"))
        print(
            f"end to end, {phase.name.split(', ')[1]}: {phase.throughput:.1f} messages answered/s; worker processes "
            f"{workers / phase.units * 1000:.2f} CPU ms per message; all accounted processes "
            f"{phase.cpu.accounted / phase.units * 1000:.2f} CPU ms per message, so {cores} idle cores could answer "
            f"at most {cores * phase.units / phase.cpu.accounted:.0f}/s; busy {phase.cpu.busy_cores:.2f} of {cores} "
            f"cores meanwhile, {phase.cpu.others / phase.cpu.wall:.2f} of them by others"
        )
    if len(e2es) > 1:
        ratio = e2es[-1].throughput / one_worker.throughput if one_worker.throughput else float("nan")
        verdict = "met" if ratio >= SCALING_TARGET else "MISSED"
        most = e2es[-1]  # what the machine's cores allow at its CPU per message, against one worker process's rate
        ceiling = cores * most.units / most.cpu.accounted / one_worker.throughput if one_worker.throughput else 0.0
        print(
            f"target {most.name.split(', ')[1]} >= {SCALING_TARGET:g} x {one_worker.name.split(', ')[1]} "
            f"end to end: {ratio:.3f} ({verdict}); this machine's {cores} cores allow at most {ceiling:.2f} x at the "
            "CPU per message measured"
        )
    for phase, _ in rows:
        for failure, count in phase.load.failures.most_common(SHOW_FAILURES):
            print(f"  {phase.name}: {count} x {failure}")
    return 1 if failed else 0


def report_cpu(phases: Sequence[PgPhase]) -> None:
    names = list(dict.fromkeys(n for p in phases for n in p.cpu.seconds))
    order = [n for n in CPU_GROUPS if n in names and n != "postgres"]
    order += sorted(n for n in names if n.startswith("worker"))
    order += ["postgres"] if "postgres" in names else []
    print("\nCPU over each measured window, ms per delivery (end to end: per answered message), by process:")
    header = f"{'':<36} " + " ".join(f"{n:>9}" for n in [*order, "others"]) + f" {'busy cores':>10}"
    print(header)
    print("-" * len(header))
    for phase in phases:
        per = [phase.cpu.seconds.get(n, math.nan) / phase.units * 1000 for n in order]
        cells = " ".join("        -" if math.isnan(v) else f"{v:>9.3f}" for v in per)
        others = phase.cpu.others / phase.units * 1000
        print(f"{phase.name:<36} {cells} {others:>9.3f} {phase.cpu.busy_cores:>10.2f}")
    print(
        "postgres: the server processes connected to the bench database; others: the machine's busy CPU that none "
        "of these account for (other jobs on the machine, PostgreSQL's WAL writer, this orchestrating process); "
        "busy cores: the whole machine's, averaged over the window"
    )


# ---- entry point -----------------------------------------------------------------------------------------------


async def bench_postgres(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="nexus-bench-webhooks-pg-") as tmp:
        async with BenchDatabase(args.database) as db:
            env = PgEnv(
                tmp=Path(tmp),
                db=db,
                app_secret=secrets.token_hex(16),
                jwt_secret=secrets.token_urlsafe(48),
                secrets_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
            floor, ingest = await floor_and_ingest(args, env)
            print(f"floor at {args.rate:g}/s offered ...", flush=True)
            floor_rate = await floor_phase(args, env, "FLRRATE", rate=args.rate)
            acks = []
            for workers in args.worker_processes:
                print(f"ack latency under an offered rate, {topology(workers)} ...", flush=True)
                acks.append(await ack_phase(args, env, workers))
            rounds: dict[int, list[PgPhase]] = {w: [] for w in args.worker_processes}
            for round_no in range(1, args.rounds + 1):
                for workers in args.worker_processes:
                    print(f"end to end, {topology(workers)}, round {round_no} ...", flush=True)
                    rounds[workers].append(await e2e_phase(args, env, workers, round_no))
            e2es = [pooled(r) for r in rounds.values()]
            return report(args, env, floor, ingest, floor_rate, acks, e2es)
