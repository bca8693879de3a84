"""Regressions from the code review of the conversations API: non-ASCII search, searches kept off the main read
connection and bounded, erasure scoped to one platform, and pauses decided by a conditional UPDATE."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.channel_traffic import NOW_S, PHONE_ID, deliver, settled, wa_text
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay

CONVERSATIONS = "/api/conversations"
# A WhatsApp customer's wa_id (a phone number), which a business's own app may also use as its relay user id.
SHARED_ID = "15550001111"


async def search(client: TestClient, headers: dict[str, str], q: str) -> list[str]:
    body = await expect(await client.get(CONVERSATIONS, params={"q": q}, headers=headers), 200)
    return [c["external_id"] for c in body["conversations"]]


def insert_messages(settings: Settings, contact_id: str, n: int) -> None:
    """A long conversation, written as the engine writes messages (a relay call writes two at a time)."""
    [(account_id, bot_id, count)] = database.rows(
        settings, "SELECT account_id, bot_id, message_count FROM contacts WHERE id = ?", (contact_id,)
    )
    database.insert(
        settings,
        "messages",
        (
            {
                "id": f"msg_bulk_{i}",
                "account_id": account_id,
                "bot_id": bot_id,
                "contact_id": contact_id,
                "seq": count + 1 + i,
                "role": "user",
                "content": f"Where is parcel number {i}?",
                "tokens": 9,
                "created_at": i,
            }
            for i in range(n)
        ),
    )


async def test_search_finds_non_ascii_text_whatever_its_case(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "Bonjour", user_id="Émile"), 200)
    await expect(await relay(client, tenant, "Ich wohne in der Hauptstraße", user_id="crm-7"), 200)
    await expect(await relay(client, tenant, "hello", user_id="emile-ascii"), 200)
    owner = auth("owner", tenant.account_id)

    for q in ("Émile", "émile", "ÉMILE"):
        assert await search(client, owner, q) == ["Émile"], q
    # Unicode case folding on both sides: "ß" folds to "ss", so either spelling finds it.
    assert await search(client, owner, "HAUPTSTRASSE") == ["crm-7"]
    assert await search(client, owner, "hauptstraße") == ["crm-7"]


@pytest.fixture
async def long_conversation(client: TestClient, settings: Settings, fake_openai: FakeOpenAI) -> tuple[Tenant, str]:
    """An account whose one customer has 300,000 messages: a search for a word nobody wrote reads all of them."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "hello", user_id="long-talker"), 200)
    [contact] = (await expect(await client.get(CONVERSATIONS, headers=auth()), 200))["conversations"]
    insert_messages(settings, contact["id"], 300_000)
    return tenant, contact["id"]


async def test_more_than_two_searches_at_once_are_told_to_retry(
    client: TestClient, long_conversation: tuple[Tenant, str]
) -> None:
    tenant, _ = long_conversation
    owner = auth("owner", tenant.account_id)

    async def one() -> tuple[int, Any, str | None]:
        response = await client.get(CONVERSATIONS, params={"q": "nobody wrote this"}, headers=owner)
        return response.status, await response.json(), response.headers.get("Retry-After")

    answers = await asyncio.gather(*(one() for _ in range(6)))

    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) >= 2 and set(statuses) == {200, 429}, statuses
    refused = next(answer for answer in answers if answer[0] == 429)
    assert refused[1]["error"]["code"] == "rate_limited" and refused[2] == "1"
    # The slots free as the searches end: the next one is answered.
    assert await search(client, owner, "nobody wrote this") == []


async def test_reading_a_conversation_does_not_wait_behind_searches(
    client: TestClient, long_conversation: tuple[Tenant, str]
) -> None:
    tenant, contact_id = long_conversation
    owner = auth("owner", tenant.account_id)
    finished: dict[str, float] = {}

    async def timed(name: str, path: str, **params: str) -> None:
        await expect(await client.get(path, params=params, headers=owner), 200)
        finished[name] = time.monotonic()

    searches = [asyncio.ensure_future(timed(f"search{n}", CONVERSATIONS, q="nobody wrote this")) for n in range(2)]
    await asyncio.sleep(0.05)  # both searches are reading by now
    await timed("read", f"{CONVERSATIONS}/{contact_id}", limit="5")
    await asyncio.gather(*searches)

    # On the main read connection the read would queue behind both scans of 300,000 messages.
    assert finished["read"] < min(finished["search0"], finished["search1"]), finished


@pytest.fixture
async def whatsapp(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    return client, tenant, settings


async def test_erasing_a_relay_user_leaves_the_whatsapp_customer_with_the_same_id(
    whatsapp: tuple[TestClient, Tenant, Settings], fake_openai: FakeOpenAI
) -> None:
    client, tenant, settings = whatsapp
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.keep", "my order 42", wa_id=SHARED_ID, ts=NOW_S))
    await settled(settings)
    await expect(await relay(client, tenant, "erase me please", user_id=SHARED_ID), 200)
    owner = auth("owner", tenant.account_id)
    listed = (await expect(await client.get(CONVERSATIONS, headers=owner), 200))["conversations"]
    by_platform = {c["platform"]: c for c in listed}
    wa_path = f"{CONVERSATIONS}/{by_platform['whatsapp']['id']}"
    await expect(await client.post(f"{wa_path}/pause", json={"minutes": 30}, headers=owner), 200)

    erased = await expect(await client.delete(f"{CONVERSATIONS}/{by_platform['relay']['id']}", headers=owner), 200)

    assert erased["erased"] == {"contacts": 1, "messages": 2, "inbox_events": 0}
    kept = await expect(await client.get(wa_path, headers=owner), 200)
    assert [m["content"] for m in kept["messages"]] == ["my order 42", "You said: my order 42"]
    assert kept["conversation"]["paused"] is True  # the WhatsApp customer's takeover pause stays too
    [event] = database.rows(settings, "SELECT customer_id, event FROM inbox WHERE event_key = 'wamid.keep'")
    assert event["customer_id"] == SHARED_ID and "my order 42" in event["event"]
    assert [
        c["platform"] for c in (await expect(await client.get(CONVERSATIONS, headers=owner), 200))["conversations"]
    ] == ["whatsapp"]

    # Erasing the WhatsApp customer scrubs its inbox event and pause, on that platform.
    erased = await expect(await client.delete(wa_path, headers=owner), 200)
    assert erased["erased"] == {"contacts": 1, "messages": 2, "inbox_events": 1}
    assert database.rows(settings, "SELECT * FROM conversation_state WHERE customer_id = ?", (SHARED_ID,)) == []


async def test_pausing_a_paused_conversation_moves_its_end_without_a_second_takeover(
    whatsapp: tuple[TestClient, Tenant, Settings], fake_openai: FakeOpenAI
) -> None:
    client, tenant, settings = whatsapp
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "hello", ts=NOW_S))
    await settled(settings)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get(CONVERSATIONS, headers=owner), 200))["conversations"]
    path = f"{CONVERSATIONS}/{contact['id']}/pause"

    first = await expect(await client.post(path, json={"minutes": 5}, headers=owner), 200)
    second = await expect(await client.post(path, json={"minutes": 60}, headers=owner), 200)

    assert second["paused_until"] > first["paused_until"]
    [row] = database.rows(settings, "SELECT paused_until FROM conversation_state")
    assert 55 * 60_000 < row["paused_until"] - time.time() * 1000 <= 60 * 60_000
    takeovers = (await expect(await client.get("/api/dashboard/activity?kind=human_takeover", headers=owner), 200))[
        "activity"
    ]
    assert [t["detail"]["paused_minutes"] for t in takeovers] == [5]
