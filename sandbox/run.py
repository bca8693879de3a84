"""`python -m sandbox`: the gateway for a first hour, with nothing to sign up for (sandbox/demo.py starts it with
the fakes and a demo business). The terminal is then a customer's phone: each line is a message delivered to the
gateway's webhooks exactly as Meta delivers it (signed), and every reply the gateway sends through "Graph" is
printed, the bot's and those a person sends from the dashboard alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

import aiohttp

from core.tokens import TokenCounter
from gateway.logging import configure_logging
from gateway.settings import Settings
from sandbox.customers import CUSTOMERS, Customer
from sandbox.demo import BUSINESS, OWNER_EMAIL, CannotListen, Sandbox, running_sandbox
from sandbox.fakes.graph_server import FakeGraph

HELP = """Type a message and press Enter: it reaches the gateway as the customer's message on {channel}.
  /whatsapp, /messenger, /instagram   chat on another channel (each has its own customer)
  /help                               this text
  /quit                               stop the sandbox (Ctrl-D or Ctrl-C too)
Ask about opening hours, prices or delivery (the bot's knowledge), or ask for a person (the bot hands over, and
you answer from the dashboard's conversation page)."""


def main(argv: list[str], env: Mapping[str, str], out: TextIO = sys.stdout, stdin: TextIO = sys.stdin) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the gateway's port (0: any free one)")
    parser.add_argument(
        "--database",
        help="a DATABASE_URL of a new, empty database to keep the sandbox in (default: a new SQLite file, removed at "
        "the end); each run makes its demo business anew, so give each run a database of its own",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args.host, args.port, args.database, env, out, stdin))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM: everything was closed on the way out
        return 0


async def run(host: str, port: int, database: str | None, env: Mapping[str, str], out: TextIO, stdin: TextIO) -> int:
    running = asyncio.current_task()
    assert running is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)
    base = Settings.from_env(env)
    configure_logging(env.get("LOG_LEVEL") or "ERROR", "console")  # the terminal is the chat: only errors
    tokens = TokenCounter(base.data_dir / "tokenizers")
    async with contextlib.AsyncExitStack() as stack:
        try:
            box = await stack.enter_async_context(running_sandbox(base, tokens, host, port, database))
        except CannotListen as exc:
            print(f"error: the sandbox could not listen on {exc} (try another --port, or 0 for any)", file=out)
            return 1
        print(_welcome(box), file=out, flush=True)
        await _chat(box, out, stdin)
    return 0


def _welcome(demo: Sandbox) -> str:
    return f"""
Nexus Flow sandbox: the gateway with a built-in fake model and fake Graph API. Nothing leaves this machine.

  Dashboard   {demo.base_url}/dashboard/
  Sign in as  {OWNER_EMAIL}
  Password    {demo.password}

The demo business "{BUSINESS}" has a bot with three knowledge documents, on WhatsApp, Messenger and Instagram.
{HELP.format(channel="WhatsApp")}
"""


async def _chat(box: Sandbox, out: TextIO, stdin: TextIO) -> None:
    phone = Phone(CUSTOMERS["whatsapp"])
    watcher = asyncio.create_task(_print_replies(box.graph, out))
    try:
        async with aiohttp.ClientSession() as http:
            async for line in _lines(stdin, out, phone.prompt):
                text = line.strip()
                if text in ("/quit", "/exit"):
                    break
                if text.startswith("/"):
                    print(phone.command(text[1:].lower()), file=out, flush=True)
                elif text:
                    try:
                        await box.deliver(http, phone.customer, text)
                    except (RuntimeError, aiohttp.ClientError) as exc:  # said, and the chat goes on
                        print(f"The message did not reach the gateway: {exc}", file=out, flush=True)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


@dataclass(slots=True)
class Phone:
    """The terminal's customer: whose phone it is now."""

    customer: Customer

    def prompt(self) -> str:
        return f"{self.customer.name} > "

    def command(self, name: str) -> str:
        if name == "help":
            return HELP.format(channel=self.customer.name)
        chosen = CUSTOMERS.get(name)
        if chosen is None:
            return "Unknown command; /help lists them."
        self.customer = chosen
        return f"Now chatting on {chosen.name}."


async def _print_replies(graph: FakeGraph, out: TextIO) -> None:
    """Every text the gateway sends through the fake Graph, as the customer's phone would show it."""
    names = {c.recipient: c.name for c in CUSTOMERS.values()}
    seen = 0
    while True:
        requests = graph.requests[seen:]  # only what arrived since the last look
        seen += len(requests)
        for call in requests:
            if call.ok and call.kind == "text" and call.recipient and call.text:
                name = names.get(call.recipient.lstrip("+"), call.recipient)
                print(f"\n[{name}] {BUSINESS}: {call.text}", file=out, flush=True)
        await asyncio.sleep(0.1)


async def _lines(stdin: TextIO, out: TextIO, prompt: Callable[[], str]) -> AsyncIterator[str]:
    """Lines typed in the terminal, read on a thread of their own so replies print while the person types (a
    daemon thread: a blocked read never keeps the process from stopping). At the end of the input the sandbox
    keeps serving the dashboard until Ctrl-C."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        try:
            while line := stdin.readline():
                loop.call_soon_threadsafe(lines.put_nowait, line)
        except (OSError, ValueError) as exc:  # input that is not text, or closed under us: the end of the input
            said = f"The terminal's input cannot be read: {exc}"
            loop.call_soon_threadsafe(functools.partial(print, said, file=out, flush=True))
        finally:
            loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read, name="sandbox-terminal", daemon=True).start()
    while True:
        if stdin.isatty():
            print(prompt(), end="", file=out, flush=True)
        line = await lines.get()
        if not line:
            print("\nNo more input: the dashboard stays up until Ctrl-C.", file=out, flush=True)
            await asyncio.Event().wait()
        yield line
