"""Relay benchmark: what the gateway adds on top of the model call, measured against a fake OpenAI.

    python -m bench.relay                   # latency 0: pure gateway overhead, at concurrency 1 and 20
    python -m bench.relay --latency 0.05    # a 50 ms model, closer to real life
    python -m bench.relay --database postgresql://postgres@127.0.0.1:5432/postgres   # SQLite and PostgreSQL

Starts a FakeOpenAI and the real gateway app (temp SQLite file; with --database, a second one on a PostgreSQL
database the benchmark creates on that server and drops at the end) on random 127.0.0.1 ports, provisions a plan,
an account, a bot and an API key through each one's admin HTTP API, then, for each --concurrency, sends the same
number of chat completions straight to the fake (the baseline) and right after as relay calls through each gateway
(spread over --users distinct user_ids, so conversation memory grows as it would in production). Added latency is
a gateway's percentile minus the baseline's at the same concurrency. Warm-up requests come first and are left out
of the figures.

Everything (load generator, gateways, fake) runs in this one process and event loop, so the figures measure CPU
cost per request on one core; the fake and the load generator cost the same in every run. PostgreSQL's server is
the exception: its backends run in processes of their own and may use the machine's other core (this machine has
2), so a relay on PostgreSQL pays the round trips to the server but not all of its CPU on this process's core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from admin.tokens import mint_token
from bench.common import provision, serving
from bench.load import MESSAGES
from bench.postgres import BenchDatabase, check_server
from gateway.app import create_app, freeze_gc_after_startup
from gateway.logging import configure_logging
from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI

HOST = "127.0.0.1"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
SHOW_FAILURES = 5

# Sends request number i; returns (HTTP status, short description of a failure or "").
Send = Callable[[aiohttp.ClientSession, int], Awaitable[tuple[int, str]]]


@dataclass
class Result:
    name: str
    requests: int
    concurrency: int
    elapsed: float
    latencies_ms: list[float]
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def message(i: int) -> str:
    return f"{MESSAGES[i % len(MESSAGES)]} (#{i})"


async def run_load(name: str, send: Send, *, requests: int, concurrency: int, warmup: int) -> Result:
    """`warmup` unmeasured requests, then `requests` measured ones, each time by `concurrency` workers."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:

        async def phase(first: int, count: int, result: Result | None) -> None:
            next_index = first
            end = first + count

            async def worker() -> None:
                nonlocal next_index
                while next_index < end:  # bounded: every request index is taken exactly once
                    i = next_index
                    next_index += 1
                    started = time.perf_counter()
                    try:
                        status, detail = await send(session, i)
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        status, detail = 0, f"{type(exc).__name__}: {exc}"
                    if result is None:
                        continue
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                    if status != 200:
                        result.failures[f"{status} {detail}"] += 1

            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, count)):
                    group.create_task(worker())

        await phase(0, warmup, None)
        result = Result(name, requests, concurrency, 0.0, [])
        started = time.perf_counter()
        await phase(warmup, requests, result)
        result.elapsed = time.perf_counter() - started
        return result


async def read_failure(resp: aiohttp.ClientResponse) -> str:
    text = await resp.text()
    return text[:200]


@dataclass(frozen=True, slots=True)
class Gateway:
    backend: str  # sqlite | postgresql
    base: str
    api_key: str
    memory_tokens: int


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
    freeze_gc_after_startup(app)  # as `python -m gateway` does
    async with serving(app) as (base, _):
        admin_token = mint_token(jwt_secret, role="admin", sub="bench", account_id=None, ttl=3600, now=int(time.time()))
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            tenant = await provision(session, base, admin_token)
        yield Gateway(backend, base, tenant.api_key, tenant.memory_tokens)


async def bench(args: argparse.Namespace) -> int:
    fake = FakeOpenAI(latency=args.latency)
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            openai_base = await stack.enter_async_context(fake.serve(HOST, 0))
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
            return await measure(args, fake, openai_base, gateways, server)


