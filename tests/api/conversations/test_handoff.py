"""The bot hands conversations to people: the model's handoff tool, strict knowledge mode and a used-up quota each
tell the customer the bot's handoff message, pause the conversation until someone resumes it, and tell the
account: an activity entry, and a signed notification to its endpoint, retried until it is taken."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import NOW_S, PHONE_ID, WA_USER, deliver, settled, until, wa_text
from tests.support.harness import Tenant, auth, connect_channel, expect, provision

HANDOFF_MESSAGE = "A person from our team will answer you here shortly."


@dataclass
class Endpoint:
    """The business's own server, receiving notifications."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failures: int = 0  # answer 500 to this many POSTs first


@pytest.fixture
async def endpoint(aiohttp_server: Any) -> Endpoint:
    app = web.Application()
    state = Endpoint("")

    async def take(request: web.Request) -> web.Response:
        state.received.append((dict(request.headers), await request.read()))
        if state.failures > 0:
            state.failures -= 1
            return web.Response(status=500)
        return web.Response(status=204)

    app.router.add_post("/hooks/nexus", take)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("/hooks/nexus"))
    return state


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings, monkeypatch: Any) -> tuple[TestClient, Tenant, Settings]:
    monkeypatch.setattr("core.notifier.BACKOFF_MS", (100, 100, 100))
    # The business's server runs on this machine: the operator allows loopback for notifications.
    settings = replace(settings, workers=2, notify_allow_networks=("127.0.0.0/8",))
    client = await make_client(settings)
    tenant = await provision(
        client, bot={"handoff_enabled": True, "handoff_message": HANDOFF_MESSAGE, "persona": "You help customers."}
    )
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    return client, tenant, settings


def asks_for_a_person(body: dict) -> tuple[str, str] | None:
    said = body["messages"][-1]["content"]
    return ("hand_off_to_person", json.dumps({"reason": "asked for a person"})) if "person" in said else None


async def _set_endpoint(client: TestClient, tenant: Tenant, url: str) -> str:
    owner = auth("owner", tenant.account_id)
    path = f"/api/admin/accounts/{tenant.account_id}/notifications"
    answer = await expect(await client.put(path, json={"url": url}, headers=owner), 200)
    assert answer["signature_header"] == "X-Nexus-Signature-256" and answer["secret"].startswith("nxs_")
    return str(answer["secret"])


