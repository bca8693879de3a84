"""What the benchmarks share: serving an app on a random port, provisioning a tenant like an operator, and
listening to a helper process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing.process
import queue
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web

from admin.tokens import mint_token
from core.errors import Conflict
from core.storage.db import Database
from core.storage.rollups import Rollups
from gateway.settings import Settings

HOST = "127.0.0.1"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"


def local_settings(
    database: Path,
    openai_base: str,
    graph_base: str,
    *,
    jwt_secret: str,
    app_secret: str,
    secrets_key: str,
    **more: Any,
) -> Settings:
    """A gateway on a SQLite file, talking to the fake OpenAI and fake Graph served at these bases, quiet logs."""
    base = Settings(
        database_url=f"sqlite:///{database}",
        openai_api_key="sk-bench",
        openai_base_url=f"{openai_base}/v1",
        admin_jwt_secret=jwt_secret,
        secrets_key=secrets_key,
        meta_app_secret=app_secret,
        graph_api_base_url=graph_base,
        data_dir=PROJECT_DATA,
        inbox_settle_ms=0,
        log_level="WARNING",
        log_format="console",
    )
    return replace(base, **more)


ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=30)
PERSONA = "You are the friendly assistant of a small coffee shop. Answer briefly and politely."


# A per-minute limit, as every seed plan has, so each turn pays for counting its message; one no customer of the
# benches reaches.
PER_MINUTE = 100_000  # the most a plan may have


@dataclass(frozen=True, slots=True)
class BenchTenant:
    account_id: str
    bot_id: str
    api_key: str
    memory_tokens: int


async def provision(session: aiohttp.ClientSession, base: str, admin_token: str) -> BenchTenant:
    """A plan, an account, a bot and an API key, made through the admin HTTP API like an operator would."""
    plan = await admin_post(
        session,
        base,
        admin_token,
        "/plans",
        {
            "name": "bench",
            "monthly_token_limit": 10**11,
            "models": ["gpt-4o-mini"],
            "default_model": "gpt-4o-mini",
            "messages_per_minute": PER_MINUTE,
        },
    )
    account = await admin_post(session, base, admin_token, "/accounts", {"name": "Bench coffee", "plan_id": plan["id"]})
    bot = await admin_post(
        session, base, admin_token, f"/accounts/{account['id']}/bots", {"name": "Bench bot", "persona": PERSONA}
    )
    key = await admin_post(session, base, admin_token, f"/accounts/{account['id']}/api-keys", {"name": "bench"})
    return BenchTenant(account["id"], bot["id"], key["key"], int(bot["memory_tokens"]))


async def provision_with_channel(base: str, jwt_secret: str, phone_number_id: str) -> BenchTenant:
    """The bench tenant plus a WhatsApp channel on `phone_number_id`, made through the admin HTTP API."""
    token = mint_token(jwt_secret, role="admin", sub="bench", account_id=None, ttl=3600, now=int(time.time()))
    async with aiohttp.ClientSession(timeout=ADMIN_TIMEOUT) as session:
        tenant = await provision(session, base, token)
        channel = {"platform": "whatsapp", "external_id": phone_number_id, "access_token": f"token-{phone_number_id}"}
        await admin_post(session, base, token, f"/bots/{tenant.bot_id}/channels", channel)
    return tenant


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[tuple[str, web.Application]]:
    """`app` served on a random 127.0.0.1 port in this process's event loop: its base URL and the app."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        yield f"http://{HOST}:{runner.addresses[0][1]}", app
    finally:
        await runner.cleanup()


async def admin_post(
    session: aiohttp.ClientSession, base: str, admin_token: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with session.post(f"{base}/api/admin{path}", json=body, headers=headers) as resp:
        answer: dict[str, Any] = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"POST /api/admin{path} answered {resp.status}: {answer}")
        return answer


async def expect_message(
    results: Any, process: multiprocessing.process.BaseProcess, who: str, kind: str, within: float
) -> Any:
    """The next (kind, payload) a helper process puts on `results`, or a clear error naming `who`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            got, payload = await asyncio.to_thread(results.get, True, 0.5)
        except queue.Empty:
            if not process.is_alive() and results.empty():
                raise RuntimeError(f"the {who} exited with code {process.exitcode}") from None
            continue
        if got == "error":
            raise RuntimeError(f"the {who} failed:\n{payload}")
        if got != kind:
            raise RuntimeError(f"the {who} said {got!r}, expected {kind!r}")
        return payload
    raise RuntimeError(f"no {kind!r} from the {who} within {within:g} s")


async def roll_up_anew(db: Database, store: Rollups) -> int:
    """The hourly rollups made again from the rows as they are now. Benchmarks write rows with past times, which
    the gateway never does: a pass of the housekeeping leader during the fill saw part of them. A pass racing the
    reset conflicts with it, and the reset is tried again."""
    for _ in range(10):
        try:
            async with db.transaction() as tx:
                for table in ("rollups", "usage_hourly", "message_hourly"):  # the leader waits on rollups
                    await tx.execute(f"DELETE FROM {table}")  # noqa: S608 (the table names above)
            return await store.advance(int(time.time() * 1000), max_hours=10**6)
        except Conflict:
            await asyncio.sleep(1)
    raise SystemExit("the rollups could not be made again")


class GcPauses:
    """The garbage collector's collections in this process, and how long they held it, while this is entered."""

    def __init__(self) -> None:
        self.collections = 0
        self.seconds = 0.0
        self.longest = 0.0
        self._started = 0.0

    def __enter__(self) -> Self:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, _: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        took = now - self._started
        self.collections += 1
        self.seconds += took
        self.longest = max(self.longest, took)

    def __str__(self) -> str:
        return f"garbage collections in this process: {self.collections}, {self.seconds * 1000:.1f} ms in all" + (
            f", the longest {self.longest * 1000:.2f} ms" if self.collections else ""
        )
