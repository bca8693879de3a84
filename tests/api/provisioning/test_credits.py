"""An account's credits: purchases and adjustments move the relay quota; an invalid entry is refused, not booked."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.admin_api import ADMIN, expect_error, get, post
from tests.support.harness import auth, expect, provision, relay


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
    await expect_error(await post(client, f"/accounts/{tenant.account_id}/credits", body), 400)
    assert await get(client, f"/accounts/{tenant.account_id}/credits") == {"balance_tokens": 0, "entries": []}
