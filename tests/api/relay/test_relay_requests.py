"""Relay requests that must be refused: clear errors, the contract's codes, and no OpenAI call."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.harness import auth, expect, provision, relay


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nxk_not-a-real-key"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
)
async def test_missing_or_unknown_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    await provision(client)
    response = await client.post("/api/messages/relay", json={"user_id": "u", "message": "hi"}, headers=headers)
    body = await expect(response, 401)
    assert body["error"]["code"] == "unauthorized"


async def test_admin_jwt_is_not_an_api_key(client: TestClient) -> None:
    await provision(client)
    response = await client.post("/api/messages/relay", json={"user_id": "u", "message": "hi"}, headers=auth())
    await expect(response, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "hi"}, "user_id"),
        ({"user_id": "u"}, "message"),
        ({"user_id": "u", "message": "   "}, "message"),
        ({"user_id": 42, "message": "hi"}, "user_id"),
        ({"user_id": "u", "message": ["hi"]}, "message"),
        ({"user_id": "u", "message": "x" * 4001}, "message"),
        ({"user_id": "u", "message": "nul \x00 byte"}, "message"),
        ({"user_id": "u", "message": "lone surrogate \ud800"}, "message"),
        ({"user_id": "u", "message": "hi", "account_id": "acc_other"}, "account_id"),
        # bot_id may be left out (the first bot answers), but null is a client's mistake, not "the default".
        ({"user_id": "u", "message": "hi", "bot_id": None}, "bot_id"),
    ],
)
async def test_bad_bodies_are_400_and_name_the_field(
    client: TestClient, fake_openai: FakeOpenAI, body: dict[str, object], field: str
) -> None:
    tenant = await provision(client)
    response = await client.post("/api/messages/relay", json=body, headers=tenant.key_header)
    error = (await expect(response, 400))["error"]
    assert error["code"] == "bad_request"
    assert field in error["message"]
    assert fake_openai.calls == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'{"user_id": "u", "message": NaN}'])
async def test_unparseable_bodies_are_400(client: TestClient, raw: bytes) -> None:
    tenant = await provision(client)
    response = await client.post(
        "/api/messages/relay", data=raw, headers={**tenant.key_header, "Content-Type": "application/json"}
    )
    assert (await expect(response, 400))["error"]["code"] == "bad_request"


async def test_body_over_the_limit_is_413(client: TestClient) -> None:
    tenant = await provision(client)
    headers = {**tenant.key_header, "Content-Type": "application/json"}
    response = await client.post("/api/messages/relay", data=b"x" * (300 * 1024), headers=headers)
    assert (await expect(response, 413))["error"]["code"] == "payload_too_large"


async def test_another_accounts_bot_is_404(client: TestClient, fake_openai: FakeOpenAI) -> None:
    mine = await provision(client, name="Mine")
    theirs = await provision(client, name="Theirs")
    response = await relay(client, mine, "hi", bot_id=theirs.bot_id)
    assert (await expect(response, 404))["error"]["code"] == "not_found"
    assert fake_openai.calls == []


async def test_bot_id_selects_among_the_accounts_bots(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    second = await expect(
        await client.post(
            f"/api/admin/accounts/{tenant.account_id}/bots",
            json={"name": "Second", "persona": "You are the second bot."},
            headers=auth(),
        ),
        201,
    )
    body = await expect(await relay(client, tenant, "hi", bot_id=second["id"]), 200)
    assert body["bot_id"] == second["id"]
    assert fake_openai.calls[0].messages[0]["content"] == "You are the second bot."
    body = await expect(await relay(client, tenant, "hi"), 200)
    assert body["bot_id"] == tenant.bot_id  # no bot_id: the account's first bot


async def test_account_without_a_bot_gets_a_clear_404(client: TestClient) -> None:
    tenant = await provision(client)
    await expect(await client.delete(f"/api/admin/bots/{tenant.bot_id}", headers=auth()), 204)
    error = (await expect(await relay(client, tenant, "hi"), 404))["error"]
    assert "no bot" in error["message"]


async def test_per_minute_limit_answers_429_with_retry_after(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client, plan={"messages_per_minute": 2})
    await expect(await relay(client, tenant, "one"), 200)
    await expect(await relay(client, tenant, "two"), 200)
    response = await relay(client, tenant, "three")
    error = (await expect(response, 429))["error"]
    assert error["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert len(fake_openai.calls) == 2
    # The limit is per customer: another customer of the same bot is still served.
    await expect(await relay(client, tenant, "hello", user_id="customer-2"), 200)


async def test_quota_exceeded_is_429_with_the_quota_block(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client, plan={"monthly_token_limit": 100})  # less than one reservation
    error = (await expect(await relay(client, tenant, "hi"), 429))["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"]["quota"]["limit_tokens"] == 100
    assert error["details"]["quota"]["used_tokens"] == 0
    assert fake_openai.calls == []


async def test_without_openai_key_the_relay_says_not_configured(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, openai_api_key=None))
    tenant = await provision(client)
    error = (await expect(await relay(client, tenant, "hi"), 503))["error"]
    assert error["code"] == "not_configured"
    assert "OPENAI_API_KEY" in error["message"]
