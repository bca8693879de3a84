"""Quota under load: concurrent relays never overspend, and failures never cost anything."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI, Fault
from tests.conftest import MakeClient
from tests.support import database
from tests.support.harness import provision, relay


async def _burst(client: TestClient, tenant: Any, n: int) -> list[tuple[int, dict[str, Any]]]:
    async def one(i: int) -> tuple[int, dict[str, Any]]:
        response = await relay(client, tenant, f"question {i}: what are your opening hours?", user_id=f"user-{i}")
        return response.status, await response.json()

    return await asyncio.gather(*(one(i) for i in range(n)))


async def test_200_concurrent_relays_near_the_limit_never_exceed_it(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    limit = 20_000
    tenant = await provision(client, plan={"monthly_token_limit": limit}, bot={"max_reply_tokens": 200})
    # ~150-token replies: each call costs less than its reservation, and 200 of them need ~2x the limit.
    fake_openai.reply_with(lambda body: " ".join(["word"] * 150))

    results = await _burst(client, tenant, 200)

    ok = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status != 200]
    assert ok and refused, "the test must actually reach the limit"
    assert all(body["error"]["code"] == "quota_exceeded" for body in refused)
    assert all("quota" in body["error"]["details"] for body in refused)
    # Refused relays never reached OpenAI.
    assert len(fake_openai.calls) == len(ok)
    state = database.quota_row(settings, tenant.account_id)
    assert state["used_tokens"] <= limit
    assert state["used_tokens"] == fake_openai.successful_usage_total()["total_tokens"]
    assert state["reserved_tokens"] == 0
    assert database.rows(settings, "SELECT * FROM quota_reservations") == []


async def test_30_percent_upstream_failures_charge_exactly_the_successes(
    make_client: MakeClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    # Every injected failure reaches the caller; only those fail (a loaded machine must not turn a slow success into
    # a timeout the fake counted as served).
    settings = replace(settings, llm_max_attempts=1, llm_attempt_timeout=30.0, llm_total_budget=60.0)
    client = await make_client(settings)
    tenant = await provision(client, plan={"monthly_token_limit": 10_000_000})
    fake_openai.failure_rate = 0.3
    fake_openai.random_faults = [
        Fault.server_error(),
        Fault.overloaded(),
        Fault.rate_limit(retry_after=0.01),
        Fault.malformed(),
        Fault.reset(),
    ]

    results = await _burst(client, tenant, 150)

    ok = [body for status, body in results if status == 200]
    failed = [body for status, body in results if status != 200]
    assert 20 <= len(failed) <= 75
    assert all(body["error"]["code"] == "upstream_unavailable" for body in failed)
    charged = fake_openai.successful_usage_total()["total_tokens"]
    state = database.quota_row(settings, tenant.account_id)
    assert state["used_tokens"] == charged == sum(body["usage"]["total_tokens"] for body in ok)
    assert state["reserved_tokens"] == 0
    assert database.rows(settings, "SELECT * FROM quota_reservations") == []
    rows = database.rows(
        settings, "SELECT outcome, COUNT(*) AS n, SUM(total_tokens) AS t FROM usage_records GROUP BY outcome"
    )
    by_outcome = {row["outcome"]: (row["n"], row["t"]) for row in rows}
    assert by_outcome["ok"] == (len(ok), charged)
    assert by_outcome["upstream_error"] == (len(failed), 0)
    # Only successful turns are remembered: two messages each.
    assert len(database.rows(settings, "SELECT id FROM messages")) == 2 * len(ok)
