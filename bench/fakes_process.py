"""The fake OpenAI and the fake Graph in a process of their own, so that their CPU and their callbacks stay out of
the event loop (and the CPU figures) of the gateway under test.

    async with FakesProcess(model_latency=0.05) as fakes:   # spawn, both fakes on random 127.0.0.1 ports
        settings(openai_base_url=fakes.openai_base, graph_api_base_url=fakes.graph_base)
        fakes.replies                                       # text replies the fake Graph has answered 200, live
    fakes.stats                                             # after the exit: final counts and the process's CPU

The live reply count is a shared integer that the fakes process updates as each Graph request ends (a middleware
on the fake Graph's app), so reading it costs the main process a memory read: no polling over HTTP.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import traceback
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bench.common import expect_message
from sandbox.fakes.graph_server import FakeGraph, GraphCall
from sandbox.fakes.openai_server import FakeOpenAI

__all__ = ["FakesProcess", "FakesStats", "ReplyCounter"]

HOST = "127.0.0.1"
START_TIMEOUT = 60.0  # spawn + imports + both servers listening
STOP_TIMEOUT = 15.0  # the fakes' own shutdown (5 s each at worst) and the final report
PARENT_CHECK = 1.0  # how often the child looks for a vanished parent while waiting to stop


@dataclass(frozen=True, slots=True)
class FakesStats:
    """What the fakes saw, reported by the fakes process as it stops."""

    replies: int  # text sends the fake Graph answered 200 (with a recipient and a text)
    graph_requests: int
    openai_calls: int
    cpu_seconds: float  # the fakes process's CPU time, all threads, from ready to stop


class ReplyCounter:
    """Text replies the fake Graph has answered 200, counted incrementally: a full scan of its request log on every
    request would cost more than the replies themselves."""

    def __init__(self, graph: FakeGraph) -> None:
        self._graph = graph
        self._settled = 0  # requests[:settled] have all ended
        self._settled_replies = 0

    @staticmethod
    def _is_reply(call: GraphCall) -> bool:
        return call.ok and call.kind == "text" and bool(call.recipient) and bool(call.text)

    def count(self) -> int:
        requests = self._graph.requests
        while self._settled < len(requests) and requests[self._settled].ended_at is not None:
            self._settled_replies += self._is_reply(requests[self._settled])
            self._settled += 1
        return self._settled_replies + sum(self._is_reply(call) for call in requests[self._settled :])


async def _serve(model_latency: float, results: Any, stop: Any, replies: Any) -> None:
    openai, graph = FakeOpenAI(latency=model_latency), FakeGraph(implicit_grants=True)
    counter = ReplyCounter(graph)

    @web.middleware
    async def count_replies(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:  # the handler has recorded how the request ended: publish before the response goes out
            replies.value = counter.count()

    graph.app.middlewares.append(count_replies)
    async with openai.serve(HOST, 0) as openai_base, graph.serve(HOST, 0) as graph_base:
        cpu = time.process_time()
        results.put(("ready", (openai_base, graph_base)))
        parent = multiprocessing.parent_process()
        while not await asyncio.to_thread(stop.wait, PARENT_CHECK):
            if parent is not None and not parent.is_alive():
                return  # orphaned: nobody to report to
        stats = FakesStats(counter.count(), len(graph.requests), len(openai.calls), time.process_time() - cpu)
    results.put(("stopped", stats))


def fakes_process(model_latency: float, results: Any, stop: Any, replies: Any) -> None:
    """The child process's entry point: results and errors go back through `results`, never raised."""
    try:
        asyncio.run(_serve(model_latency, results, stop, replies))
    except BaseException:
        results.put(("error", traceback.format_exc()))


class FakesProcess:
    """`async with FakesProcess(model_latency) as fakes:` starts the fakes in a spawned process and waits until
    both listen; `fakes.openai_base` / `fakes.graph_base` are their URLs, `fakes.replies` the live reply count.
    Leaving the block stops the process (terminating it if it does not stop in time) and sets `fakes.stats`."""

    def __init__(self, model_latency: float = 0.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._results = context.Queue()
        self._stop = context.Event()
        self._replies = context.RawValue("q", 0)
        self._process = context.Process(
            target=fakes_process,
            args=(model_latency, self._results, self._stop, self._replies),
            name="bench-fakes",
            daemon=True,
        )
        self.openai_base = ""
        self.graph_base = ""
        self.stats: FakesStats | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def replies(self) -> int:
        return int(self._replies.value)

    async def __aenter__(self) -> FakesProcess:
        self._process.start()
        try:
            self.openai_base, self.graph_base = await self._expect("ready", START_TIMEOUT)
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        stats = None
        try:
            if self._process.is_alive():
                self._stop.set()
                stats = await self._expect("stopped", STOP_TIMEOUT)
        except Exception:
            if exc_type is None:
                raise  # a failure to stop is only worth reporting when nothing else went wrong
        finally:
            await self._shutdown()
        self.stats = stats

    async def _shutdown(self) -> None:
        """Stop the process whatever state it is in, and release the queue's feeder thread."""
        self._stop.set()
        await asyncio.to_thread(self._process.join, STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5.0)
        if self._process.is_alive():
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5.0)
        self._results.close()
        self._results.join_thread()

    async def _expect(self, kind: str, within: float) -> Any:
        return await expect_message(self._results, self._process, "fakes process", kind, within)
