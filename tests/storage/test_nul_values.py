"""A NUL character wherever a caller can put one: PostgreSQL text cannot hold it, SQLite can; both must answer the
same way, and never 500 (core/storage/postgres_db.py stores and matches U+FFFD in its place, as the webhook
parsers already store it)."""

from __future__ import annotations

import json
from dataclasses import replace

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import PHONE_ID, settled, wa_text
from tests.support.harness import auth, connect_channel, expect, provision, signed


async def test_a_nul_in_an_id_is_not_found_and_in_api_text_is_refused(client: TestClient) -> None:
    tenant = await provision(client)
    missing = await client.get("/api/admin/accounts/acc_%00nul", headers=auth())
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    owner = auth("owner", tenant.account_id)
    assert (await client.get(f"/api/admin/bots/{tenant.bot_id}%00", headers=owner)).status == 404
    searched = await client.get("/api/conversations", params={"q": "a\x00b"}, headers=owner)
    assert searched.status == 400 and (await searched.json())["error"]["details"]["field"] == "q"
    relayed = await client.post(
        "/api/messages/relay", json={"user_id": "nul\x00user", "message": "hi"}, headers=tenant.key_header
    )
    assert relayed.status == 400  # a NUL is refused in every text field of the API, on either backend


async def test_a_nul_in_a_customers_id_and_text_is_stored_and_answered(
    make_client: MakeClient, settings: Settings, fake_graph: FakeGraph
) -> None:
    client = await make_client(replace(settings, workers=2))
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    body = wa_text("wamid.nul\x00", "price\x00list?", wa_id="1555\x000001")
    raw, headers = signed(json.dumps(body))  # JSON escapes the NUL as \u0000, as Meta would
    await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    [row] = await settled(settings)
    assert row["state"] == "done" and row["customer_id"] == "1555\ufffd0001"
    [(recipient, _)] = fake_graph.sent_texts()
    assert recipient.lstrip("+") == "1555\ufffd0001"  # Graph is sent the number in its + form
    [stored] = database.rows(settings, "SELECT content FROM messages WHERE role = 'user'")
    assert stored["content"] == "price\ufffdlist?"
