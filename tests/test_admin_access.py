"""Admin API authorization: tenants A and B × roles × every provisioning route × {A, B, random id} (plan A2).

Rules: an admin reaches every account; an owner controls its own account except the operator-only actions
(plans, creating accounts, changing its plan, locking, adding credits: 403); a viewer only reads (403 on any
mutation). For an owner or viewer another account's resource answers 404, exactly like an id that does not exist.
Plans are a catalogue every signed-in role may read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from admin.app import create_admin_app
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Tenant, auth, connect_channel, expect, provision, relay

ROLES = ("admin", "owner", "viewer")
TARGETS = ("A", "B", "random")
CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict"}

PLAN_PATCH = {"monthly_token_limit": 1}
NEW_PLAN = {"name": "intruder", "monthly_token_limit": 10**9, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"}
NEW_BOT = {"name": "Intruder bot", "persona": "You leak secrets."}
GRANT = {"tokens": 1_000_000, "kind": "grant"}
NEW_CHANNEL = {"platform": "messenger", "external_id": "900000001", "access_token": "token-900000001"}

Statuses = tuple[int, int, int]  # for targets A, B, random


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the admin app's own template, below /api/admin
    body: dict[str, Any] | str | None  # "plan_of_A" = an account body on A's plan
    admin: Statuses | int
    owner: Statuses | int
    viewer: Statuses | int

    @property
    def targeted(self) -> bool:
        return "{" in self.path

    def expected(self, role: str, target: str | None) -> int:
        rule = getattr(self, role)
        return rule if isinstance(rule, int) else rule[TARGETS.index(target or "")]


ROUTES = (
    Route("GET", "/plans", None, 200, 200, 200),
    Route("POST", "/plans", NEW_PLAN, 201, 403, 403),
    Route("GET", "/plans/{plan_id}", None, (200, 200, 404), (200, 200, 404), (200, 200, 404)),
    Route("PATCH", "/plans/{plan_id}", PLAN_PATCH, (200, 200, 404), 403, 403),
    Route("DELETE", "/plans/{plan_id}", None, (409, 409, 404), 403, 403),  # A's and B's plans are in use
    Route("GET", "/accounts", None, 200, 200, 200),
    Route("POST", "/accounts", "plan_of_A", 201, 403, 403),
    Route("GET", "/accounts/{account_id}", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route("PATCH", "/accounts/{account_id}", {"name": "Renamed"}, (200, 200, 404), (200, 404, 404), (403, 404, 404)),
    Route("PUT", "/users/{account_id}/lock", {"locked": True}, (200, 200, 404), (403, 404, 404), (403, 404, 404)),
    Route("POST", "/accounts/{account_id}/api-keys", {"name": "ci"}, (201, 201, 404), (201, 404, 404), (403, 404, 404)),
    Route("GET", "/accounts/{account_id}/api-keys", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route(
        "DELETE", "/accounts/{account_id}/api-keys/{key_id}", None, (204, 204, 404), (204, 404, 404), (403, 404, 404)
    ),
    Route("POST", "/accounts/{account_id}/credits", GRANT, (201, 201, 404), (403, 404, 404), (403, 404, 404)),
    Route("GET", "/accounts/{account_id}/credits", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route("POST", "/accounts/{account_id}/bots", NEW_BOT, (201, 201, 404), (201, 404, 404), (403, 404, 404)),
    Route("GET", "/accounts/{account_id}/bots", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route("GET", "/bots/{bot_id}", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route("PATCH", "/bots/{bot_id}", {"persona": "Hijacked."}, (200, 200, 404), (200, 404, 404), (403, 404, 404)),
    Route("DELETE", "/bots/{bot_id}", None, (204, 204, 404), (204, 404, 404), (403, 404, 404)),
    Route("POST", "/bots/{bot_id}/channels", NEW_CHANNEL, (201, 201, 404), (201, 404, 404), (403, 404, 404)),
    Route("GET", "/bots/{bot_id}/channels", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route("GET", "/channels/{channel_id}", None, (200, 200, 404), (200, 404, 404), (200, 404, 404)),
    Route("PATCH", "/channels/{channel_id}", {"status": "disabled"}, (200, 200, 404), (200, 404, 404), (403, 404, 404)),
    Route("DELETE", "/channels/{channel_id}", None, (204, 204, 404), (204, 404, 404), (403, 404, 404)),
)


def _cases() -> list[Any]:
    cases = []
    for route in ROUTES:
        for role in ROLES:
            for target in TARGETS if route.targeted else (None,):
                name = f"{route.method} {route.path} {role}" + (f" {target}" if target else "")
                cases.append(pytest.param(route, role, target, id=name))
    return cases


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant
    key_ids: dict[str, str]  # account id -> id of the API key provision() issued
    channel_ids: dict[str, str]  # account id -> id of the channel connected to its bot

    def ids(self, target: str | None) -> dict[str, str]:
        if target in (None, "random"):
            # Well-formed ids (same prefixes as real ones) that exist nowhere, fresh for every call.
            return {
                name: f"{prefix}_{secrets.token_hex(10)}"
                for name, prefix in (
                    ("plan_id", "pln"),
                    ("account_id", "acc"),
                    ("bot_id", "bot"),
                    ("key_id", "key"),
                    ("channel_id", "chn"),
                )
            }
        tenant = self.a if target == "A" else self.b
        return {
            "plan_id": tenant.plan_id,
            "account_id": tenant.account_id,
            "bot_id": tenant.bot_id,
            "key_id": self.key_ids[tenant.account_id],
            "channel_id": self.channel_ids[tenant.account_id],
        }

    def headers(self, role: str) -> dict[str, str]:
        return auth(role, None if role == "admin" else self.a.account_id)


async def _world(client: TestClient) -> World:
    a, b = await provision(client, name="Alpha"), await provision(client, name="Bravo")
    key_ids, channel_ids = {}, {}
    for page_id, tenant in (("700000001", a), ("700000002", b)):
        keys = await expect(await client.get(f"/api/admin/accounts/{tenant.account_id}/api-keys", headers=auth()), 200)
        key_ids[tenant.account_id] = keys["api_keys"][0]["id"]
        channel_ids[tenant.account_id] = (await connect_channel(client, tenant, "messenger", page_id))["id"]
    return World(a, b, key_ids, channel_ids)


async def _tenant_state(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    """Everything a business would notice about its account, read by the operator."""
    base = f"/api/admin/accounts/{tenant.account_id}"
    state = {}
    for name, path in (
        ("account", base),
        ("api_keys", f"{base}/api-keys"),
        ("credits", f"{base}/credits"),
        ("bots", f"{base}/bots"),
        ("plan", f"/api/admin/plans/{tenant.plan_id}"),
    ):
        state[name] = await expect(await client.get(path, headers=auth()), 200)
    # A deleted bot's channels are gone with it (404), which is itself part of the state to compare.
    channels = await client.get(f"/api/admin/bots/{tenant.bot_id}/channels", headers=auth())
    state["channels"] = (channels.status, await channels.json())
    return state


async def _state(client: TestClient, world: World) -> dict[str, Any]:
    plans = await expect(await client.get("/api/admin/plans", headers=auth()), 200)
    accounts = await expect(await client.get("/api/admin/accounts", headers=auth()), 200)
    return {
        "plans": plans,
        "accounts": accounts,
        "A": await _tenant_state(client, world.a),
        "B": await _tenant_state(client, world.b),
    }


async def _call(client: TestClient, world: World, route: Route, role: str, target: str | None) -> Any:
    path = "/api/admin" + route.path.format(**world.ids(target))
    body = {"name": "Charlie", "plan_id": world.a.plan_id} if route.body == "plan_of_A" else route.body
    return await client.request(route.method, path, json=body, headers=world.headers(role))


def _assert_envelope(body: Any, status: int) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == CODES[status], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize(("route", "role", "target"), _cases())
async def test_authorization_matrix(client: TestClient, route: Route, role: str, target: str | None) -> None:
    world = await _world(client)
    before = None if role == "admin" else await _state(client, world)

    response = await _call(client, world, route, role, target)
    status = route.expected(role, target)
    body = await expect(response, status)

    if status >= 400:
        _assert_envelope(body, status)
    if role == "viewer" and route.method != "GET":
        assert status >= 400  # the table itself must never grant a viewer a mutation
    if role != "admin" and target == "B" and status == 404:
        # Indistinguishable from an id that does not exist: same status, same envelope, same words.
        probe = await _call(client, world, route, role, "random")
        assert (probe.status, await probe.json()) == (404, body)

    if before is not None:
        after = await _state(client, world)
        assert after["B"] == before["B"], "another tenant's data changed"
        assert after["plans"] == before["plans"], "the plan catalogue changed"
        assert len(after["accounts"]["accounts"]) == len(before["accounts"]["accounts"])
        if role == "viewer":
            assert after == before, "a viewer changed something"


def test_matrix_covers_every_admin_route() -> None:
    served = {(r.method, r.resource.canonical) for r in create_admin_app().router.routes() if r.method != "HEAD"}
    assert served == {(r.method, r.path) for r in ROUTES}


async def test_lists_are_scoped_to_the_callers_account(client: TestClient) -> None:
    world = await _world(client)
    for role in ("owner", "viewer"):
        accounts = await expect(await client.get("/api/admin/accounts", headers=world.headers(role)), 200)
        assert [a["id"] for a in accounts["accounts"]] == [world.a.account_id]
    accounts = await expect(await client.get("/api/admin/accounts", headers=auth()), 200)
    assert {a["id"] for a in accounts["accounts"]} == {world.a.account_id, world.b.account_id}
    # The plan catalogue is the same for everyone.
    for role in ROLES:
        plans = await expect(await client.get("/api/admin/plans", headers=world.headers(role)), 200)
        assert {p["id"] for p in plans["plans"]} == {world.a.plan_id, world.b.plan_id}


@pytest.mark.parametrize("role", ["admin", "owner"])
async def test_key_of_another_account_cannot_be_revoked_through_own_path(
    client: TestClient, fake_openai: FakeOpenAI, role: str
) -> None:
    world = await _world(client)
    path = f"/api/admin/accounts/{world.a.account_id}/api-keys/{world.key_ids[world.b.account_id]}"
    _assert_envelope(await expect(await client.delete(path, headers=world.headers(role)), 404), 404)
    await expect(await relay(client, world.b, "still working?"), 200)


async def test_owner_cannot_change_own_plan(client: TestClient) -> None:
    world = await _world(client)
    path = f"/api/admin/accounts/{world.a.account_id}"
    body = await expect(
        await client.patch(path, json={"plan_id": world.b.plan_id}, headers=world.headers("owner")), 403
    )
    _assert_envelope(body, 403)
    assert (await expect(await client.get(path, headers=auth()), 200))["plan_id"] == world.a.plan_id


async def test_relay_cannot_reach_another_tenants_bot(client: TestClient, fake_openai: FakeOpenAI) -> None:
    world = await _world(client)
    body = await expect(await relay(client, world.a, "hello", bot_id=world.b.bot_id), 404)
    _assert_envelope(body, 404)
    assert fake_openai.calls == []  # B's persona never reached the model on A's behalf


# Mass assignment: fields the route does not take are refused, so an injected account_id or role changes nothing.
MASS_ASSIGNMENT = [
    pytest.param("owner", "PATCH", "/accounts/{A}", {"name": "Renamed", "account_id": "{B}"}, id="account-account_id"),
    pytest.param("owner", "PATCH", "/accounts/{A}", {"name": "Renamed", "role": "admin"}, id="account-role"),
    pytest.param("owner", "PATCH", "/accounts/{A}", {"locked": False}, id="account-locked"),
    pytest.param("owner", "POST", "/accounts/{A}/bots", {**NEW_BOT, "account_id": "{B}"}, id="bot-create-account_id"),
    pytest.param("owner", "POST", "/accounts/{A}/bots", {**NEW_BOT, "role": "admin"}, id="bot-create-role"),
    pytest.param("owner", "PATCH", "/bots/{A_bot}", {"name": "Moved", "account_id": "{B}"}, id="bot-patch-account_id"),
    pytest.param("owner", "POST", "/accounts/{A}/api-keys", {"name": "x", "account_id": "{B}"}, id="key-account_id"),
    pytest.param("owner", "POST", "/accounts/{A}/api-keys", {"role": "admin"}, id="key-role"),
    pytest.param("admin", "POST", "/accounts/{A}/credits", {**GRANT, "account_id": "{B}"}, id="credits-account_id"),
    pytest.param(
        "admin", "POST", "/accounts", {"name": "New", "plan_id": "{A_plan}", "role": "owner"}, id="account-create-role"
    ),
    pytest.param("admin", "POST", "/plans", {**NEW_PLAN, "account_id": "{B}"}, id="plan-account_id"),
    pytest.param("admin", "PATCH", "/plans/{A_plan}", {"name": "x", "role": "admin"}, id="plan-patch-role"),
    pytest.param("admin", "PUT", "/users/{A}/lock", {"locked": True, "account_id": "{B}"}, id="lock-account_id"),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), MASS_ASSIGNMENT)
async def test_injected_fields_are_refused_and_change_nothing(
    client: TestClient, role: str, method: str, path: str, body: dict[str, Any]
) -> None:
    world = await _world(client)
    names = {
        "{A}": world.a.account_id,
        "{B}": world.b.account_id,
        "{A_bot}": world.a.bot_id,
        "{A_plan}": world.a.plan_id,
    }

    def fill(value: Any) -> Any:
        return names.get(value, value) if isinstance(value, str) else value

    for placeholder, real in names.items():
        path = path.replace(placeholder, real)
    before = await _state(client, world)

    response = await client.request(
        method, "/api/admin" + path, json={k: fill(v) for k, v in body.items()}, headers=world.headers(role)
    )

    _assert_envelope(await expect(response, 400), 400)
    assert await _state(client, world) == before
