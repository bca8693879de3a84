"""`python -m sandbox`: the gateway for a first hour, with nothing to sign up for.

It starts the built-in fake model (sandbox/model.py) and the fake Graph API the tests use, each on a free local
port, and the gateway beside them on a database of its own (a fresh SQLite file, removed at exit, unless
--database names one). Through the gateway's own admin API it makes a demo business: a plan, an account, a bot
with a few knowledge documents, its WhatsApp number, Facebook Page and Instagram account connected, and an owner
who can sign in to the dashboard. Then the terminal is a customer's phone: each line is a message delivered to the
gateway's webhooks exactly as Meta delivers it (signed), and every reply the gateway sends through "Graph" is
printed, the bot's and those a person sends from the dashboard alike.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from admin.tokens import mint_token
from core.tokens import TokenCounter
from gateway.app import create_app
from gateway.cli import main as gateway_cli
from gateway.logging import configure_logging
from gateway.settings import Settings
from sandbox.customers import CUSTOMERS, Customer, signed
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.serving import serve_app
from sandbox.model import sandbox_model

OWNER_EMAIL = "owner@sandbox.example"
PERSONA = (
    "You are the assistant of Copper Kettle, a small coffee shop. Answer customers briefly and warmly, from the "
    "shop's own information."
)
KNOWLEDGE = (
    (
        "Opening hours",
        "Copper Kettle is open Monday to Friday from 7am to 6pm, and Saturday from 8am to 2pm. "
        "It is closed on Sundays.",
    ),
    (
        "Menu and prices",
        "An espresso costs 2.20 euros, a flat white 3.40 euros, a croissant 1.90 euros. Oat and soy milk are free.",
    ),
    ("Delivery", "Copper Kettle delivers within 3 km on weekdays between 9am and 4pm; delivery costs 2 euros."),
)
HELP = """Type a message and press Enter: it reaches the gateway as the customer's message on {channel}.
  /whatsapp, /messenger, /instagram   chat on another channel (each has its own customer)
  /help                               this text
  /quit                               stop the sandbox (Ctrl-D or Ctrl-C too)
