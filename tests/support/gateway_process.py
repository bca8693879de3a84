"""The real gateway as a child process (`python -m gateway`, the Procfile's command), for crash and shutdown tests.

The child's output goes to a log file, never a pipe: a chatty process must not block on a full pipe buffer.
Waiting is done by polling, so an async test's event loop (where the fake OpenAI and Graph servers run) keeps
serving while the child works, drains or dies.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GatewayProcess:
    """One `python -m gateway [args]` command, started (and restarted) with the same environment and log file;
    `args` such as ("serve", "--role", "worker")."""

    def __init__(
        self, env: dict[str, str], log_path: Path, cwd: Path, args: tuple[str, ...] = (), python: str = sys.executable
    ) -> None:
        self.env = env
        self.python = python  # the interpreter (a virtual environment's) the command runs with
        self.args = args
        self.log_path = log_path
        self.cwd = cwd
        self.base_url = f"http://127.0.0.1:{env['PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            # The child keeps its own copy of the log descriptor; its arguments are the test's own, never input.
            self.proc = subprocess.Popen(  # noqa: S603
                [self.python, "-m", "gateway", *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.base_url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                assert self.running, f"the gateway exited with {self.returncode} before it was ready:\n{self.log()}"
                assert time.monotonic() < deadline, f"the gateway was not ready in {within} s:\n{self.log()}"
                await asyncio.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        """The exit status, waiting without blocking the event loop; fails after `within` seconds."""
        assert self.proc is not None
        deadline = time.monotonic() + within
        while (code := self.proc.poll()) is None:
            assert time.monotonic() < deadline, f"the gateway did not exit in {within} s:\n{self.log()}"
            await asyncio.sleep(0.02)
        return code

    def close(self) -> None:
        """For `finally`: kill the child if it still runs, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]
