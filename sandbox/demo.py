"""The sandbox's gateway: the built-in fake model (sandbox/model.py) and the fake Graph API the tests use, each on a
free local port, the gateway beside them on a database of its own (a fresh SQLite file, removed at the end, unless
a DATABASE_URL is given), and a demo business made through the gateway's own admin API: a plan, an account, a bot
with a few knowledge documents, its WhatsApp number, Facebook Page and Instagram account connected, and an owner
who can sign in to the dashboard (added with `user add`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from admin.tokens import mint_token
from core.tokens import TokenCounter
from gateway.app import create_app
from gateway.cli import main as gateway_cli
from gateway.settings import Settings
from sandbox.customers import CUSTOMERS, Customer, signed
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from sandbox.fakes.serving import serve_app
from sandbox.model import sandbox_model

OWNER_EMAIL = "owner@sandbox.example"
BUSINESS = "Copper Kettle"
PERSONA = (
    "You are the assistant of Copper Kettle, a small coffee shop. Answer customers briefly and warmly, from the "
    "shop's own information."
)
KNOWLEDGE = (
    (
        "Opening hours",
        "Copper Kettle is open Monday to Friday from 7am to 6pm, and Saturday from 8am to 2pm. It is closed on "
        "Sundays.",
    ),
    (
        "Menu and prices",
        "An espresso costs 2.20 euros, a flat white 3.40 euros, a croissant 1.90 euros. Oat and soy milk are free.",
    ),
    ("Delivery", "Copper Kettle delivers within 3 km on weekdays between 9am and 4pm; delivery costs 2 euros."),
)


class CannotListen(Exception):
    """The gateway's port is taken (or not allowed)."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    base_url: str  # the gateway's
    account_id: str
    bot_id: str
    password: str  # the owner's (OWNER_EMAIL)
    settings: Settings
    model: FakeOpenAI
    graph: FakeGraph

    async def deliver(self, http: aiohttp.ClientSession, customer: Customer, text: str) -> None:
        """`text` from `customer`, delivered to the gateway's webhook as Meta delivers it."""
        assert self.settings.meta_app_secret is not None
        body = customer.delivery(text, f"sandbox.{customer.platform}.{time.time_ns()}")
        raw, headers = signed(body, self.settings.meta_app_secret)
        async with http.post(self.base_url + customer.path, data=raw, headers=headers) as answer:
            if answer.status != 200:
                raise RuntimeError(f"the gateway refused the delivery: {answer.status} {await answer.text()}")

    async def add_person(self, email: str, role: str, password: str, account_id: str | None = None) -> None:
        """`python -m gateway user add`, as an operator runs it, on the sandbox's database."""
        env = {"DATABASE_URL": self.settings.database_url, "DATA_DIR": str(self.settings.data_dir)}
        argv = ["user", "add", "--email", email, "--role", role, *(["--account", account_id] if account_id else [])]
        said = io.StringIO()
        code = await asyncio.to_thread(gateway_cli, argv, env, said, io.StringIO(password + "\n"))
        if code != 0:
            raise RuntimeError(f"the sandbox could not add {email}: {said.getvalue()}")


@contextlib.asynccontextmanager
async def running_sandbox(
    base: Settings, tokens: TokenCounter, host: str = "127.0.0.1", port: int = 0, database: str | None = None
) -> AsyncIterator[Sandbox]:
    """The fakes, the gateway (CannotListen: its port is taken) and the demo business, until the block ends."""
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
                secrets_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),  # channel tokens are sealed with it
                public_base_url=None,
            )
            async with contextlib.AsyncExitStack() as stack:
                try:
                    url = await stack.enter_async_context(serve_app(create_app(settings, tokens=tokens), host, port))
                except OSError as exc:
                    raise CannotListen(f"{host}:{port}: {exc.strerror or exc}") from None
                account_id, bot_id = await _provision(url, settings)
                box = Sandbox(url, account_id, bot_id, secrets.token_urlsafe(9), settings, model, graph)
                await box.add_person(OWNER_EMAIL, "owner", box.password, account_id)
                yield box


async def _provision(url: str, settings: Settings) -> tuple[str, str]:
    """The demo business, made through the admin API as an operator would: the account's and the bot's ids."""
    assert settings.admin_jwt_secret is not None
    token = mint_token(
        settings.admin_jwt_secret, role="admin", sub="sandbox", account_id=None, ttl=600, now=int(time.time())
    )
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:

        async def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(path, json=body) as answer:
                found: dict[str, Any] = await answer.json()
                if answer.status != 201:
                    raise RuntimeError(f"the sandbox could not set up {path}: {answer.status} {found}")
                return found

        plan = {"name": "Sandbox", "monthly_token_limit": 200_000, "models": ["gpt-4o-mini"]}
        plan = await made("/api/admin/plans", {**plan, "default_model": "gpt-4o-mini"})
        account = await made("/api/admin/accounts", {"name": f"{BUSINESS} (demo)", "plan_id": plan["id"]})
        bot = await made(
            f"/api/admin/accounts/{account['id']}/bots",
            {"name": "Kettle assistant", "persona": PERSONA, "handoff_enabled": True},
        )
        for title, text in KNOWLEDGE:
            await made(f"/api/admin/bots/{bot['id']}/knowledge", {"title": title, "text": text})
        for customer in CUSTOMERS.values():
            # The fake Graph lets "token-<id>" control <id>, as a real Page's or number's token would.
            channel = {"platform": customer.platform, "external_id": customer.business_id}
            await made(
                f"/api/admin/bots/{bot['id']}/channels", {**channel, "access_token": f"token-{customer.business_id}"}
            )
    return account["id"], bot["id"]
