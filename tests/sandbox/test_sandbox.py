"""`python -m sandbox` as a newcomer runs it: the process, its terminal chat, and its dashboard."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.paths import PROJECT_ROOT

# The sandbox always keeps its data in a SQLite file of its own: one run of this test is enough.
pytestmark = pytest.mark.any_backend


class Terminal:
    """The sandbox's standard input and output, as a person at a terminal would use them."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen = ""

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait_for(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while (found := re.search(pattern, self.seen)) is None:
                chunk = await self.proc.stdout.read(4096)
                assert chunk, f"the sandbox exited: {self.seen}"
                self.seen += chunk.decode()
        return found


async def test_a_newcomer_chats_as_customers_and_answers_one_from_the_dashboard(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "OPENAI", "META_", "GRAPH_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        "0",
        cwd=PROJECT_ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    terminal = Terminal(proc)
    try:
        dashboard = (await terminal.wait_for(r"Dashboard +(\S+)")).group(1)
        password = (await terminal.wait_for(r"Password +(\S+)")).group(1)
        await terminal.type("When are you open on Saturday?")
        await terminal.wait_for(r"\[WhatsApp\] Copper Kettle: From what I know: .*Saturday from 8am to 2pm")
        await terminal.type("/instagram")
        await terminal.type("Can I talk to a person?")
        await terminal.wait_for(r"\[Instagram\] Copper Kettle: I'm passing you to a member of our team")

        base = dashboard.removesuffix("/dashboard/")
        # A browser keeps cookies of a numeric address too (aiohttp's jar, by default, does not).
        async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get("/dashboard/login") as form:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text()).group(1)  # type: ignore[union-attr]
            fields = {"csrf": csrf, "email": "owner@sandbox.example", "password": password}
            async with browser.post("/dashboard/login", data=fields) as signed_in:
                overview = await signed_in.text()
                assert signed_in.status == 200 and 'data-figure="messages">2<' in overview
            async with browser.get("/dashboard/conversations?platform=instagram") as inbox:
                page = await inbox.text()
                assert "Paused: the bot handed the conversation to a person" in page
                contact = re.search(r'href="/dashboard/conversations/([^"]+)"', page).group(1)  # type: ignore[union-attr]
            async with browser.get(f"/dashboard/conversations/{contact}") as thread:
                page = await thread.text()
                csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                key = re.search(r'name="key" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            reply = {"csrf": csrf, "key": key, "text": "Hello, this is Sam from the shop!"}
            async with browser.post(f"/dashboard/conversations/{contact}/messages", data=reply) as sent:
                assert sent.status == 200
        await terminal.wait_for(r"\[Instagram\] Copper Kettle: Hello, this is Sam from the shop!")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0, terminal.seen
