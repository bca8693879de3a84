"""Relay benchmark: what the gateway's own work costs per turn, next to calling the fake model directly.

    python -m bench.relay                   # zero-latency fake: the gateway's own cost, SQLite
    python -m bench.relay --latency 0.05    # a 50 ms model, closer to real life
    python -m bench.relay --database postgresql://postgres@127.0.0.1:5432/postgres   # SQLite and PostgreSQL
    python -m bench.relay --profile         # plus the gateway process's hotspots (cProfile) for each run

The gateway under test is the real app (`create_app`, as `python -m gateway` builds it, its garbage collector
set for serving after start-up: `gc_for_serving`) serving in this process's event loop; the fake OpenAI runs in a
process of its own and so does the load generator (bench/fakes_process.py, bench/load.py), so that their CPU never
counts as the gateway's.
A plan, an account, a bot (default settings: 2,000 tokens of memory) and an API key are made through the admin API.

Two kinds of turn, each at every --concurrency (default 1 and 32):
  - new customer: every relay call from a user_id never seen before (no history);
  - full history: calls spread over --history-users customers whose conversations were filled first (unmeasured)
    until the bot's memory budget is full (about 80 stored messages go into each prompt).
For each: the same number of calls straight to the fake (the baseline, bodies of the same shape: the persona, the
same history, the message), then through each gateway right after. Reported: requests/s, latency p50/p99 seen by
the generator, added latency (gateway minus baseline at the same concurrency) and the gateway process's CPU per
turn (all its threads: the event loop, SQLite's writer, tiktoken; PostgreSQL's own server CPU is not in it), and
the idle memory of a fresh `python -m gateway serve` process.

Each kind also runs through a floor: a bare aiohttp proxy in this process (`bare_proxy`) that reads the relay body,
sends the persona (and, for full histories, the same history as the baseline) and the message to the fake with a
pooled session, and answers the reply: no key, no database, no tokens, no quota. It is what any relay built on
aiohttp pays before doing anything of its own, so the gateway's row minus the floor's is the gateway's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from admin.tokens import mint_token
from bench.common import PERSONA, provision, serving
from bench.fakes_process import FakesProcess
from bench.load import MESSAGES, Generator, LoadResult, LoadSpec
from bench.postgres import BenchDatabase, check_server
from bench.sqlite_share import Share, SqliteShare
from gateway.app import create_app, gc_for_serving
from gateway.logging import configure_logging
from gateway.settings import Settings
from tests.support.gateway_process import GatewayProcess, free_port

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_DATA = PROJECT_ROOT / "data"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
RUN_TIMEOUT = 600.0
SHOW_FAILURES = 5
FILL_CONCURRENCY = 8
CPU_TARGET_MS = 1.0
ADDED_P50_TARGET_MS = 2.0
IDLE_MEMORY_TARGET_MB = 120.0
MODEL = "gpt-4o-mini"


def message(i: int) -> str:
    return f"{MESSAGES[i % len(MESSAGES)]} (#{i})"


@dataclass(frozen=True, slots=True)
class Gateway:
    backend: str  # sqlite | postgresql
    base: str
    api_key: str
    memory_tokens: int


@dataclass(slots=True)
class Run:
    name: str  # "direct to fake", "bare aiohttp proxy" or "gateway, sqlite"
    load: LoadResult
    cpu_seconds: float | None = None  # the gateway process's CPU over the run (None for the baseline)
    sqlite: Share | None = None  # SQLite's own share of it (--sqlite-share, the gateway on SQLite)

    @property
    def cpu_ms_per_turn(self) -> float:
        return self.cpu_seconds / self.load.sent * 1000 if self.cpu_seconds is not None else float("nan")


@dataclass(slots=True)
class Scenario:
    kind: str  # "new customer" | "full history"
    concurrency: int
    baseline: Run
    floor: Run  # the bare aiohttp proxy
    gateways: list[Run]


@contextlib.asynccontextmanager
async def gateway_on(backend: str, database_url: str, openai_base: str) -> AsyncIterator[Gateway]:
    """The real app on `database_url`, served on a random port in this event loop, with the bench tenant."""
    jwt_secret = secrets.token_urlsafe(48)
    settings = Settings(
        host=HOST,
        port=0,
        database_url=database_url,
        openai_api_key="sk-bench",
        openai_base_url=openai_base,
        admin_jwt_secret=jwt_secret,
        data_dir=PROJECT_DATA,
        log_level="WARNING",
        log_format="console",
    )
    app = create_app(settings)
    gc_for_serving(app)  # as `python -m gateway` does
    async with serving(app) as (base, _):
        admin_token = mint_token(jwt_secret, role="admin", sub="bench", account_id=None, ttl=3600, now=int(time.time()))
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            tenant = await provision(session, base, admin_token)
        yield Gateway(backend, base, tenant.api_key, tenant.memory_tokens)


@contextlib.asynccontextmanager
async def bare_proxy(openai_base: str, history: Sequence[dict[str, str]]) -> AsyncIterator[Gateway]:
    """The floor: the relay's HTTP round trips and JSON, nothing else (see the module's docstring)."""
    persona = {"role": "system", "content": PERSONA}
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    url = f"{openai_base}/chat/completions"
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:

        async def relay(request: web.Request) -> web.Response:
            sent = await request.json()
            remembered = history if sent["user_id"].startswith("regular-") else ()
            messages = [persona, *remembered, {"role": "user", "content": sent["message"]}]
            body = json.dumps({"model": MODEL, "messages": messages, "max_tokens": 300}).encode()
            async with session.post(url, data=body, headers=headers) as answer:
                completion = json.loads(await answer.read())
            choice = completion["choices"][0]["message"]["content"]
            return web.json_response({"reply": choice, "usage": completion["usage"]})

        app = web.Application()
        app.router.add_post("/api/messages/relay", relay)
        async with serving(app) as (base, _):
            yield Gateway("bare aiohttp proxy", base, "none", 0)


def relay_bodies(gateway: Gateway, users: Callable[[int], str], count: int) -> tuple[tuple[bytes, dict[str, str]], ...]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.api_key}"}
    return tuple((json.dumps({"user_id": users(i), "message": message(i)}).encode(), headers) for i in range(count))


def direct_bodies(history: Sequence[dict[str, str]], count: int) -> tuple[tuple[bytes, dict[str, str]], ...]:
    """Chat completion requests of the shape the gateway sends: the persona, `history`, the new message."""
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    persona = {"role": "system", "content": PERSONA}
    return tuple(
        (
            json.dumps(
                {
                    "model": MODEL,
                    "messages": [persona, *history, {"role": "user", "content": message(i)}],
                    "max_tokens": 300,
                }
            ).encode(),
            headers,
        )
        for i in range(count)
    )


async def relay(session: aiohttp.ClientSession, gateway: Gateway, user: str, text: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    async with session.post(
        f"{gateway.base}/api/messages/relay", json={"user_id": user, "message": text}, headers=headers
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"relay call answered {resp.status}: {(await resp.text())[:300]}")
        answer: dict[str, Any] = await resp.json()
        return answer


async def fill_histories(gateway: Gateway, users: int, turns: int) -> int:
    """Each of `users` customers talks `turns` times (unmeasured); the prompt tokens of one more turn after."""
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        jobs = [(f"regular-{u}", t) for t in range(turns) for u in range(users)]

        async def sender() -> None:
            while jobs:
                user, t = jobs.pop()
                await relay(session, gateway, user, message(t))

        async with asyncio.TaskGroup() as group:
            for _ in range(FILL_CONCURRENCY):
                group.create_task(sender())
        probe = await relay(session, gateway, "regular-0", message(turns))
        return int(probe["usage"]["prompt_tokens"])


def stored_history(turns: int) -> list[dict[str, str]]:
    """What a filled conversation's prompt carries, for the baseline: the fake's own replies to the messages."""
    history = []
    for t in range(turns):
        history += [
            {"role": "user", "content": message(t)},
            {"role": "assistant", "content": f"You said: {message(t)}"},
        ]
    return history


def load_spec(url: str, bodies: tuple[tuple[bytes, dict[str, str]], ...], concurrency: int, warmup: int) -> LoadSpec:
    return LoadSpec(url, "", "", len(bodies) - warmup, warmup, concurrency, 1, bodies=bodies)


async def measured(
    spec: LoadSpec, *, gateway: bool, profile: cProfile.Profile | None, share: SqliteShare | None = None
) -> tuple[LoadResult, float, Share | None]:
    """Run `spec` from a generator process; the result, this process's CPU seconds over the measured part and, with
    `share`, SQLite's share of them."""
    async with Generator(spec) as generator:
        cpu = time.process_time()
        before = share.now() if share is not None else None
        if profile is not None and gateway:
            profile.enable()
        generator.go()
        try:
            result = await generator.result(within=RUN_TIMEOUT)
        finally:
            if profile is not None and gateway:
                profile.disable()
        spent = time.process_time() - cpu
        return result, spent, share.now() - before if share is not None and before is not None else None