async def measure(
    args: argparse.Namespace,
    fake: FakeOpenAI,
    openai_base: str,
    gateways: Sequence[Gateway],
    server: BenchDatabase | None,
) -> int:
    warmup = min(args.warmup, args.requests)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        # One probe relay call shows the exact body the gateway sends upstream; the baseline sends the same shape.
        probe = {"user_id": "probe", "message": message(0)}
        for gateway in gateways:
            headers = {"Authorization": f"Bearer {gateway.api_key}"}
            async with session.post(f"{gateway.base}/api/messages/relay", json=probe, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"probe relay call answered {resp.status}: {await resp.text()}")
    template = dict(fake.calls[-1].params)
    fake.reset_records()

    completions_url = f"{openai_base}/chat/completions"
    upstream_headers = {"Authorization": "Bearer sk-bench"}

    async def direct(session: aiohttp.ClientSession, i: int) -> tuple[int, str]:
        body = {**template, "messages": [*template["messages"][:-1], {"role": "user", "content": message(i)}]}
        async with session.post(completions_url, json=body, headers=upstream_headers) as resp:
            if resp.status != 200:
                return resp.status, await read_failure(resp)
            await resp.read()
            return 200, ""

    def relay_through(gateway: Gateway) -> Send:
        relay_url = f"{gateway.base}/api/messages/relay"
        relay_headers = {"Authorization": f"Bearer {gateway.api_key}"}

        async def relayed(session: aiohttp.ClientSession, i: int) -> tuple[int, str]:
            body = {"user_id": f"customer-{i % args.users}", "message": message(i)}
            async with session.post(relay_url, json=body, headers=relay_headers) as resp:
                if resp.status != 200:
                    return resp.status, await read_failure(resp)
                await resp.read()
                return 200, ""

        return relayed

    # For each concurrency: the baseline, then each backend right after it, so drift falls on all alike. Every
    # backend gets the same requests in the same order, so its conversations' memory grows alike.
    runs: list[tuple[Result, list[Result]]] = []
    calls: dict[str, int] = dict.fromkeys((g.backend for g in gateways), 0)
    for concurrency in args.concurrency:
        load = {"requests": args.requests, "concurrency": concurrency, "warmup": warmup}
        print(f"concurrency {concurrency}: direct to the fake ...", flush=True)
        baseline = await run_load("direct to fake", direct, **load)
        results = []
        for gateway in gateways:
            print(f"concurrency {concurrency}: through the gateway on {gateway.backend} ...", flush=True)
            fake.reset_records()
            results.append(await run_load(f"gateway, {gateway.backend}", relay_through(gateway), **load))
            calls[gateway.backend] += len(fake.calls)
        runs.append((baseline, results))
    history = [len(call.messages) - 2 for call in fake.calls[-args.users :]]

    report(runs, args, server)
    per_request = ", ".join(
        f"{b} {n / (len(args.concurrency) * (warmup + args.requests)):.2f}" for b, n in calls.items()
    )
    print(
        f"upstream calls per relay request: {per_request}; history messages sent in the last {len(history)} "
        f"prompts: {min(history, default=0)}-{max(history, default=0)} (bot memory budget "
        f"{gateways[0].memory_tokens} tokens)"
    )
    failed = 0
    for baseline, results in runs:
        for result in (baseline, *results):
            failed += result.failed
            for failure, count in result.failures.most_common(SHOW_FAILURES):
                print(f"  {result.name} (concurrency {result.concurrency}): {count} x {failure}")
    return 1 if failed else 0


def report(runs: Sequence[tuple[Result, list[Result]]], args: argparse.Namespace, server: BenchDatabase | None) -> None:
    backends = "SQLite (temp file)" + (
        f" and PostgreSQL {server.server_version} (database {server.name}, dropped at the end)" if server else ""
    )
    print(
        f"\nrelay benchmark: {args.requests} requests per run, fake model latency {args.latency * 1000:g} ms, "
        f"{args.users} user_ids, {args.warmup} warm-up requests excluded; the gateway on {backends}; the load "
        f"generator, the gateways and the fake share this process and its event loop"
        + ("; PostgreSQL's server runs in processes of its own, on the machine's other core" if server else "")
    )
    columns = ("requests", 8), ("conc", 5), ("req/s", 9), ("p50 ms", 8), ("p99 ms", 8), ("max ms", 8), ("non-200", 8)
    header = f"{'':<20} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for baseline, results in runs:
        for r in (baseline, *results):
            print(
                f"{r.name:<20} {r.requests:>8} {r.concurrency:>5} {r.throughput:>9.1f} "
                f"{r.pct(50):>8.2f} {r.pct(99):>8.2f} {max(r.latencies_ms, default=0):>8.2f} {r.failed:>8}"
            )
    print()
    for baseline, results in runs:
        for gateway in results:
            ratio = gateway.throughput / baseline.throughput if baseline.throughput else float("nan")
            print(
                f"concurrency {baseline.concurrency}, {gateway.name}: added latency p50/p99 (ms) "
                f"{gateway.pct(50) - baseline.pct(50):.2f} / {gateway.pct(99) - baseline.pct(99):.2f}; "
                f"throughput ratio gateway/direct {ratio:.3f}"
            )


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
        "--concurrency", type=positive(int), nargs="+", default=[1, 20], help="requests in flight, one run each (1 20)"
    )
    parser.add_argument("--latency", type=seconds, default=0.0, help="fake model latency in seconds (0; try 0.05)")
    parser.add_argument("--users", type=positive(int), default=50, help="distinct relay user_ids (50)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests before each run (100)")
    parser.add_argument(
        "--database",
        metavar="POSTGRESQL_URL",
        help="also relay through the gateway on PostgreSQL: a database the benchmark creates on this server and "
        "drops (e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    args = parser.parse_args(argv)
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
