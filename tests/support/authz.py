"""Support for tests/api/test_authz_matrix.py: the OpenAPI document read as a table of operations, two provisioned
tenants to aim at, and database snapshots to prove that a call changed nothing."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from gateway.surfaces import openapi_document
from tests.support import database
from tests.support.harness import auth, connect_channel, expect, provision, relay

JWT_ROLES = ("admin", "owner", "viewer")
# Parameters that name an object, and the prefix of a well-formed id of that kind (core/ids.py).
ID_PREFIXES = {
    "account_id": "acc",
    "plan_id": "pln",
    "bot_id": "bot",
    "key_id": "key",
    "channel_id": "chn",
    "contact_id": "con",
    "message_id": "msg",
    "document_id": "doc",
}
# Query parameters that choose whose data an operation covers; the others (filters, ranges, cursors) stay unset.
TARGET_QUERY = frozenset({"account_id"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    security: frozenset[str]
    path_params: tuple[str, ...]
    query: dict[str, dict[str, Any]]  # name -> parameter object
    body_schema: dict[str, Any] | None
    body_required: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def roles(self) -> tuple[str, ...]:
        return (JWT_ROLES if "bearerJwt" in self.security else ()) + (("api_key",) if "apiKey" in self.security else ())

    def targeted(self, body: Any) -> bool:
        """Whether the call names an object or account: in its path, its query, or its body template."""
        return bool(self.path_params or TARGET_QUERY & set(self.query) or "{target." in repr(body))


def document_operations() -> list[Operation]:
    document = openapi_document(Settings())
    schemas = document["components"]["schemas"]
    found = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            body = op.get("requestBody")
            schema = body["content"].get("application/json", {}).get("schema") if body else None
            if schema is not None and "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            found.append(
                Operation(
                    method.upper(),
                    path,
                    frozenset(name for requirement in op["security"] for name in requirement),
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    {p["name"]: p for p in params if p["in"] == "query"},
                    schema,
                    bool(body and body.get("required")),
                )
            )
    return found


OPERATIONS = document_operations()
GUARDED = [op for op in OPERATIONS if op.roles]


@dataclass(frozen=True)
class World:
    own: dict[str, str]  # account A's ids, by parameter name
    other: dict[str, str]  # account B's
    own_key: str  # A's API key

    def ids(self, target: str | None) -> dict[str, str]:
        if target == "own":
            return self.own
        if target == "other":
            return self.other
        return {name: f"{prefix}_{secrets.token_hex(10)}" for name, prefix in ID_PREFIXES.items()}

    def headers(self, role: str) -> dict[str, str]:
        if role == "api_key":
            return {"Authorization": f"Bearer {self.own_key}"}
        return auth(role, None if role == "admin" else self.own["account_id"])


async def make_world(client: TestClient, settings: Settings) -> World:
    """Two tenants with everything an id can name: plan, account, API key, bot, channel, contact, bot reply,
    knowledge document."""

    async def tenant(name: str, page_id: str) -> tuple[dict[str, str], str]:
        tenant = await provision(client, name=name)
        keys = await expect(await client.get(f"/api/admin/accounts/{tenant.account_id}/api-keys", headers=auth()), 200)
        channel = await connect_channel(client, tenant, "messenger", page_id)
        reply = await expect(await relay(client, tenant, f"hello from {name}"), 200)
        document = await expect(
            await client.post(
                f"/api/admin/bots/{tenant.bot_id}/knowledge",
                json={"title": f"{name} hours", "text": f"{name} opens at nine."},
                headers=auth(),
            ),
            201,
        )
        [contact] = database.rows(settings, "SELECT id FROM contacts WHERE account_id = ?", (tenant.account_id,))
        ids = {
            "plan_id": tenant.plan_id,
            "account_id": tenant.account_id,
            "bot_id": tenant.bot_id,
            "key_id": keys["api_keys"][0]["id"],
            "channel_id": channel["id"],
            "contact_id": contact["id"],
            "message_id": reply["message_id"],
            "document_id": document["id"],
        }
        return ids, tenant.api_key

    (own, own_key), (other, _) = await asyncio.gather(tenant("Alpha", "700000001"), tenant("Bravo", "700000002"))
    return World(own, other, own_key)


def fill(value: Any, world: World, target_ids: dict[str, str]) -> Any:
    page = str(900_000_000 + secrets.randbelow(10**8))
    values = {
        "own": world.own,
        "target": target_ids,
        "fresh": {"page_id": page, "token": f"token-{page}"},
    }

    def fill(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: fill(v) for k, v in item.items()}
        if isinstance(item, str) and item.startswith("{") and item.endswith("}"):
            scope, _, name = item[1:-1].partition(".")
            return values[scope][name]
        return item

    return fill(value)


def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as an operator would read the database."""
    return {table: sorted((tuple(r) for r in rows), key=repr) for table, rows in database.every_row(settings).items()}


# The audit trail records refused attempts too (by design): it is checked on its own, not as "a change".
AUDIT = "audit_log"


def without_audit(snapshot: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {table: rows for table, rows in snapshot.items() if table != AUDIT}


def rows_of(snapshot: dict[str, list[tuple[Any, ...]]], ids: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows that mention any of a tenant's ids, table by table."""
    values = set(ids.values())
    return {
        table: [row for row in rows if values & set(map(str, row))] for table, rows in without_audit(snapshot).items()
    }


def ids_of(rows: list[tuple[Any, ...]]) -> set[Any]:
    return {row[0] for row in rows}  # every table's first column is its id


def audit_accounts(settings: Settings) -> dict[str, str | None]:
    """Audit entry id -> the account it is recorded against."""
    return {row["id"]: row["account_id"] for row in database.rows(settings, f"SELECT id, account_id FROM {AUDIT}")}