async def run_scenarios(
    args: argparse.Namespace,
    openai_base: str,
    gateways: Sequence[Gateway],
    floor: Gateway,
    sqlite_share: SqliteShare | None = None,
) -> list[Scenario]:
    scenarios = []
    tag = 0
    prompt_tokens: dict[str, int] = {}
    for gateway in gateways if "full history" in args.kinds else ():
        print(f"filling {args.history_users} conversations on {gateway.backend} ...", flush=True)
        prompt_tokens[gateway.backend] = await fill_histories(gateway, args.history_users, args.history_turns)
    if prompt_tokens:
        print(
            "prompt tokens of a full-history turn: "
            + ", ".join(f"{backend} {tokens}" for backend, tokens in prompt_tokens.items()),
            flush=True,
        )
    history = stored_history(args.history_turns)[-args.baseline_history :]
    total = args.warmup + args.requests
    for kind in args.kinds:
        for concurrency in args.concurrency:
            tag += 1
            print(f"{kind}, concurrency {concurrency}: direct to the fake ...", flush=True)
            direct = direct_bodies(history if kind == "full history" else [], total)
            spec = load_spec(f"{openai_base}/chat/completions", direct, concurrency, args.warmup)
            baseline, _, _ = await measured(spec, gateway=False, profile=None)
            runs: list[Run] = []
            for gateway in (floor, *gateways):
                where = "the floor" if gateway is floor else f"the gateway on {gateway.backend}"
                print(f"{kind}, concurrency {concurrency}: through {where} ...", flush=True)

                def users(i: int, run: int = tag, fresh: bool = kind == "new customer") -> str:
                    return f"new-{run}-{i}" if fresh else f"regular-{i % args.history_users}"

                spec = load_spec(
                    f"{gateway.base}/api/messages/relay", relay_bodies(gateway, users, total), concurrency, args.warmup
                )
                profile = cProfile.Profile() if args.profile and gateway is not floor else None
                share = sqlite_share if gateway.backend == "sqlite" else None
                load, cpu, sqlite = await measured(spec, gateway=True, profile=profile, share=share)
                name = gateway.backend if gateway is floor else f"gateway, {gateway.backend}"
                runs.append(Run(name, load, cpu, sqlite))
                if profile is not None:
                    print(f"\ncProfile of this process during {kind}, concurrency {concurrency}, {gateway.backend}:")
                    stats = pstats.Stats(profile, stream=sys.stdout).sort_stats(args.profile_sort)
                    stats.print_stats(args.profile_lines)
            scenarios.append(Scenario(kind, concurrency, Run("direct to fake", baseline), runs[0], runs[1:]))
    return scenarios


