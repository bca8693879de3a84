"""An account's API keys: shown once, stored only as a hash, revoked one at a time."""

from __future__ import annotations

import hashlib
import json

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.admin_api import ADMIN, expect_error, get
from tests.support.harness import Tenant, auth, expect, provision, relay


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

    await expect_error(await relay(client, tenant, "after"), 401)
    spare_tenant = Tenant(tenant.plan_id, tenant.account_id, tenant.bot_id, spare["key"])
    await expect(await relay(client, spare_tenant, "spare"), 200)
    listed = {k["id"]: k for k in (await get(client, f"/accounts/{tenant.account_id}/api-keys"))["api_keys"]}
    assert listed[first_id]["revoked_at"] is not None
    assert listed[spare["id"]]["revoked_at"] is None
    await expect_error(await client.delete(f"{path}/key_00000000000000000000", headers=auth()), 404)


async def test_a_key_name_may_be_left_out_but_not_null(client: TestClient) -> None:
    tenant = await provision(client)
    path = f"{ADMIN}/accounts/{tenant.account_id}/api-keys"
    unnamed = await expect(await client.post(path, json={}, headers=auth()), 201)
    assert unnamed["name"] is None
    error = await expect_error(await client.post(path, json={"name": None}, headers=auth()), 400)
    assert error["details"]["field"] == "name" and "null" in error["message"]
