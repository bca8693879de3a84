"""The gateway as real processes for a benchmark: one `python -m gateway serve --role web` and N `serve --role
worker`, each with its own PORT, the others' DATABASE_URL and environment, as the Procfile runs them.

    async with GatewayProcesses(env, log_dir, worker_processes=2) as gateway:
        gateway.web_url                       # the web process's base URL (webhooks, admin API)
        gateway.pids()                        # {"web": pid, "worker 1": pid, "worker 2": pid}

They start together (the migrations take turns under the database's advisory lock) and are ready when each
answers /readyz. Leaving the block sends SIGTERM (workers drain what they hold) and kills what is still running
after STOP_SECONDS. Each process logs to its own file in `log_dir`; a process that fails to start shows its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.support.gateway_process import GatewayProcess, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_SECONDS = 60.0  # imports, migrations, the tokenizer's preload, on a machine shared with the load
STOP_SECONDS = 30.0  # a worker drains its running events (20 s at most) before it exits


class GatewayProcesses:
    def __init__(self, env: Mapping[str, str], log_dir: Path, *, worker_processes: int) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        roles = ["web"] + [f"worker {n}" for n in range(1, worker_processes + 1)]
        self._processes = {
            name: GatewayProcess(
                {**env, "PORT": str(free_port())},
                log_dir / f"{name.replace(' ', '')}.log",
                PROJECT_ROOT,
                ("serve", "--role", name.split()[0]),
            )
            for name in roles
        }
        self.web_url = self._processes["web"].base_url

    async def __aenter__(self) -> GatewayProcesses:
        try:
            for process in self._processes.values():
                process.start()
            await asyncio.gather(*(p.wait_ready(READY_SECONDS) for p in self._processes.values()))
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    def pids(self) -> dict[str, int | None]:
        return {name: p.proc.pid if p.proc is not None else None for name, p in self._processes.items()}

    async def _stop(self) -> None:
        running = [p for p in self._processes.values() if p.running]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            with contextlib.suppress(AssertionError):  # still running: killed below
                await process.wait_exit(STOP_SECONDS)
        for process in self._processes.values():
            process.close()
