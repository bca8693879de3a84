"""Provisioning through the admin API, as an operator and the businesses they serve would notice it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import Tenant, auth, expect, provision, relay

ADMIN = "/api/admin"
PLAN = {
    "name": "starter",
    "monthly_token_limit": 50_000,
    "models": ["gpt-4o-mini", "gpt-4.1"],
    "default_model": "gpt-4o-mini",
    "overage_percent": 10,
    "messages_per_minute": 30,
}
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
}


async def fail(response: Any, status: int) -> dict[str, Any]:
    """The answer has `status` and the contract's error envelope with the matching code."""
    body = await expect(response, status)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == CODES[status], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def get(client: TestClient, path: str) -> Any:
    return await expect(await client.get(ADMIN + path, headers=auth()), 200)


async def post(client: TestClient, path: str, body: Any) -> Any:
    return await client.post(ADMIN + path, json=body, headers=auth())


async def patch(client: TestClient, path: str, body: Any) -> Any:
    return await client.patch(ADMIN + path, json=body, headers=auth())


# --- plans --------------------------------------------------------------------------------------------------------


async def test_plan_crud(client: TestClient) -> None:
    created = await expect(await post(client, "/plans", PLAN), 201)
    assert isinstance(created["id"], str) and created["id"]
    assert {k: created[k] for k in PLAN} == PLAN
    assert await get(client, f"/plans/{created['id']}") == created
    assert (await get(client, "/plans"))["plans"] == [created]

    # Partial update: only the named field moves.
    updated = await expect(await patch(client, f"/plans/{created['id']}", {"monthly_token_limit": 80_000}), 200)
    assert updated["monthly_token_limit"] == 80_000
    assert {k: updated[k] for k in PLAN if k != "monthly_token_limit"} == {
        k: v for k, v in PLAN.items() if k != "monthly_token_limit"
    }
    assert await get(client, f"/plans/{created['id']}") == updated

    await expect(await client.delete(f"{ADMIN}/plans/{created['id']}", headers=auth()), 204)
    await fail(await client.get(f"{ADMIN}/plans/{created['id']}", headers=auth()), 404)
    await fail(await client.delete(f"{ADMIN}/plans/{created['id']}", headers=auth()), 404)
    assert (await get(client, "/plans"))["plans"] == []


async def test_plan_optional_fields_have_defaults(client: TestClient) -> None:
    body = {k: PLAN[k] for k in ("name", "monthly_token_limit", "models", "default_model")}
    created = await expect(await post(client, "/plans", body), 201)
    assert created["overage_percent"] == 0
    assert created["messages_per_minute"] is None


async def test_duplicate_plan_name_is_409(client: TestClient) -> None:
    first = await expect(await post(client, "/plans", PLAN), 201)
    await fail(await post(client, "/plans", {**PLAN, "monthly_token_limit": 1}), 409)
    other = await expect(await post(client, "/plans", {**PLAN, "name": "pro"}), 201)
    # Renaming onto a taken name is the same conflict.
    await fail(await patch(client, f"/plans/{other['id']}", {"name": "starter"}), 409)
    assert {p["id"] for p in (await get(client, "/plans"))["plans"]} == {first["id"], other["id"]}
    assert (await get(client, f"/plans/{first['id']}"))["monthly_token_limit"] == PLAN["monthly_token_limit"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"default_model": "gpt-5"}, "default_model"),
        ({"models": []}, "models"),
        ({"models": ["gpt-4o-mini", 7]}, "models"),
        ({"monthly_token_limit": -1}, "monthly_token_limit"),
        ({"monthly_token_limit": "lots"}, "monthly_token_limit"),
        ({"overage_percent": 101}, "overage_percent"),
        ({"messages_per_minute": 0}, "messages_per_minute"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
    ],
)
async def test_invalid_plan_is_400_naming_the_field(client: TestClient, change: dict[str, Any], field: str) -> None:
    error = await fail(await post(client, "/plans", {**PLAN, **change}), 400)
    assert error["details"]["field"] == field
    assert (await get(client, "/plans"))["plans"] == []


async def test_plan_patch_keeps_default_model_within_models(client: TestClient) -> None:
    plan = await expect(await post(client, "/plans", PLAN), 201)
    await fail(await patch(client, f"/plans/{plan['id']}", {"default_model": "gpt-5"}), 400)
    await fail(await patch(client, f"/plans/{plan['id']}", {"models": ["gpt-4.1"]}), 400)  # drops the default
    await fail(await patch(client, f"/plans/{plan['id']}", {}), 400)  # nothing to update
    assert await get(client, f"/plans/{plan['id']}") == plan