Ask about opening hours, prices or delivery (the bot's knowledge), or ask for a person (the bot hands over, and
you answer from the dashboard's conversation page)."""


@dataclass(frozen=True, slots=True)
class Demo:
    base_url: str
    account_id: str
    bot_id: str
    password: str


def main(argv: list[str], env: Mapping[str, str], out: TextIO = sys.stdout, stdin: TextIO = sys.stdin) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the gateway's port (0: any free one)")
    parser.add_argument("--database", help="a DATABASE_URL to keep the sandbox in (default: a new file, removed)")
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
    model, graph = sandbox_model(tokens), FakeGraph(implicit_grants=True)
    with tempfile.TemporaryDirectory(prefix="nexus-sandbox-") as scratch:
        async with model.serve() as model_url, graph.serve() as graph_url:
            settings = replace(
                base,
                host=host,
                port=port,
                database_url=database or f"sqlite:///{Path(scratch) / 'sandbox.db'}",
                openai_api_key="sk-sandbox",
                openai_base_url=model_url,
                graph_api_base_url=graph_url,
                meta_app_secret=secrets.token_hex(16),
                meta_verify_token=secrets.token_hex(8),
                admin_jwt_secret=secrets.token_urlsafe(48),
                secrets_key=_fernet_key(),
                public_base_url=None,
            )
            try:
                async with serve_app(create_app(settings, tokens=tokens), host, port) as url:
                    demo = await _provision(url, settings)
                    print(_welcome(demo), file=out, flush=True)
                    await _chat(demo, settings, graph, out, stdin)
            except OSError as exc:
                print(f"error: the sandbox could not listen on {host}:{port}: {exc.strerror} (try --port 0)", file=out)
                return 1
    return 0


def _fernet_key() -> str:
    """A SECRETS_KEY for this run (channel tokens are sealed with it, as in production)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


async def _provision(url: str, settings: Settings) -> Demo:
    """The demo business, made through the admin API as an operator would (and the owner with `user add`)."""
    assert settings.admin_jwt_secret is not None
    token = mint_token(
        settings.admin_jwt_secret, role="admin", sub="sandbox", account_id=None, ttl=600, now=int(time.time())
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, headers=headers) as http:

        async def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(path, json=body) as answer:
                found: dict[str, Any] = await answer.json()
                if answer.status != 201:
                    raise RuntimeError(f"the sandbox could not set up {path}: {answer.status} {found}")
                return found

        plan = await made(
            "/api/admin/plans",
            {
                "name": "Sandbox",
                "monthly_token_limit": 200_000,
                "models": ["gpt-4o-mini"],
                "default_model": "gpt-4o-mini",
            },
        )
        account = await made("/api/admin/accounts", {"name": "Copper Kettle (demo)", "plan_id": plan["id"]})
        bot = await made(
            f"/api/admin/accounts/{account['id']}/bots",
            {"name": "Kettle assistant", "persona": PERSONA, "handoff_enabled": True},
        )
        for title, text in KNOWLEDGE:
            await made(f"/api/admin/bots/{bot['id']}/knowledge", {"title": title, "text": text})
        for customer in CUSTOMERS.values():
            # The fake Graph lets "token-<id>" control <id>, as a real Page or number's token would.
            connect = {"platform": customer.platform, "external_id": customer.business_id}
            await made(
                f"/api/admin/bots/{bot['id']}/channels", {**connect, "access_token": f"token-{customer.business_id}"}
            )
    password = secrets.token_urlsafe(9)
    env = {"DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir)}
    argv = ["user", "add", "--email", OWNER_EMAIL, "--role", "owner", "--account", account["id"]]
    said = io.StringIO()
    code = await asyncio.to_thread(gateway_cli, argv, env, said, io.StringIO(password + "\n"))
    if code != 0:
        raise RuntimeError(f"the sandbox could not add its owner: {said.getvalue()}")
    return Demo(url, account["id"], bot["id"], password)


def _welcome(demo: Demo) -> str:
    return f"""
Nexus Flow sandbox: the gateway with a built-in fake model and fake Graph API. Nothing leaves this machine.

  Dashboard   {demo.base_url}/dashboard/
  Sign in as  {OWNER_EMAIL}
  Password    {demo.password}

The demo business "Copper Kettle" has a bot with three knowledge documents, on WhatsApp, Messenger and Instagram.
{HELP.format(channel="WhatsApp")}
"""


async def _chat(demo: Demo, settings: Settings, graph: FakeGraph, out: TextIO, stdin: TextIO) -> None:
    phone = Phone(CUSTOMERS["whatsapp"])
    watcher = asyncio.create_task(_print_replies(graph, out))
    try:
        async with aiohttp.ClientSession(demo.base_url) as http:
            async for line in _lines(stdin, out, phone.prompt):
                text = line.strip()
                if text in ("/quit", "/exit"):
                    break
                if text.startswith("/"):
                    print(phone.command(text[1:].lower()), file=out, flush=True)
                elif text:
                    await _deliver(http, phone.customer, text, f"sandbox.{time.time_ns()}", settings)
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


async def _deliver(
    http: aiohttp.ClientSession, customer: Customer, text: str, message_id: str, settings: Settings
) -> None:
    assert settings.meta_app_secret is not None
    raw, headers = signed(customer.delivery(text, message_id), settings.meta_app_secret)
    async with http.post(customer.path, data=raw, headers=headers) as answer:
        if answer.status != 200:
            raise RuntimeError(f"the gateway refused the delivery: {answer.status} {await answer.text()}")


async def _print_replies(graph: FakeGraph, out: TextIO) -> None:
    """Every text the gateway sends through the fake Graph, as the customer's phone would show it."""
    names = {c.recipient: c.name for c in CUSTOMERS.values()}
    shown = 0
    while True:
        texts = graph.sent_texts()
        for recipient, text in texts[shown:]:
            print(f"\n[{names.get(recipient.lstrip('+'), recipient)}] Copper Kettle: {text}", file=out, flush=True)
        shown = len(texts)
        await asyncio.sleep(0.1)


async def _lines(stdin: TextIO, out: TextIO, prompt: Callable[[], str]) -> AsyncIterator[str]:
    """Lines typed in the terminal, read on a thread of their own so replies print while the person types (a
    daemon thread: a blocked read never keeps the process from stopping). At the end of the input the sandbox
    keeps serving the dashboard until Ctrl-C."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = stdin.readline()
            loop.call_soon_threadsafe(lines.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, name="sandbox-terminal", daemon=True).start()
    while True:
        if stdin.isatty():
            print(prompt(), end="", file=out, flush=True)
        line = await lines.get()
        if not line:
            print("\nNo more input: the dashboard stays up until Ctrl-C.", file=out, flush=True)
            await asyncio.Event().wait()
        yield line
