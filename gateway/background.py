"""Periodic housekeeping tasks, kept in a registry and cancelled on shutdown (never fire-and-forget)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("gateway.background")


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def every(self, seconds: float, name: str, job: Callable[[], Awaitable[object]]) -> None:
        task = asyncio.get_running_loop().create_task(self._loop(seconds, name, job), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    async def _loop(seconds: float, name: str, job: Callable[[], Awaitable[object]]) -> None:
        task = asyncio.current_task()
        while True:
            try:
                await job()
            except Exception:
                # A failing sweep must not kill the loop: log it, try again next period.
                log.exception("background_job_failed", job=name)
            if task is not None and task.cancelling():
                # Cancelled (shutdown) while a library turned the cancellation into an error of its own (psycopg
                # may, while connecting): stop now, or close() would wait out the whole period's sleep.
                raise asyncio.CancelledError
            await asyncio.sleep(seconds)