async def idle_memory(tmp: Path, openai_base: str, *, seeded: bool, python: str = sys.executable) -> float:
    """Resident memory (MB) of a fresh `python -m gateway serve` on a new SQLite file, once it is ready and idle.
    `seeded`: the seed plans (gpt-4o models) are there first, so the process warms o200k_base at start. `python`:
    the interpreter it runs with (the project's code, that environment's packages)."""
    name = "seeded" if seeded else "empty"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT_ROOT),
        "PORT": str(free_port()),
        "HOST": HOST,
        "DATABASE_URL": f"sqlite:///{tmp / f'idle-{name}.db'}",
        "DATA_DIR": str(PROJECT_DATA),
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": openai_base,
        "ADMIN_JWT_SECRET": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
    }
    if seeded:
        seed = GatewayProcess(env, tmp / f"idle-{name}.log", PROJECT_ROOT, ("seed",), python)
        seed.start()
        try:
            if await seed.wait_exit(60) != 0:
                raise RuntimeError(f"`python -m gateway seed` failed:\n{seed.log()}")
        finally:
            seed.close()
    process = GatewayProcess(env, tmp / f"idle-{name}.log", PROJECT_ROOT, ("serve",), python)
    process.start()
    try:
        await process.wait_ready(60)
        await asyncio.sleep(3.0)  # start-up work done in the background (the tokenizers' warm-up) settles
        assert process.proc is not None
        status = await asyncio.to_thread(Path(f"/proc/{process.proc.pid}/status").read_text)
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return rss_kb / 1024
    finally:
        process.close()


