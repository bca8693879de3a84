"""Relay benchmark: what the gateway adds on top of the model call, measured against a fake OpenAI.

    python -m bench.relay                   # latency 0: pure gateway overhead
    python -m bench.relay --latency 0.05    # a 50 ms model, closer to real life

Starts a FakeOpenAI and the real gateway app (temp SQLite file) on random 127.0.0.1 ports, provisions a plan,
an account, a bot and an API key through the admin HTTP API, then sends the same number of chat completions
twice at the same concurrency: straight to the fake (the baseline), and as relay calls through the gateway
(spread over --users distinct user_ids, so conversation memory grows as it would in production). Warm-up
requests come first and are left out of the figures.

Everything (load generator, gateway, fake) runs in this one process and event loop, so the figures measure
CPU cost per request on one core; the fake and the load generator cost the same in both runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from admin.tokens import mint_token
from bench.common import provision
from gateway.app import create_app, freeze_gc_after_startup
from gateway.logging import configure_logging
from gateway.settings import Settings
from tests.fakes.openai_server import FakeOpenAI

HOST = "127.0.0.1"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
MESSAGES = (
    "Hi! Are you open on Sunday?",
    "Do you have oat milk?",
    "How much is a large cappuccino?",
    "Can I book a table for four people tomorrow at noon?",
    "Is there wifi in the shop?",
    "Do you sell gift cards?",
    "What cakes do you have today?",
    "Can I bring my dog inside?",
)
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


async def bench(args: argparse.Namespace) -> int:
    fake = FakeOpenAI(latency=args.latency)
    warmup = min(args.warmup, args.requests)
    with tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp:
        async with fake.serve(HOST, 0) as openai_base:
            settings = Settings(
                host=HOST,
                port=0,
                database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
                openai_api_key="sk-bench",
                openai_base_url=openai_base,
                admin_jwt_secret=secrets.token_urlsafe(48),
                data_dir=PROJECT_DATA,
                log_level="WARNING",
                log_format="console",
            )
            gateway = create_app(settings)
            freeze_gc_after_startup(gateway)  # as `python -m gateway` does
            runner = web.AppRunner(gateway, access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, HOST, 0)
                await site.start()
                gateway_base = f"http://{HOST}:{runner.addresses[0][1]}"
                return await measure(args, fake, settings, openai_base, gateway_base, warmup)
            finally:
                await runner.cleanup()


async def measure(
    args: argparse.Namespace, fake: FakeOpenAI, settings: Settings, openai_base: str, gateway_base: str, warmup: int
) -> int:
    assert settings.admin_jwt_secret is not None
    admin_token = mint_token(
        settings.admin_jwt_secret, role="admin", sub="bench", account_id=None, ttl=3600, now=int(time.time())
    )
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        tenant = await provision(session, gateway_base, admin_token)
        # One probe relay call shows the exact body the gateway sends upstream; the baseline sends the same shape.
        relay_headers = {"Authorization": f"Bearer {tenant.api_key}"}
        probe = {"user_id": "probe", "message": message(0)}
        async with session.post(f"{gateway_base}/api/messages/relay", json=probe, headers=relay_headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"probe relay call answered {resp.status}: {await resp.text()}")
    template = dict(fake.calls[-1].params)
    fake.reset_records()

    completions_url = f"{openai_base}/chat/completions"
    upstream_headers = {"Authorization": f"Bearer {settings.openai_api_key}"}

    async def direct(session: aiohttp.ClientSession, i: int) -> tuple[int, str]:
        body = {**template, "messages": [*template["messages"][:-1], {"role": "user", "content": message(i)}]}
        async with session.post(completions_url, json=body, headers=upstream_headers) as resp:
            if resp.status != 200:
                return resp.status, await read_failure(resp)
            await resp.read()
            return 200, ""

    relay_url = f"{gateway_base}/api/messages/relay"

    async def relayed(session: aiohttp.ClientSession, i: int) -> tuple[int, str]:
        body = {"user_id": f"customer-{i % args.users}", "message": message(i)}
        async with session.post(relay_url, json=body, headers=relay_headers) as resp:
            if resp.status != 200:
                return resp.status, await read_failure(resp)
            await resp.read()
            return 200, ""

    load = {"requests": args.requests, "concurrency": args.concurrency, "warmup": warmup}
    baseline = await run_load("direct to fake", direct, **load)
    fake.reset_records()
    gateway = await run_load("through gateway", relayed, **load)
    upstream_calls = len(fake.calls)
    history = [len(call.messages) - 2 for call in fake.calls[-args.users :]]

    report([baseline, gateway], args)
    print(
        f"upstream calls per relay request: {upstream_calls / (warmup + args.requests):.2f}; "
        f"history messages sent in the last {len(history)} prompts: "
        f"{min(history, default=0)}-{max(history, default=0)} (bot memory budget {tenant.memory_tokens} tokens)"
    )
    failed = 0
    for result in (baseline, gateway):
        failed += result.failed
        for failure, count in result.failures.most_common(SHOW_FAILURES):
            print(f"  {result.name}: {count} x {failure}")
    return 1 if failed else 0


def report(results: Sequence[Result], args: argparse.Namespace) -> None:
    print(
        f"\nrelay benchmark: {args.requests} requests at concurrency {args.concurrency}, "
        f"fake model latency {args.latency * 1000:g} ms, {args.users} user_ids, {args.warmup} warm-up requests excluded"
    )
    columns = ("requests", 8), ("conc", 5), ("req/s", 9), ("p50 ms", 8), ("p99 ms", 8), ("max ms", 8), ("non-200", 8)
    header = f"{'':<16} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<16} {r.requests:>8} {r.concurrency:>5} {r.throughput:>9.1f} "
            f"{r.pct(50):>8.2f} {r.pct(99):>8.2f} {max(r.latencies_ms, default=0):>8.2f} {r.failed:>8}"
        )
    direct, gateway = results
    print(
        f"\nadded latency p50/p99 (ms): {gateway.pct(50) - direct.pct(50):.2f} / {gateway.pct(99) - direct.pct(99):.2f}"
    )
    ratio = gateway.throughput / direct.throughput if direct.throughput else float("nan")
    print(f"throughput ratio gateway/direct: {ratio:.3f}")


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
    parser.add_argument("--concurrency", type=positive(int), default=20, help="requests in flight (20)")
    parser.add_argument("--latency", type=seconds, default=0.0, help="fake model latency in seconds (0; try 0.05)")
    parser.add_argument("--users", type=positive(int), default=50, help="distinct relay user_ids (50)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests before each run (100)")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
