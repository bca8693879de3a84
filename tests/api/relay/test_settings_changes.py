"""Turns keep the bot, its account, the plan and the channel they read for a few seconds (core/storage/recent.py);
a change made through the API must still reach the very next turn, in this process and in every other."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from core.storage.doorbell import LocalDoorbell
from core.storage.recent import Recent
from gateway.keys import STORAGE
from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.harness import auth, expect, provision, relay


def persona_sent(fake: FakeOpenAI) -> str:
    return str(fake.calls[-1].messages[0]["content"])


async def test_a_changed_bot_and_plan_reach_the_next_turn(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    bot = {"bot_id": tenant.bot_id}  # named, and below unnamed (the account's default bot): both are kept
    await expect(await relay(client, tenant, "hello", **bot), 200)  # the bot and the plan are kept from here on
    await expect(await relay(client, tenant, "hello"), 200)  # and the account's default bot
    assert persona_sent(fake_openai) == "You are the assistant of Acme."
    changed = {"persona": "You are the baker's assistant."}
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json=changed, headers=auth()), 200)
    await expect(await relay(client, tenant, "hello again", **bot), 200)
    assert persona_sent(fake_openai) == "You are the baker's assistant."
    await expect(await relay(client, tenant, "and the default bot?"), 200)  # kept by account: the same change
    assert persona_sent(fake_openai) == "You are the baker's assistant."

    limited = {"messages_per_minute": 1}
    await expect(await client.patch(f"/api/admin/plans/{tenant.plan_id}", json=limited, headers=auth()), 200)
    await expect(await relay(client, tenant, "one"), 200)
    refused = await relay(client, tenant, "two")
    assert refused.status == 429 and (await refused.json())["error"]["code"] == "rate_limited"

    await expect(await client.delete(f"/api/admin/bots/{tenant.bot_id}", headers=auth()), 204)
    gone = await relay(client, tenant, "anyone there?", bot_id=tenant.bot_id)
    assert gone.status == 404


async def test_a_changed_account_reaches_the_next_turn(client: TestClient) -> None:
    """The channel worker takes the account as turns keep it: a new plan or a lock must be read again at once."""
    tenant = await provision(client)
    accounts = client.server.app[STORAGE].accounts
    assert (await accounts.current(tenant.account_id)).plan_id == tenant.plan_id  # kept from here on
    plan = await expect(
        await client.post(
            "/api/admin/plans",
            json={
                "name": "Bigger",
                "monthly_token_limit": 10**6,
                "models": ["gpt-4o-mini"],
                "default_model": "gpt-4o-mini",
            },
            headers=auth(),
        ),
        201,
    )
    moved = {"plan_id": plan["id"]}
    await expect(await client.patch(f"/api/admin/accounts/{tenant.account_id}", json=moved, headers=auth()), 200)
    assert (await accounts.current(tenant.account_id)).plan_id == plan["id"]
    locked = {"locked": True}
    await expect(await client.put(f"/api/admin/users/{tenant.account_id}/lock", json=locked, headers=auth()), 200)
    assert (await accounts.current(tenant.account_id)).locked


@pytest.mark.postgresql_only
async def test_a_bot_changed_in_one_process_answers_with_its_new_persona_in_another(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    first = await make_client(replace(settings, role="web"))
    second = await make_client(replace(settings, role="web"))
    tenant = await provision(first)
    bot = {"bot_id": tenant.bot_id}
    await expect(await relay(second, tenant, "hello", **bot), 200)  # the second process keeps the bot now
    changed = {"persona": "You are the baker's assistant."}
    await expect(await first.patch(f"/api/admin/bots/{tenant.bot_id}", json=changed, headers=auth()), 200)
    deadline = time.monotonic() + 3  # the ring travels by NOTIFY: milliseconds, not the 10 s the entry may live
    while True:
        await expect(await relay(second, tenant, "hello again", **bot), 200)
        if persona_sent(fake_openai) == "You are the baker's assistant.":
            break
        assert time.monotonic() < deadline, "the other process kept the old persona"
        await asyncio.sleep(0.05)


async def test_entries_expire_and_a_read_that_a_change_overtook_is_not_kept() -> None:
    now = [0.0]
    bell = LocalDoorbell()
    kept: Recent[str, int] = Recent(bell, "settings", seconds=10, monotonic=lambda: now[0])
    rows = {"bot": 1}
    reads = 0

    async def load(key: str) -> int:
        nonlocal reads
        reads += 1
        return rows[key]

    assert await kept.get("bot", load) == 1
    rows["bot"] = 2  # changed in the database without a ring (a ring lost with a broken connection)
    now[0] = 9.9
    assert await kept.get("bot", load) == 1 and reads == 1
    now[0] = 10.0
    assert await kept.get("bot", load) == 2 and reads == 2  # expired: read again

    gate = asyncio.Event()
    rows["other"] = 2

    async def slow_load(key: str) -> int:
        await gate.wait()
        return rows[key] * 10  # what it read before the change below

    reading = asyncio.create_task(kept.get("other", slow_load))
    await asyncio.sleep(0)
    await bell.ring("settings")  # a change commits while the read is under way
    gate.set()
    assert await reading == 20
    rows["other"] = 3
    assert await kept.get("other", load) == 3  # the overtaken read was not kept