async def _conversation(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    owner = auth("owner", tenant.account_id)
    [summary] = (await expect(await client.get("/api/conversations?platform=whatsapp", headers=owner), 200))[
        "conversations"
    ]
    return await expect(await client.get(f"/api/conversations/{summary['id']}", headers=owner), 200)


def _verified(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Nexus-Signature-256"], expected)
    return json.loads(body)


async def test_the_model_hands_a_whatsapp_customer_to_a_person(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph, endpoint: Endpoint
) -> None:
    client, tenant, settings = live
    secret = await _set_endpoint(client, tenant, endpoint.url)
    endpoint.failures = 2  # the business's server is flaky: the notification is tried again until taken
    fake_openai.call_tool_with(asks_for_a_person)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Do you have rye bread?", ts=NOW_S))
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.2", "I want to talk to a person", ts=NOW_S + 1))
    await settled(settings)
    # The tool is offered, and what it costs in the prompt is reserved and charged as OpenAI counts it.
    assert [t["function"]["name"] for t in fake_openai.calls[-1].params["tools"]] == ["hand_off_to_person"]
    usage = database.rows(settings, "SELECT prompt_tokens, reported_usage FROM usage_records ORDER BY created_at")
    assert [u["prompt_tokens"] for u in usage] == [c.usage["prompt_tokens"] for c in fake_openai.calls]
    assert all(u["reported_usage"] is None for u in usage)  # charged as reported: no bound was hit
    assert fake_graph.texts_to("+" + WA_USER)[-1] == HANDOFF_MESSAGE

    detail = await _conversation(client, tenant)
    conversation = detail["conversation"]
    assert (conversation["paused"], conversation["paused_reason"], conversation["paused_until"]) == (
        True,
        "handoff",
        None,
    )
    # Nothing the customer sends meanwhile reaches the model, however long it takes.
    assert detail["messages"][-1]["content"] == HANDOFF_MESSAGE
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.3", "hello??", ts=NOW_S + 2))
    await settled(settings)
    assert len(fake_openai.calls) == 2
    last = (await _conversation(client, tenant))["messages"][-1]
    assert (last["content"], last["note"]) == ("hello??", "paused")

    owner = auth("owner", tenant.account_id)
    feed = (await expect(await client.get("/api/dashboard/activity?kind=handoff", headers=owner), 200))["activity"]
    [entry] = feed
    assert entry["contact_id"] == conversation["id"] and "person" in entry["summary"]

    await until(lambda: len(endpoint.received) == 3, within=10)
    bodies = [_verified(secret, headers, body) for headers, body in endpoint.received]
    assert len({b["id"] for b in bodies}) == 1  # one notification, delivered on its third try
    note = bodies[0]
    assert note["event"] == "conversation.handoff" and endpoint.received[0][0]["X-Nexus-Event"] == note["event"]
    assert (note["contact_id"], note["source"], note["reason"], note["paused"]) == (
        conversation["id"],
        "model",
        "asked for a person",
        True,
    )
    assert WA_USER not in json.dumps(note)  # no customer's phone number leaves the gateway
    # The endpoint has the third try; the notifier records its answer a moment after.
    deadline = time.monotonic() + 10
    while True:
        listed = await expect(
            await client.get(f"/api/admin/accounts/{tenant.account_id}/notifications", headers=owner), 200
        )
        [delivery] = listed["deliveries"]
        if delivery["state"] != "pending" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 3)

    # A person resumes: the bot answers again.
    await expect(await client.post(f"/api/conversations/{conversation['id']}/resume", headers=owner), 200)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.4", "still open today?", ts=NOW_S + 3))
    await settled(settings)
    assert len(fake_openai.calls) == 3


async def test_without_handoff_enabled_the_model_is_offered_no_tool(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    client = await make_client(settings)
    tenant = await provision(client)
    fake_openai.call_tool_with(asks_for_a_person)
    answer = await expect(
        await client.post(
            "/api/messages/relay", json={"message": "a person please", "user_id": "u1"}, headers=tenant.key_header
        ),
        200,
    )
    assert "tools" not in fake_openai.calls[0].params and answer["handoff"] is False
    assert answer["reply"] == "You said: a person please"


async def test_a_relay_handoff_is_told_in_the_answer_and_to_the_account(
    live: Any, fake_openai: FakeOpenAI, endpoint: Endpoint
) -> None:
    client, tenant, _ = live
    secret = await _set_endpoint(client, tenant, endpoint.url)
    fake_openai.call_tool_with(asks_for_a_person)
    answer = await expect(
        await client.post(
            "/api/messages/relay", json={"message": "a person please", "user_id": "u1"}, headers=tenant.key_header
        ),
        200,
    )
    assert (answer["handoff"], answer["reply"]) == (True, HANDOFF_MESSAGE)
    assert answer["usage"]["completion_tokens"] > 0  # the model's call was charged like any other
    await until(lambda: len(endpoint.received) == 1, within=10)
    note = _verified(secret, *endpoint.received[0])
    assert (note["platform"], note["paused"]) == ("relay", False)
    # Erasing the customer erases what the account was told about them (the model's summary of their request).
    owner = auth("owner", tenant.account_id)
    await expect(await client.delete(f"/api/conversations/{note['contact_id']}", headers=owner), 200)
    path = f"/api/admin/accounts/{tenant.account_id}/notifications"
    assert (await expect(await client.get(path, headers=owner), 200))["deliveries"] == []


async def test_strict_knowledge_mode_hands_off_instead_of_its_no_answer_message(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    patch = {"knowledge_mode": "strict", "handoff_on_no_answer": True}
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json=patch, headers=auth()), 200)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Do you repair bicycles?", ts=NOW_S))
    await settled(settings)
    assert fake_openai.calls == []
    assert fake_graph.texts_to("+" + WA_USER) == [HANDOFF_MESSAGE]
    assert (await _conversation(client, tenant))["conversation"]["paused_reason"] == "handoff"


async def test_a_used_up_quota_hands_off_instead_of_going_quiet(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph, endpoint: Endpoint
) -> None:
    settings = replace(settings, workers=2, notify_allow_networks=("127.0.0.0/8",))
    client = await make_client(settings)
    tenant = await provision(
        client,
        plan={"monthly_token_limit": 10},
        bot={"handoff_on_quota": True, "handoff_message": HANDOFF_MESSAGE},
    )
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    secret = await _set_endpoint(client, tenant, endpoint.url)
    for n in range(3):
        await deliver(client, "/webhooks/whatsapp", wa_text(f"wamid.{n}", f"question {n}", ts=NOW_S + n))
    await settled(settings)
    assert fake_openai.calls == []
    assert fake_graph.texts_to("+" + WA_USER) == [HANDOFF_MESSAGE]  # once; then a person has the conversation
    detail = await _conversation(client, tenant)
    assert detail["conversation"]["paused_reason"] == "handoff"
    assert [(m["role"], m["note"]) for m in detail["messages"]] == [
        ("user", None),
        ("assistant", None),
        ("user", "paused"),
        ("user", "paused"),
    ]
    # The account is told, as for any handoff: the feed, and its endpoint.
    owner = auth("owner", tenant.account_id)
    feed = (await expect(await client.get("/api/dashboard/activity?kind=handoff", headers=owner), 200))["activity"]
    assert [entry["detail"]["source"] for entry in feed] == ["quota"]
    await until(lambda: len(endpoint.received) == 1, within=10)
    note = _verified(secret, *endpoint.received[0])
    assert (note["source"], note["paused"], note["reason"]) == ("quota", True, None)


async def test_notification_endpoints_are_the_accounts_own_and_refuse_private_addresses(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, endpoint: Endpoint
) -> None:
    """Without the operator's leave, an endpoint on a loopback address gets nothing: the delivery fails, saying
    why. Another account's endpoint is a 404; viewers read but cannot change it."""
    client = await make_client(settings)
    tenant = await provision(client, bot={"handoff_enabled": True})
    other = await provision(client, name="Other")
    await _set_endpoint(client, tenant, endpoint.url)
    fake_openai.call_tool_with(asks_for_a_person)
    await expect(
        await client.post(
            "/api/messages/relay", json={"message": "a person", "user_id": "u1"}, headers=tenant.key_header
        ),
        200,
    )
    path = f"/api/admin/accounts/{tenant.account_id}/notifications"
    owner = auth("owner", tenant.account_id)

    async def failed() -> list[dict[str, Any]]:
        return (await expect(await client.get(path, headers=owner), 200))["deliveries"]

    deadline = time.monotonic() + 10
    while (deliveries := await failed())[0]["state"] == "pending":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert deliveries[0]["state"] == "failed" and "127.0.0.1" in deliveries[0]["last_error"]
    assert endpoint.received == []

    intruder = auth("owner", other.account_id)
    await expect(await client.get(path, headers=intruder), 404)
    await expect(await client.put(path, json={"url": "https://example.com/h"}, headers=intruder), 404)
    viewer = auth("viewer", tenant.account_id)
    await expect(await client.get(path, headers=viewer), 200)
    await expect(await client.delete(path, headers=viewer), 403)
    await expect(await client.put(path, json={"url": "ftp://example.com/h"}, headers=owner), 400)
    await expect(await client.delete(path, headers=owner), 204)
    assert (await expect(await client.get(path, headers=owner), 200))["url"] is None