async def test_plan_in_use_cannot_be_deleted(client: TestClient) -> None:
    tenant = await provision(client)
    error = await fail(await client.delete(f"{ADMIN}/plans/{tenant.plan_id}", headers=auth()), 409)
    assert "plan" in error["message"]
    assert (await get(client, f"/plans/{tenant.plan_id}"))["id"] == tenant.plan_id


# --- accounts -----------------------------------------------------------------------------------------------------


async def test_account_with_unknown_plan_is_404_and_not_created(client: TestClient) -> None:
    await fail(await post(client, "/accounts", {"name": "Ghost", "plan_id": "pln_00000000000000000000"}), 404)
    assert (await get(client, "/accounts"))["accounts"] == []


async def test_account_create_and_quota_block(client: TestClient) -> None:
    plan = await expect(await post(client, "/plans", PLAN), 201)
    account = await expect(
        await post(client, "/accounts", {"name": "Café Luna", "plan_id": plan["id"], "email": "owner@luna.example"}),
        201,
    )
    assert (account["name"], account["plan_id"], account["email"], account["locked"]) == (
        "Café Luna",
        plan["id"],
        "owner@luna.example",
        False,
    )
    shown = await get(client, f"/accounts/{account['id']}")
    quota = shown.pop("quota")
    assert shown == account
    # The allowance is the monthly tokens plus the plan's 10 % overage band; nothing used yet.
    assert quota["limit_tokens"] == 55_000
    assert quota["used_tokens"] == 0
    assert quota["remaining_tokens"] == 55_000
    assert quota["credit_balance_tokens"] == 0
    assert quota["period_end"].endswith("T00:00:00Z")


async def test_account_patch_renames_and_moves_plan(client: TestClient) -> None:
    tenant = await provision(client)
    pro = await expect(await post(client, "/plans", {**PLAN, "name": "pro"}), 201)
    path = f"/accounts/{tenant.account_id}"
    await fail(await patch(client, path, {"plan_id": "pln_00000000000000000000"}), 404)
    updated = await expect(await patch(client, path, {"name": "Acme GmbH", "plan_id": pro["id"]}), 200)
    assert (updated["name"], updated["plan_id"]) == ("Acme GmbH", pro["id"])
    assert (await get(client, path))["quota"]["limit_tokens"] == 55_000


async def test_locked_account_cannot_relay_until_unlocked(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "before"), 200)
    lock = f"{ADMIN}/users/{tenant.account_id}/lock"

    locked = await expect(await client.put(lock, json={"locked": True}, headers=auth()), 200)
    assert locked["locked"] is True
    assert (await get(client, f"/accounts/{tenant.account_id}"))["locked"] is True
    await fail(await client.put(lock, json={"locked": "yes"}, headers=auth()), 400)

    error = await expect(await relay(client, tenant, "while locked"), 403)
    assert error["error"]["code"] == "account_locked"
    assert len(fake_openai.calls) == 1  # nothing went to the model for the locked account

    unlocked = await expect(await client.put(lock, json={"locked": False}, headers=auth()), 200)
    assert unlocked["locked"] is False
    assert (await expect(await relay(client, tenant, "after"), 200))["reply"] == "You said: after"


# --- API keys -----------------------------------------------------------------------------------------------------


def _all_text(settings: Settings) -> list[str]:
    """Every text or blob value of every table in the database."""
    values: list[str] = []
    for table in database.table_names(settings):
        for row in database.rows(settings, f'SELECT * FROM "{table}"'):
            values += [v if isinstance(v, str) else v.decode("latin-1") for v in row if isinstance(v, (str, bytes))]
    return values


async def test_api_key_is_shown_once_and_stored_only_as_hash(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client)
    path = f"{ADMIN}/accounts/{tenant.account_id}/api-keys"
    issued = await expect(await client.post(path, json={"name": "website"}, headers=auth()), 201)
    key = issued["key"]
    assert key.startswith("nxk_") and len(key) > 40
    assert issued["name"] == "website" and key.startswith(issued["prefix"])

    listed = await get(client, f"/accounts/{tenant.account_id}/api-keys")
    assert {k["id"] for k in listed["api_keys"]} >= {issued["id"]}
    assert all("key" not in k for k in listed["api_keys"])
    secret_part = key[len(issued["prefix"]) :]
    assert secret_part not in json.dumps(listed)

    # The new key works, so what is stored must be enough to check it...
    await expect(await relay(client, Tenant(tenant.plan_id, tenant.account_id, tenant.bot_id, key), "hi"), 200)
    # ...and yet the database holds no plaintext, only the SHA-256 of every key.
    text = _all_text(settings)
    for plaintext in (key, tenant.api_key):
        assert not any(plaintext[12:] in value for value in text)
    hashes = {r[0] for r in database.rows(settings, "SELECT key_hash FROM api_keys")}
    assert hashes == {hashlib.sha256(k.encode()).hexdigest() for k in (key, tenant.api_key)}


