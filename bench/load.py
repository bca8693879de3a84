"""The load generator: signed WhatsApp deliveries (or any prepared POSTs, `LoadSpec.bodies`) sent from a process
of its own (spawn), closed loop (a number of senders) or open loop (a fixed offered rate, whatever the answers do),
with the ack latency of each.

    spec = LoadSpec(url, app_secret, "TAG", count=5000, warmup=500, concurrency=32, customers=1000, rate=1000)
    async with Generator(spec) as generator:   # spawned, warmed up, waiting
        generator.go()
        result = await generator.result(within=600)

Ack latency is measured by the generator: request start to response read. Kept out of the process under test, so
that its CPU and its callbacks never show up as the server's event-loop lag or as server CPU per delivery.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from adapters.meta_auth import SIGNATURE_HEADER, sign
from bench.common import expect_message

WEBHOOK_PATH = "/webhooks/whatsapp"
PHONE_NUMBER_ID = "106540352242922"
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
PROCESS_START_TIMEOUT = 60.0  # spawn + imports + warm-up of the generator process
GO_TIMEOUT = 60.0  # how long a ready generator waits for the signal to start
OPEN_LOOP_CONNECTIONS = 256  # open loop: requests in flight are not bounded by a sender count
SHOW_FAILURES = 5


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str
    secret: str
    tag: str  # makes every wamid of a phase distinct from every other phase's
    count: int  # measured deliveries
    warmup: int  # unmeasured deliveries first, at `concurrency`
    concurrency: int  # closed loop: senders; open loop: warm-up senders only
    customers: int  # distinct WhatsApp users the deliveries come from
    rate: float | None = None  # deliveries/s offered: open loop; None: closed loop
    # Requests of another kind, ready to send (raw body, headers), warm-up first: then `secret`, `tag` and
    # `customers` are not used (bench/relay.py sends relay calls and direct model calls this way).
    bodies: tuple[tuple[bytes, dict[str, str]], ...] = ()


@dataclass(slots=True)
class LoadResult:
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # acknowledged (200) deliveries only
    failures: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0  # first send to last answer
    send_span: float = 0.0  # first send to last send (open loop: what the offered rate is measured over)
    max_lateness_ms: float = 0.0  # open loop: how far behind its schedule a send started, at worst
    cpu_seconds: float = 0.0  # the generator process's own CPU time while measuring

    @property
    def acked(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def offered_rate(self) -> float:
        return (self.sent - 1) / self.send_span if self.send_span > 0 else float("nan")

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def whatsapp_text(i: int, tag: str, customers: int, now: int) -> dict[str, Any]:
    """One WhatsApp Cloud API delivery carrying one text message, as Meta sends it."""
    wa_id = f"1555{i % customers:07d}"
    message = {
        "from": wa_id,
        "id": f"wamid.HBgL{tag}{i:010d}FQIAEhgUM0VCMDRBRjYwMjc1QTk5QUY2NDgA",
        "timestamp": str(now),
        "type": "text",
        "text": {"body": f"{MESSAGES[i % len(MESSAGES)]} (#{i})"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": f"Customer {i % customers}"}, "wa_id": wa_id}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def signed_bodies(spec: LoadSpec) -> list[tuple[bytes, dict[str, str]]]:
    if spec.bodies:
        return list(spec.bodies)
    now = int(time.time())
    bodies = []
    for i in range(spec.warmup + spec.count):
        raw = json.dumps(whatsapp_text(i, spec.tag, spec.customers, now), separators=(",", ":")).encode()
        bodies.append((raw, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(raw, spec.secret)}))
    return bodies


async def _post(session: aiohttp.ClientSession, url: str, body: tuple[bytes, dict[str, str]]) -> str:
    """ "" when the delivery was acknowledged with a 200, else a short description of the failure."""
    raw, headers = body
    try:
        async with session.post(url, data=raw, headers=headers) as resp:
            text = await resp.read()
            return "" if resp.status == 200 else f"{resp.status} {text[:120].decode(errors='replace')}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"[:160]


async def _closed_loop(
    session: aiohttp.ClientSession, url: str, bodies: Sequence[tuple[bytes, dict[str, str]]], concurrency: int
) -> LoadResult:
    result = LoadResult(sent=len(bodies))
    next_index = 0

    async def sender() -> None:
        nonlocal next_index
        while next_index < len(bodies):  # bounded: every delivery is taken exactly once
            body = bodies[next_index]
            next_index += 1
            started = time.perf_counter()
            failure = await _post(session, url, body)
            if failure:
                result.failures[failure] += 1
            else:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(bodies))):
            group.create_task(sender())
    result.elapsed = time.perf_counter() - started
    return result


async def _open_loop(
    session: aiohttp.ClientSession, url: str, bodies: Sequence[tuple[bytes, dict[str, str]]], rate: float
) -> LoadResult:
    """Send delivery k at start + k / rate whatever happened to the earlier ones (no coordinated omission)."""
    result = LoadResult(sent=len(bodies))
    first_send = last_send = last_answer = 0.0

    async def one(body: tuple[bytes, dict[str, str]], due: float) -> None:
        nonlocal first_send, last_send, last_answer
        started = time.perf_counter()
        first_send = first_send or started
        last_send = max(last_send, started)
        result.max_lateness_ms = max(result.max_lateness_ms, (started - due) * 1000)
        failure = await _post(session, url, body)
        answered = time.perf_counter()
        last_answer = max(last_answer, answered)
        if failure:
            result.failures[failure] += 1
        else:
            result.latencies_ms.append((answered - started) * 1000)

    start = time.perf_counter() + 0.01
    async with asyncio.TaskGroup() as group:
        for k, body in enumerate(bodies):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(body, due))
    result.elapsed = last_answer - first_send
    result.send_span = last_send - first_send
    return result


async def _generate(spec: LoadSpec, results: Any, go: Any) -> None:
    bodies = signed_bodies(spec)
    warmup, measured = bodies[: spec.warmup], bodies[spec.warmup :]
    limit = OPEN_LOOP_CONNECTIONS if spec.rate else spec.concurrency
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        if warmup:
            failed = (await _closed_loop(session, spec.url, warmup, spec.concurrency)).failures
            if failed:
                raise RuntimeError(f"warm-up deliveries failed: {failed.most_common(SHOW_FAILURES)}")
        results.put(("ready", None))
        if not await asyncio.to_thread(go.wait, GO_TIMEOUT):
            raise RuntimeError("the benchmark never said go")
        cpu = time.process_time()
        if spec.rate:
            result = await _open_loop(session, spec.url, measured, spec.rate)
        else:
            result = await _closed_loop(session, spec.url, measured, spec.concurrency)
        result.cpu_seconds = time.process_time() - cpu
    results.put(("done", result))


def generator_process(spec: LoadSpec, results: Any, go: Any) -> None:
    """The child process's entry point: results and errors go back through `results`, never raised."""
    try:
        asyncio.run(_generate(spec, results, go))
    except BaseException:
        results.put(("error", traceback.format_exc()))


class Generator:
    """A load generator process: `async with Generator(spec) as gen:` waits until it is warmed up and ready;
    `gen.go()` starts the measured run; `await gen.result()` returns its LoadResult."""

    def __init__(self, spec: LoadSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._results = context.Queue()
        self._go = context.Event()
        self._process = context.Process(target=generator_process, args=(spec, self._results, self._go), daemon=True)

    async def __aenter__(self) -> Generator:
        self._process.start()
        await self._expect("ready", PROCESS_START_TIMEOUT)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._go.set()  # a generator still waiting to start ends at once (its wait returns, it reports, exits)
        await asyncio.to_thread(self._process.join, 10.0)
        if self._process.is_alive():
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5.0)
        self._results.close()
        self._results.join_thread()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def go(self) -> float:
        started = time.perf_counter()
        self._go.set()
        return started

    async def result(self, within: float) -> LoadResult:
        result = await self._expect("done", within)
        assert isinstance(result, LoadResult)
        return result

    async def _expect(self, kind: str, within: float) -> Any:
        return await expect_message(self._results, self._process, "load generator", kind, within)
