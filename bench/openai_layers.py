"""What each layer of the `openai` SDK costs on the gateway's chat completion call, against a fake model.

    python -m bench.openai_layers                     # 2,000 calls per way, at concurrency 1 and 32
    python -m bench.openai_layers --history 80        # prompts carrying 80 history messages

The same chat completion request (a persona, `--history` messages, the customer's message) is sent to the fake
OpenAI (in a process of its own, zero latency) in four ways, each timed by this process's CPU per call:
  1. `chat.completions.create(...)`: the SDK's typed path, the reply parsed into its pydantic models;
  2. `chat.completions.with_raw_response.create(...)` with the messages in `extra_body`: what the gateway did
     before issue 14 (no per-message transform, the body parsed by us);
  3. `AsyncOpenAI.post(...)` with a body we built and `httpx.Response` as the result: the SDK's request options,
     headers and its httpx-over-aiohttp transport, nothing else;
  4. the SDK's own headers (`default_headers`, the API key) on a plain aiohttp session, the body serialised
     once and the answer read as bytes: what core/llm.py does now for chat completions.
Ways 2 to 4 parse the answer with the same json.loads; way 1 builds the SDK's models instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx2
import openai

from bench.common import PERSONA
from bench.fakes_process import FakesProcess
from bench.load import MESSAGES
from core.llm import system_tls

Call = Callable[[int], Awaitable[Any]]


def messages(history: int, i: int) -> list[dict[str, str]]:
    said = [
        {"role": "user" if k % 2 == 0 else "assistant", "content": f"{MESSAGES[k % len(MESSAGES)]} (#{k})"}
        for k in range(history)
    ]
    return [{"role": "system", "content": PERSONA}, *said, {"role": "user", "content": MESSAGES[i % len(MESSAGES)]}]


async def timed(call: Call, count: int, concurrency: int) -> tuple[float, float]:
    """CPU ms and wall ms per call over `count` calls at `concurrency`."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            await call(i)

    for _ in range(20):  # warm-up
        await call(0)
    cpu, wall = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return (time.process_time() - cpu) / count * 1000, (time.perf_counter() - wall) / count * 1000


async def bench(args: argparse.Namespace) -> int:
    async with FakesProcess() as fakes:
        base = fakes.openai_base
        sdk = openai.AsyncOpenAI(
            api_key="sk-bench",
            base_url=base,
            max_retries=0,
            timeout=30,
            http_client=openai.DefaultAioHttpClient(timeout=30, verify=system_tls()),
        )
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        sdk_headers = {k: v for k, v in sdk.default_headers.items() if isinstance(v, str)}  # not its Omit markers
        headers = {**sdk_headers, "Content-Type": "application/json", "Accept": "application/json"}
        url = f"{base}/chat/completions"

        def body(i: int) -> dict[str, Any]:
            return {"model": "gpt-4o-mini", "messages": messages(args.history, i), "max_tokens": 300}

        async def typed(i: int) -> Any:
            return await sdk.chat.completions.create(**body(i))

        async def raw_extra_body(i: int) -> Any:
            sent = body(i)
            raw = await sdk.chat.completions.with_raw_response.create(
                model=sent["model"], max_tokens=300, messages=[], extra_body={"messages": sent["messages"]}
            )
            return json.loads(raw.content)

        async def post(i: int) -> Any:
            raw = await sdk.post("/chat/completions", body=body(i), cast_to=httpx2.Response)
            return json.loads(raw.content)

        async def plain(i: int) -> Any:
            async with session.post(url, data=json.dumps(body(i)).encode(), headers=headers) as resp:
                return json.loads(await resp.read())

        ways = (
            ("1. create(), typed models", typed),
            ("2. with_raw_response, extra_body", raw_extra_body),
            ("3. post(), prebuilt body", post),
            ("4. aiohttp, the SDK's headers", plain),
        )
        figures = {}
        for concurrency in args.concurrency:
            for name, call in ways:
                print(f"{name}, concurrency {concurrency} ...", flush=True)
                figures[name, concurrency] = await timed(call, args.calls, concurrency)
        await session.close()
        await sdk.close()
    print(
        f"\nopenai {openai.__version__}: {args.calls} chat completions per way, {args.history} history messages, "
        f"fake model (zero latency) in its own process; CPU of this process per call"
    )
    print(f"{'':<36} {'conc':>5} {'cpu ms/call':>12} {'wall ms/call':>13}")
    for concurrency in args.concurrency:
        for name, _ in ways:
            cpu, wall = figures[name, concurrency]
            print(f"{name:<36} {concurrency:>5} {cpu:>12.3f} {wall:>13.3f}")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.openai_layers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per way and concurrency (2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="calls in flight (1 32)")
    parser.add_argument("--history", type=int, default=0, help="history messages in each prompt (0)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.history < 0 or min(args.concurrency) < 1:
        parser.error("--calls and --concurrency must be positive, --history 0 or more")
    return args


def main(argv: Sequence[str]) -> int:
    return asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