async def test_revoked_key_is_refused_and_other_keys_keep_working(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    path = f"{ADMIN}/accounts/{tenant.account_id}/api-keys"
    spare = await expect(await client.post(path, headers=auth()), 201)
    [first_id] = [
        k["id"]
        for k in (await get(client, f"/accounts/{tenant.account_id}/api-keys"))["api_keys"]
        if k["id"] != spare["id"]
    ]
    await expect(await relay(client, tenant, "before"), 200)

    await expect(await client.delete(f"{path}/{first_id}", headers=auth()), 204)

    await fail(await relay(client, tenant, "after"), 401)
    spare_tenant = Tenant(tenant.plan_id, tenant.account_id, tenant.bot_id, spare["key"])
    await expect(await relay(client, spare_tenant, "spare"), 200)
    listed = {k["id"]: k for k in (await get(client, f"/accounts/{tenant.account_id}/api-keys"))["api_keys"]}
    assert listed[first_id]["revoked_at"] is not None
    assert listed[spare["id"]]["revoked_at"] is None
    await fail(await client.delete(f"{path}/key_00000000000000000000", headers=auth()), 404)


# --- credits ------------------------------------------------------------------------------------------------------


async def test_purchase_raises_the_relay_quota(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    before = (await expect(await relay(client, tenant, "one"), 200))["quota"]
    path = f"{ADMIN}/accounts/{tenant.account_id}/credits"

    entry = await expect(
        await client.post(path, json={"tokens": 5_000, "kind": "purchase", "note": "invoice 42"}, headers=auth()), 201
    )
    assert (entry["account_id"], entry["kind"], entry["tokens"], entry["note"]) == (
        tenant.account_id,
        "purchase",
        5_000,
        "invoice 42",
    )

    after = (await expect(await relay(client, tenant, "two"), 200))["quota"]
    assert after["limit_tokens"] == before["limit_tokens"] + 5_000
    ledger = await get(client, f"/accounts/{tenant.account_id}/credits")
    assert ledger["balance_tokens"] == 5_000
    assert ledger["entries"] == [entry]
    assert (await get(client, f"/accounts/{tenant.account_id}"))["quota"]["credit_balance_tokens"] == 5_000

    # An operator's negative adjustment is allowed and moves the balance.
    await expect(await client.post(path, json={"tokens": -1_000, "kind": "adjustment"}, headers=auth()), 201)
    assert (await get(client, f"/accounts/{tenant.account_id}/credits"))["balance_tokens"] == 4_000


@pytest.mark.parametrize(
    "body",
    [
        {"tokens": -5_000, "kind": "purchase"},
        {"tokens": -5_000, "kind": "grant"},
        {"tokens": 0, "kind": "purchase"},
        {"tokens": 0, "kind": "adjustment"},
        {"tokens": 5_000, "kind": "overage"},
        {"tokens": 5_000, "kind": "usage"},
        {"tokens": 5_000, "kind": "gift"},
        {"tokens": 5_000.5, "kind": "purchase"},
        {"tokens": True, "kind": "purchase"},
        {"kind": "purchase"},
    ],
    ids=lambda b: "-".join(f"{k}={v}" for k, v in b.items()),
)
async def test_invalid_credit_entry_is_400_and_not_booked(client: TestClient, body: dict[str, Any]) -> None:
    tenant = await provision(client)
    await fail(await post(client, f"/accounts/{tenant.account_id}/credits", body), 400)
    assert await get(client, f"/accounts/{tenant.account_id}/credits") == {"balance_tokens": 0, "entries": []}


# --- bots ---------------------------------------------------------------------------------------------------------


async def test_bot_create_defaults_and_plan_models(client: TestClient) -> None:
    tenant = await provision(client)
    path = f"/accounts/{tenant.account_id}/bots"
    bot = await expect(await post(client, path, {"name": "Helper", "persona": "Be kind."}), 201)
    assert (bot["account_id"], bot["name"], bot["persona"]) == (tenant.account_id, "Helper", "Be kind.")
    assert (bot["max_reply_tokens"], bot["memory_tokens"]) == (300, 2000)
    assert isinstance(bot["fallback_message"], str) and bot["fallback_message"].strip()
    assert bot["model"] is None and bot["temperature"] is None
    assert await get(client, f"/bots/{bot['id']}") == bot

    error = await fail(await post(client, path, {"name": "Big", "persona": "x", "model": "o3-pro"}), 400)
    assert error["details"]["field"] == "model"
    assert await expect(await post(client, path, {"name": "Pro", "persona": "x", "model": "gpt-4.1"}), 201)
    assert sorted(b["name"] for b in (await get(client, path))["bots"]) == ["Acme bot", "Helper", "Pro"]


async def test_bot_patch_changes_what_the_model_is_told(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    path = f"/bots/{tenant.bot_id}"
    await fail(await patch(client, path, {"model": "o3-pro"}), 400)
    updated = await expect(await patch(client, path, {"persona": "You are a pirate.", "model": "gpt-4.1"}), 200)
    assert (updated["persona"], updated["model"], updated["max_reply_tokens"]) == ("You are a pirate.", "gpt-4.1", 300)
    assert await get(client, path) == updated

    reply = await expect(await relay(client, tenant, "ahoy"), 200)
    assert reply["model"] == "gpt-4.1"
    assert fake_openai.calls[-1].messages[0] == {"role": "system", "content": "You are a pirate."}


async def test_deleted_bot_is_gone_for_admin_and_relay(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await client.delete(f"{ADMIN}/bots/{tenant.bot_id}", headers=auth()), 204)

    await fail(await client.get(f"{ADMIN}/bots/{tenant.bot_id}", headers=auth()), 404)
    await fail(await patch(client, f"/bots/{tenant.bot_id}", {"name": "zombie"}), 404)
    await fail(await client.delete(f"{ADMIN}/bots/{tenant.bot_id}", headers=auth()), 404)
    assert (await get(client, f"/accounts/{tenant.account_id}/bots"))["bots"] == []
    await fail(await relay(client, tenant, "hello?", bot_id=tenant.bot_id), 404)
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


# --- bodies -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"[1, 2]", b'"plan"', b'{"name": NaN}', b"\xff\xfe{}"],
    ids=["broken", "empty", "array", "string", "nan", "bad-utf8"],
)
async def test_bad_json_body_is_400(client: TestClient, data: bytes) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    await fail(await client.post(f"{ADMIN}/plans", data=data, headers=headers), 400)
    assert (await get(client, "/plans"))["plans"] == []


async def test_body_over_the_limit_is_413(client: TestClient) -> None:
    body = json.dumps({**PLAN, "name": "x" * (300 * 1024)}).encode()
    headers = {**auth(), "Content-Type": "application/json"}
    await fail(await client.post(f"{ADMIN}/plans", data=body, headers=headers), 413)
    assert (await get(client, "/plans"))["plans"] == []


async def test_unknown_admin_route_and_method_use_the_envelope(client: TestClient) -> None:
    await fail(await client.get(f"{ADMIN}/tenants", headers=auth()), 404)
    response = await client.put(f"{ADMIN}/plans", json=PLAN, headers=auth())
    await fail(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    async def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}'

    headers = {**auth(), "Content-Type": "application/json"}
    await fail(await client.post(f"{ADMIN}/plans", data=chunks(), headers=headers), 413)
    assert (await get(client, "/plans"))["plans"] == []


# Regression: a lone UTF-16 surrogate is legal JSON (`"\ud800"`) but not encodable text; it used to reach the
# SQLite driver, which raised UnicodeEncodeError, and the caller got a 500 instead of a 400 naming the field.


@pytest.mark.parametrize("route", ["plan", "account", "bot"])
async def test_lone_surrogate_in_a_string_is_400_not_500(client: TestClient, route: str) -> None:
    tenant = await provision(client)
    plans_before = await get(client, "/plans")
    template = {
        "plan": (
            "POST",
            "/plans",
            '{"name": "x\\ud800", "monthly_token_limit": 1, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"}',
        ),
        "account": ("PATCH", f"/accounts/{tenant.account_id}", '{"name": "Acme \\udfff"}'),
        "bot": ("POST", f"/accounts/{tenant.account_id}/bots", '{"name": "b", "persona": "Hi \\ud83d"}'),
    }
    method, path, data = template[route]
    headers = {**auth(), "Content-Type": "application/json"}
    await fail(await client.request(method, ADMIN + path, data=data, headers=headers), 400)
    assert await get(client, "/plans") == plans_before
    assert (await get(client, f"/accounts/{tenant.account_id}"))["name"] == "Acme"
    assert len((await get(client, f"/accounts/{tenant.account_id}/bots"))["bots"]) == 1