async def bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        async with FakesProcess(model_latency=args.latency) as fakes, contextlib.AsyncExitStack() as stack:
            openai_base = fakes.openai_base
            memory = await idle_memory(Path(tmp), openai_base, seeded=False, python=args.python)
            serving = await idle_memory(Path(tmp), openai_base, seeded=True, python=args.python)
            share = SqliteShare() if args.sqlite_share else None
            if share is not None:
                stack.enter_context(share.installed())  # before the gateway connects to its file
            gateways = [
                await stack.enter_async_context(
                    gateway_on("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", openai_base)
                )
            ]
            server = None
            if args.database:
                server = await stack.enter_async_context(BenchDatabase(args.database))
                url = await server.new_schema("relay")
                gateways.append(await stack.enter_async_context(gateway_on("postgresql", url, openai_base)))
            floor = await stack.enter_async_context(
                bare_proxy(openai_base, stored_history(args.history_turns)[-args.baseline_history :])
            )
            scenarios = await run_scenarios(args, openai_base, gateways, floor, share)
        return report(scenarios, args, server, memory, serving)


def report(
    scenarios: Sequence[Scenario], args: argparse.Namespace, server: BenchDatabase | None, memory: float, serving: float
) -> int:
    backends = "SQLite (temp file)" + (
        f" and PostgreSQL {server.server_version} (database {server.name}, dropped at the end)" if server else ""
    )
    print(
        f"\nrelay benchmark: {args.requests} measured requests per run ({args.warmup} warm-up excluded), fake model "
        f"latency {args.latency * 1000:g} ms, model {MODEL}; the gateway on {backends}, in this process; the fake "
        f"and the load generator in processes of their own; full history: {args.history_users} customers with "
        f"{args.history_turns} turns each before the runs"
    )
    columns = (("conc", 5), ("req/s", 8), ("p50 ms", 8), ("p99 ms", 8), ("+p50 ms", 8), ("+p99 ms", 8), ("cpu ms", 7))
    header = f"{'':<34} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    failed = 0
    for scenario in scenarios:
        base = scenario.baseline.load
        for run in (scenario.baseline, scenario.floor, *scenario.gateways):
            load = run.load
            failed += sum(load.failures.values())
            is_base = run is scenario.baseline
            added = "" if is_base else f"{load.pct(50) - base.pct(50):>8.2f} {load.pct(99) - base.pct(99):>8.2f}"
            cpu = "" if is_base else f"{run.cpu_ms_per_turn:>7.2f}"
            print(
                f"{scenario.kind + ', ' + run.name:<34} {scenario.concurrency:>5} {load.throughput:>8.1f} "
                f"{load.pct(50):>8.2f} {load.pct(99):>8.2f} {added:>17} {cpu:>7}"
            )
    print(
        "req/s: answered requests per second; p50/p99: latency seen by the generator; +p50/+p99: the gateway's "
        "minus direct to the fake at the same concurrency; cpu ms: the gateway process's CPU (all threads) per turn; "
        "bare aiohttp proxy: the floor, HTTP in and out with no work of its own"
    )
    print(
        f"\nidle memory of a fresh `python -m gateway serve` (SQLite, run by {args.python}): {memory:.1f} MB resident "
        f"with no plan yet, {serving:.1f} MB with the seed plans (their gpt-4o models' tokenizer warmed at start)"
    )
    print()
    for scenario in scenarios:
        for run in scenario.gateways:
            verdict = "met" if run.cpu_ms_per_turn <= CPU_TARGET_MS else "MISSED"
            own = run.cpu_ms_per_turn - scenario.floor.cpu_ms_per_turn
            print(
                f"target CPU per turn <= {CPU_TARGET_MS:g} ms, {scenario.kind}, concurrency {scenario.concurrency}, "
                f"{run.name}: {run.cpu_ms_per_turn:.2f} ms ({verdict}; {own:.2f} ms beyond the floor's "
                f"{scenario.floor.cpu_ms_per_turn:.2f})"
            )
    for scenario in scenarios:
        for run in scenario.gateways:
            if run.sqlite is None:
                continue
            thousands = run.load.sent / 1000  # seconds over thousands of turns: ms per turn
            in_sqlite, threads = run.sqlite.in_sqlite / thousands, run.sqlite.other_threads / thousands
            before_ours = scenario.floor.cpu_ms_per_turn + in_sqlite + threads
            print(
                f"SQLite's share, {scenario.kind}, concurrency {scenario.concurrency}: {in_sqlite:.2f} ms per turn in "
                f"sqlite3 calls on the event loop's thread + {threads:.2f} ms CPU of the other threads (WAL sync, "
                f"writer, reader); with the floor's {scenario.floor.cpu_ms_per_turn:.2f} ms: {before_ours:.2f} ms of "
                f"the turn's {run.cpu_ms_per_turn:.2f} before any work of the gateway's own"
            )
    for scenario in scenarios:
        if scenario.concurrency != 1:
            continue
        for run in scenario.gateways:
            added_p50 = run.load.pct(50) - scenario.baseline.load.pct(50)
            verdict = "met" if added_p50 < ADDED_P50_TARGET_MS else "MISSED"
            print(
                f"target added p50 < {ADDED_P50_TARGET_MS:g} ms at concurrency 1, {scenario.kind}, {run.name}: "
                f"{added_p50:.2f} ms ({verdict})"
            )
    for what, figure in (("no plan", memory), ("seed plans", serving)):
        verdict = "met" if figure < IDLE_MEMORY_TARGET_MB else "MISSED"
        print(f"target idle memory < {IDLE_MEMORY_TARGET_MB:g} MB, {what}: {figure:.1f} MB ({verdict})")
    for scenario in scenarios:
        for run in (scenario.baseline, scenario.floor, *scenario.gateways):
            for failure, count in run.load.failures.most_common(SHOW_FAILURES):
                print(f"  {scenario.kind}, {run.name} (concurrency {scenario.concurrency}): {count} x {failure}")
    return 1 if failed else 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n\n")[0])

    def positive(kind: type) -> Callable[[str], Any]:
        def convert(raw: str) -> Any:
            value = kind(raw)
            if value <= 0:
                raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
            return value

        return convert

    def seconds(raw: str) -> float:
        value = float(raw)
        if not 0 <= value <= 5:
            raise argparse.ArgumentTypeError(f"must be between 0 and 5 seconds, got {raw}")
        return value

    parser.add_argument("--requests", type=positive(int), default=2000, help="measured requests per run (2000)")
    parser.add_argument(
        "--concurrency", type=positive(int), nargs="+", default=[1, 32], help="requests in flight, one run each (1 32)"
    )
    parser.add_argument("--latency", type=seconds, default=0.0, help="fake model latency in seconds (0; try 0.05)")
    parser.add_argument("--history-users", type=positive(int), default=40, help="customers with a full history (40)")
    parser.add_argument(
        "--history-turns", type=positive(int), default=60, help="turns each of them has before the runs (60)"
    )
    parser.add_argument(
        "--baseline-history",
        type=positive(int),
        default=80,
        help="history messages in the baseline's full-history bodies (80: what a 2,000-token memory holds)",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=("new", "history"),
        default=["new", "history"],
        help="which turns to measure: new customers, full histories or both (both)",
    )
    parser.add_argument("--profile", action="store_true", help="print cProfile's hotspots of each gateway run")
    parser.add_argument("--profile-lines", type=positive(int), default=30, help="lines of each profile (30)")
    parser.add_argument(
        "--profile-sort", choices=("tottime", "cumulative"), default="tottime", help="order of the profile (tottime)"
    )
    parser.add_argument(
        "--sqlite-share",
        action="store_true",
        help="also measure SQLite's own share of each SQLite run: CPU inside sqlite3's calls on the event loop's "
        "thread and of the process's other threads (bench/sqlite_share.py)",
    )
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests before each run (100)")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter the idle-memory processes run the project with (this one). The development "
        "environment holds packages the gateway never needs (rich, pygments, greenlet) that structlog imports when "
        "they are there: a virtual environment with `pip install .` alone measures what production runs",
    )
    parser.add_argument(
        "--database",
        metavar="POSTGRESQL_URL",
        help="also relay through the gateway on PostgreSQL: a database the benchmark creates on this server and "
        "drops (e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    args = parser.parse_args(argv)
    args.kinds = [{"new": "new customer", "history": "full history"}[k] for k in dict.fromkeys(args.kinds)]
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.database is not None:
        if not args.database.startswith(("postgresql://", "postgres://")):
            parser.error("--database takes a postgresql:// URL")
        if why := check_server(args.database):
            parser.error(why)
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
