"""Bots through the admin API: defaults, the plan's models, what the model is told, deletion, the relay's default."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.admin_api import ADMIN, expect_error, get, patch, post
from tests.support.harness import auth, expect, provision, relay


async def test_bot_create_defaults_and_plan_models(client: TestClient) -> None:
    tenant = await provision(client)
    path = f"/accounts/{tenant.account_id}/bots"
    bot = await expect(await post(client, path, {"name": "Helper", "persona": "Be kind."}), 201)
    assert (bot["account_id"], bot["name"], bot["persona"]) == (tenant.account_id, "Helper", "Be kind.")
    assert (bot["max_reply_tokens"], bot["memory_tokens"]) == (300, 2000)
    assert isinstance(bot["fallback_message"], str) and bot["fallback_message"].strip()
    assert bot["model"] is None and bot["temperature"] is None
    assert await get(client, f"/bots/{bot['id']}") == bot

    error = await expect_error(await post(client, path, {"name": "Big", "persona": "x", "model": "o3-pro"}), 400)
    assert error["details"]["field"] == "model"
    assert await expect(await post(client, path, {"name": "Pro", "persona": "x", "model": "gpt-4.1"}), 201)
    assert sorted(b["name"] for b in (await get(client, path))["bots"]) == ["Acme bot", "Helper", "Pro"]


async def test_bot_patch_changes_what_the_model_is_told(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    path = f"/bots/{tenant.bot_id}"
    await expect_error(await patch(client, path, {"model": "o3-pro"}), 400)
    updated = await expect(await patch(client, path, {"persona": "You are a pirate.", "model": "gpt-4.1"}), 200)
    assert (updated["persona"], updated["model"], updated["max_reply_tokens"]) == ("You are a pirate.", "gpt-4.1", 300)
    assert await get(client, path) == updated

    reply = await expect(await relay(client, tenant, "ahoy"), 200)
    assert reply["model"] == "gpt-4.1"
    assert fake_openai.calls[-1].messages[0] == {"role": "system", "content": "You are a pirate."}


async def test_deleted_bot_is_gone_for_admin_and_relay(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await client.delete(f"{ADMIN}/bots/{tenant.bot_id}", headers=auth()), 204)

    await expect_error(await client.get(f"{ADMIN}/bots/{tenant.bot_id}", headers=auth()), 404)
    await expect_error(await patch(client, f"/bots/{tenant.bot_id}", {"name": "zombie"}), 404)
    await expect_error(await client.delete(f"{ADMIN}/bots/{tenant.bot_id}", headers=auth()), 404)
    assert (await get(client, f"/accounts/{tenant.account_id}/bots"))["bots"] == []
    await expect_error(await relay(client, tenant, "hello?", bot_id=tenant.bot_id), 404)
    assert fake_openai.calls == []


class FrozenClock:
    """Every write lands in the same millisecond, as two quick API calls from a script can."""

    def __init__(self) -> None:
        self._now = int(time.time() * 1000)

    def now_ms(self) -> int:
        return self._now


async def test_relay_default_is_the_first_bot_created_even_within_one_millisecond(  # regression
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Random ids made deterministic: the later bot gets the smaller id (as it does half the time for real).
    ids = iter(["bot_" + "f" * 20, "bot_" + "0" * 20])
    monkeypatch.setattr("core.storage.bots.new_id", lambda prefix: next(ids))
    client = await make_client(settings, clock=FrozenClock())
    tenant = await provision(client)
    await expect(await post(client, f"/accounts/{tenant.account_id}/bots", {"name": "Second", "persona": "2nd"}), 201)

    assert (await expect(await relay(client, tenant, "hi"), 200))["bot_id"] == tenant.bot_id
