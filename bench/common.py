"""What the benchmarks share: provisioning a tenant like an operator, and listening to a helper process."""

from __future__ import annotations

import asyncio
import multiprocessing.process
import queue
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

PERSONA = "You are the friendly assistant of a small coffee shop. Answer briefly and politely."


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
            "messages_per_minute": None,
        },
    )
    account = await admin_post(session, base, admin_token, "/accounts", {"name": "Bench coffee", "plan_id": plan["id"]})
    bot = await admin_post(
        session, base, admin_token, f"/accounts/{account['id']}/bots", {"name": "Bench bot", "persona": PERSONA}
    )
    key = await admin_post(session, base, admin_token, f"/accounts/{account['id']}/api-keys", {"name": "bench"})
    return BenchTenant(account["id"], bot["id"], key["key"], int(bot["memory_tokens"]))


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
