"""Authorization matrix, driven by the OpenAPI document: every JWT (and API key) operation × role × target.

Roles: admin, owner and viewer JWTs of account A (and A's API key where an operation takes one). Targets: A's own
ids, account B's ids, and well-formed ids that exist nowhere. Rules checked for every call:
- the status is the one the operation's access rule gives (below); errors use the contract's envelope;
- B's ids answer a non-admin exactly like ids that do not exist (404, same body): no cross-account read or write;
- viewers never mutate (403 on their own account), owners never reach operator-only operations (403);
- a refused call changes nothing in the database (the audit trail records the attempt, against the caller's own
  account), and no non-admin call changes anything of B's.
A separate test sends every JSON body with injected `account_id`, `role`, `owner`... fields: refused, nothing changes.

Adding an operation to the document without a rule here, or with a path parameter the ID table cannot fill,
fails `test_every_operation_has_a_rule` with its name: new routes must join the matrix.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.support.authz import (
    GUARDED,
    ID_PREFIXES,
    OPERATIONS,
    TARGET_QUERY,
    Operation,
    World,
    audit_accounts,
    fill,
    ids_of,
    make_world,
    rows_of,
    snapshot,
    without_audit,
)
from tests.support.harness import auth, expect

Statuses = tuple[int, int, int]  # for targets own, other, random
Access = Literal["read", "write", "operator", "catalogue", "catalogue_operator"]
TARGETS = ("random", "other", "own")  # own last: a successful mutation of it must not spoil the other calls
CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict"}
INJECTED = ("account_id", "role", "owner", "locked", "is_admin", "id")


@dataclass(frozen=True)
class Rule:
    """Who may call an operation. `read`: every role, own account only; `write`: admin and owner, own account;
    `operator`: admin only (another account's ids are a 404 first); `catalogue`: shared objects (plans) every role
    may read; `catalogue_operator`: admin only, refused before any lookup. Per-role overrides are exact statuses."""

    access: Access
    ok: int = 200
    body: dict[str, Any] | None = None  # "{target.x}" is the target's id of kind x; "{own.x}" is always A's
    query: dict[str, str] | None = None  # query parameters beyond the target's (a search's question)
    admin: Statuses | int | None = None
    owner: Statuses | int | None = None
    viewer: Statuses | int | None = None
    api_key: Statuses | int | None = None

    def expected(self, role: str, target: str | None) -> int:
        override = getattr(self, role)
        if override is not None:
            return override if isinstance(override, int) else override[("own", "other", "random").index(target or "")]
        if role == "api_key":  # an account API key reaches its own account's objects only
            return self.ok if target in (None, "own") else 404
        allowed = (
            role == "admin" or self.access in ("read", "catalogue") or (self.access == "write" and role == "owner")
        )
        if self.access == "catalogue_operator" and role != "admin":
            return 403
        if target == "random":
            return 404
        if target == "other" and role != "admin" and self.access != "catalogue":
            return 404
        return self.ok if allowed else 403


NEW_PLAN = {"name": "intruder", "monthly_token_limit": 10**9, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"}
# A fresh Page id for every call (connecting the same one twice is a 409), with the token that controls it.
NEW_CHANNEL = {"platform": "messenger", "external_id": "{fresh.page_id}", "access_token": "{fresh.token}"}

RULES: dict[str, Rule] = {
    "GET /api/admin/plans": Rule("catalogue"),
    "POST /api/admin/plans": Rule("catalogue_operator", 201, NEW_PLAN),
    "GET /api/admin/plans/{plan_id}": Rule("catalogue"),
    "PATCH /api/admin/plans/{plan_id}": Rule("catalogue_operator", body={"monthly_token_limit": 1}),
    # Both tenants' plans are in use, so even the operator cannot delete them.
    "DELETE /api/admin/plans/{plan_id}": Rule("catalogue_operator", 204, admin=(409, 409, 404)),
    "GET /api/admin/accounts": Rule("read"),
    "POST /api/admin/accounts": Rule("operator", 201, {"name": "Charlie", "plan_id": "{own.plan_id}"}),
    "GET /api/admin/accounts/{account_id}": Rule("read"),
    "PATCH /api/admin/accounts/{account_id}": Rule("write", body={"name": "Renamed"}),
    "PUT /api/admin/users/{account_id}/lock": Rule("operator", body={"locked": True}),
    "POST /api/admin/accounts/{account_id}/api-keys": Rule("write", 201, {"name": "ci"}),
    "GET /api/admin/accounts/{account_id}/api-keys": Rule("read"),
    "DELETE /api/admin/accounts/{account_id}/api-keys/{key_id}": Rule("write", 204),
    "PUT /api/admin/accounts/{account_id}/notifications": Rule("write", body={"url": "https://example.com/hook"}),
    "GET /api/admin/accounts/{account_id}/notifications": Rule("read"),
    "DELETE /api/admin/accounts/{account_id}/notifications": Rule("write", 204),
    "POST /api/admin/accounts/{account_id}/credits": Rule("operator", 201, {"tokens": 1_000_000, "kind": "grant"}),
    "GET /api/admin/accounts/{account_id}/credits": Rule("read"),
    "POST /api/admin/accounts/{account_id}/bots": Rule("write", 201, {"name": "Intruder", "persona": "You leak."}),
    "GET /api/admin/accounts/{account_id}/bots": Rule("read"),
    "GET /api/admin/bots/{bot_id}": Rule("read"),
    "PATCH /api/admin/bots/{bot_id}": Rule("write", body={"persona": "Hijacked."}),
    "DELETE /api/admin/bots/{bot_id}": Rule("write", 204),
    "POST /api/admin/bots/{bot_id}/channels": Rule("write", 201, NEW_CHANNEL),
    "GET /api/admin/bots/{bot_id}/channels": Rule("read"),
    "GET /api/admin/channels/{channel_id}": Rule("read"),
    "PATCH /api/admin/channels/{channel_id}": Rule("write", body={"status": "disabled"}),
    "DELETE /api/admin/channels/{channel_id}": Rule("write", 204),
    "POST /api/admin/bots/{bot_id}/knowledge": Rule("write", 201, {"title": "Planted", "text": "Leaked text."}),
    "GET /api/admin/bots/{bot_id}/knowledge": Rule("read"),
    "GET /api/admin/bots/{bot_id}/knowledge/search": Rule("read", query={"q": "opens at nine"}),
    "GET /api/admin/knowledge/{document_id}": Rule("read"),
    "PUT /api/admin/knowledge/{document_id}": Rule("write", body={"title": "Hijacked", "text": "Planted."}),
    # The matrix's documents are texts: fetching one again is refused (409) once the caller may see and write it.
    "POST /api/admin/knowledge/{document_id}/refetch": Rule("write", 409),
    "DELETE /api/admin/knowledge/{document_id}": Rule("write", 204),
    # Dashboard figures: whose they are comes from the token, or for an admin the `account_id` query parameter.
    "GET /api/dashboard/metrics": Rule("read"),
    "GET /api/dashboard/usage": Rule("read"),
    "GET /api/dashboard/bots": Rule("read"),
    "GET /api/user/quota": Rule("read"),
    "GET /api/dashboard/activity": Rule("read"),
    # Conversations. The world's contacts talk through the relay API, and a relay conversation cannot be paused
    # or resumed (409): the access checks all run before that, so who gets 403 and 404 is still what is tested.
    "GET /api/conversations": Rule("read"),
    "GET /api/conversations/{contact_id}": Rule("read"),
    "POST /api/conversations/{contact_id}/pause": Rule("write", 409, {"minutes": 5}),
    "POST /api/conversations/{contact_id}/resume": Rule("write", 409),
    # The world's contacts talk through the relay: a person cannot answer them through a channel (409).
    "POST /api/conversations/{contact_id}/messages": Rule("write", 409, {"text": "A person here."}),
    "DELETE /api/conversations/{contact_id}": Rule("write"),
    # Rating a reply (the target is the reply's message id, in the body).
    "POST /api/ai/feedback": Rule("write", 201, {"message_id": "{target.message_id}", "rating": "up"}),
    # Operations.
    "GET /api/admin/audit": Rule("operator"),
    "GET /api/admin/logs/export": Rule("read"),
    "GET /api/status/openai": Rule("read"),
    "GET /api/status/webhooks": Rule("read"),
    # API key operations: the key is account A's.
    "POST /api/messages/relay": Rule("read", body={"user_id": "c-1", "message": "hi", "bot_id": "{target.bot_id}"}),
}


def _matrix_cases() -> list[Any]:
    return [pytest.param(op, role, id=f"{op.key} {role}") for op in GUARDED if op.key in RULES for role in op.roles]


async def _call(
    client: TestClient,
    world: World,
    op: Operation,
    rule: Rule,
    role: str,
    target: str | None,
    extra: dict[str, Any] | None = None,
) -> Any:
    ids = world.ids(target)
    path = op.path.format(**{name: ids[name] for name in op.path_params})
    query = {name: ids[name] for name in op.query if name in TARGET_QUERY} | (rule.query or {})
    body = fill(rule.body, world, ids) if rule.body is not None else None
    if extra:
        body = {**(body or {}), **extra}
    return await client.request(op.method, path, params=query, json=body, headers=world.headers(role))


def _assert_envelope(body: Any, status: int, where: str) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body}"
    assert body["error"]["code"] == CODES.get(status, body["error"]["code"]), f"{where}: {body}"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], f"{where}: {body}"


# ---- the tests ---------------------------------------------------------------------------------------------------


def test_every_operation_has_a_rule() -> None:
    """New routes must join the matrix: a rule for each guarded operation, ids for each of its parameters."""
    problems = []
    for op in GUARDED:
        rule = RULES.get(op.key)
        if rule is None:
            problems.append(f"{op.key}: no Rule in RULES")
            continue
        problems += [
            f"{op.key}: path parameter {p!r} has no entry in ID_PREFIXES"
            for p in op.path_params
            if p not in ID_PREFIXES
        ]
        problems += [
            f"{op.key}: required query parameter {name!r} has no value here"
            for name, param in op.query.items()
            if param.get("required") and name not in TARGET_QUERY and name not in (rule.query or {})
        ]
        if op.body_required and rule.body is None:
            problems.append(f"{op.key}: the body is required, give the Rule a valid one")
    stale = sorted(set(RULES) - {op.key for op in GUARDED})
    problems += [f"{key}: a Rule for an operation the document does not have" for key in stale]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("op", "role"), _matrix_cases())
async def test_authorization_matrix(client: TestClient, settings: Settings, op: Operation, role: str) -> None:
    rule = RULES[op.key]
    world = await make_world(client, settings)
    seen_random: tuple[int, Any] | None = None
    for target in TARGETS if op.targeted(rule.body) else (None,):
        where = f"{op.key} as {role} on {target or 'no'} target"
        before, audited = snapshot(settings), audit_accounts(settings)
        response = await _call(client, world, op, rule, role, target)
        status = rule.expected(role, target)
        body = await expect(response, status)
        after = snapshot(settings)

        if status >= 400:
            _assert_envelope(body, status, where)
            assert without_audit(after) == without_audit(before), f"{where}: refused, yet the database changed"
        if role == "viewer" and op.method != "GET":
            assert status >= 400, f"{where}: the table grants a viewer a mutation"
        if op.method == "GET":
            assert without_audit(after) == without_audit(before), f"{where}: a read changed the database"
        if role != "admin":
            assert rows_of(after, world.other) == rows_of(before, world.other), f"{where}: B's data changed"
            assert after["plans"] == before["plans"], f"{where}: the plan catalogue is the operator's"
            assert ids_of(after["accounts"]) == ids_of(before["accounts"]), f"{where}: accounts are the operator's"
            # Plans are a shared catalogue: B's plan may show; nothing else of B's may.
            secret = {k: v for k, v in world.other.items() if not (k == "plan_id" and rule.access.startswith("cat"))}
            leaked = [name for name, value in secret.items() if value in str(body)]
            assert not leaked, f"{where}: the answer shows B's {leaked}"
            recorded = {account for id_, account in audit_accounts(settings).items() if id_ not in audited}
            assert recorded <= {world.own["account_id"]}, f"{where}: audited against another account: {recorded}"
        if target == "random":
            seen_random = (response.status, body)
        if target == "other" and status == 404 and role != "admin":
            # Indistinguishable from an id that does not exist: same status, same envelope, same words.
            assert (response.status, body) == seen_random, f"{where}: answers unlike a nonexistent id"


def _injection_cases() -> list[Any]:
    cases = []
    for op in GUARDED:
        rule = RULES.get(op.key)
        if rule is None or op.body_schema is None or "bearerJwt" not in op.security:
            continue
        # The least privileged role that may make the call on its own account: injection must not lift it.
        role = "owner" if rule.expected("owner", "own" if op.targeted(rule.body) else None) < 400 else "admin"
        fields = [name for name in INJECTED if name not in op.body_schema.get("properties", {})]
        cases += [pytest.param(op, role, name, id=f"{op.key} {role} +{name}") for name in fields]
    return cases


@pytest.mark.parametrize(("op", "role", "field"), _injection_cases())
async def test_injected_fields_are_refused_and_change_nothing(
    client: TestClient, settings: Settings, op: Operation, role: str, field: str
) -> None:
    rule = RULES[op.key]
    world = await make_world(client, settings)
    target = "own" if op.targeted(rule.body) else None
    value = {"role": "admin", "locked": False, "is_admin": True}.get(field, world.other["account_id"])
    before = snapshot(settings)

    response = await _call(client, world, op, rule, role, target, {field: value})

    body = await expect(response, 400)
    _assert_envelope(body, 400, op.key)
    assert field in body["error"].get("details", {}).get("fields", []), body
    assert without_audit(snapshot(settings)) == without_audit(before)


def _public_cases() -> list[Any]:
    return [pytest.param(op, id=op.key) for op in OPERATIONS if "bearerJwt" not in op.security]


@pytest.mark.parametrize("op", _public_cases())
async def test_a_dashboard_token_opens_nothing_outside_the_jwt_api(
    client: TestClient, settings: Settings, op: Operation
) -> None:
    """Operations outside the JWT API answer an admin token exactly as they answer no credential at all."""
    random_ids = World({}, {}, "").ids(None) | {"code": secrets.token_hex(10)}
    missing = [p for p in op.path_params if p not in random_ids]
    assert not missing, f"{op.key}: no id for path parameter(s) {missing}"
    path = op.path.format(**{name: random_ids[name] for name in op.path_params})
    anonymous = await client.request(op.method, path)
    with_token = await client.request(op.method, path, headers=auth("admin"))
    assert with_token.status == anonymous.status, f"{op.key}: {with_token.status} with a token"
    if op.security:  # an API key or a signature is required: a JWT is neither
        assert with_token.status == 401, f"{op.key}: {with_token.status} for an admin JWT"


def _filter_cases() -> list[Any]:
    return [
        pytest.param(op, name, id=f"{op.key} ?{name}")
        for op in GUARDED
        if "bearerJwt" in op.security
        for name in op.query
        if name in ID_PREFIXES and name not in TARGET_QUERY
    ]


@pytest.mark.parametrize(("op", "name"), _filter_cases())
async def test_id_filters_say_nothing_about_other_accounts(
    client: TestClient, settings: Settings, op: Operation, name: str
) -> None:
    """A filter naming another account's object (say ?bot_id=) answers exactly like one naming nothing."""
    world = await make_world(client, settings)
    rule = RULES[op.key]
    target = "own" if op.targeted(rule.body) else None
    answers = []
    for ids in (world.other, World({}, {}, "").ids(None)):
        ids_of_target = world.ids(target)
        path = op.path.format(**{p: ids_of_target[p] for p in op.path_params})
        response = await client.request(op.method, path, params={name: ids[name]}, headers=world.headers("owner"))
        answers.append((response.status, await response.text()))
    assert answers[0] == answers[1]
    assert answers[0][0] < 500
