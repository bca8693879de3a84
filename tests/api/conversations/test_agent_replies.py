"""People answer customers through the gateway, and nothing a customer writes goes missing: an agent's reply goes
out through the channel and into the thread and the bot's memory; the bot stays out until resumed; messages that
arrive past the reply window, or while a person has the conversation, are kept and shown; WhatsApp's Business app
echoes and business-scoped user ids are handled."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph, GraphFault, is_text_send
from sandbox.fakes.openai_server import FakeOpenAI
from tests.api.service.test_metrics import scrape, value
from tests.conftest import MakeClient
from tests.support.channel_traffic import (
    NOW_MS,
    NOW_S,
    PAGE_ID,
    PHONE_ID,
    PSID,
    WA_USER,
    deliver,
    fb_text,
    settled,
    wa_message,
    wa_text,
)
from tests.support.harness import Tenant, auth, connect_channel, expect, provision

HOUR_MS = 3600 * 1000


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return client, tenant, settings


async def _conversation(client: TestClient, tenant: Tenant, platform: str) -> dict[str, Any]:
    owner = auth("owner", tenant.account_id)
    listed = await expect(await client.get(f"/api/conversations?platform={platform}", headers=owner), 200)
    [summary] = listed["conversations"]
    return await expect(await client.get(f"/api/conversations/{summary['id']}", headers=owner), 200)


async def _answer(client: TestClient, tenant: Tenant, contact_id: str, text: str, status: int) -> Any:
    url = f"/api/conversations/{contact_id}/messages"
    return await expect(await client.post(url, json={"text": text}, headers=auth("owner", tenant.account_id)), status)


async def test_a_person_answers_a_whatsapp_customer_and_the_bot_stays_out_until_resumed(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Is my cake ready?", ts=NOW_S))
    await settled(settings)
    contact_id = (await _conversation(client, tenant, "whatsapp"))["conversation"]["id"]

    sent = await _answer(client, tenant, contact_id, "Hi, Anna from the bakery here: it is!", 201)
    assert (sent["role"], sent["author"], sent["content"]) == (
        "agent",
        "tester",
        "Hi, Anna from the bakery here: it is!",
    )
    assert fake_graph.texts_to("+" + WA_USER)[-1] == "Hi, Anna from the bakery here: it is!"
    assert fake_graph.requests[-1].token == f"token-{PHONE_ID}"
    detail = await _conversation(client, tenant, "whatsapp")
    assert (detail["conversation"]["paused"], detail["conversation"]["paused_reason"]) == (True, "human_takeover")

    # While the person has the conversation the bot says nothing, and the customer's message is kept.
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.2", "Great, thanks Anna!", ts=NOW_S + 5))
    await settled(settings)
    assert len(fake_openai.calls) == 1
    last = (await _conversation(client, tenant, "whatsapp"))["messages"][-1]
    assert (last["role"], last["content"], last["note"]) == ("user", "Great, thanks Anna!", "paused")

    owner = auth("owner", tenant.account_id)
    await expect(await client.post(f"/api/conversations/{contact_id}/resume", headers=owner), 200)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.3", "Can I pay by card?", ts=NOW_S + 10))
    await settled(settings)
    # The bot answers again, and its memory holds what the person said and what the customer said meanwhile.
    prompt = fake_openai.calls[-1].messages
    assert {"role": "assistant", "content": "Hi, Anna from the bakery here: it is!"} in prompt
    assert {"role": "user", "content": "Great, thanks Anna!"} in prompt
    assert prompt[-1] == {"role": "user", "content": "Can I pay by card?"}


async def test_a_message_past_the_reply_window_is_shown_everywhere_and_cannot_be_answered(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    day_ago_s = int(time.time()) - 25 * 3600
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.old", "Hello? Anyone?", ts=day_ago_s))
    [row] = await settled(settings)
    assert row["state"] == "undeliverable" and fake_openai.calls == []
    detail = await _conversation(client, tenant, "whatsapp")
    [message] = detail["messages"]
    assert (message["content"], message["note"]) == ("Hello? Anyone?", "undeliverable")
    owner = auth("owner", tenant.account_id)
    feed = (await expect(await client.get("/api/dashboard/activity", headers=owner), 200))["activity"]
    [entry] = [e for e in feed if e["kind"] == "message_undeliverable"]
    assert entry["contact_id"] == detail["conversation"]["id"] and "Hello" not in entry["summary"]
    _, samples = await scrape(client)
    assert value(samples, "nexus_inbox_depth", state="undeliverable") == 1

    refused = await _answer(client, tenant, detail["conversation"]["id"], "Sorry for the wait!", 409)
    assert refused["error"]["code"] == "window_closed" and "24 hours" in refused["error"]["message"]
    assert fake_graph.texts_to("+" + WA_USER) == []


async def test_messenger_replies_past_a_day_are_tagged_human_agent_and_refused_after_a_week(
    live: Any, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/messenger", fb_text("m_old", "Do you bake vegan?", ts=NOW_MS - 48 * HOUR_MS))
    await settled(settings)
    contact_id = (await _conversation(client, tenant, "messenger"))["conversation"]["id"]
    await _answer(client, tenant, contact_id, "Yes, every Friday!", 201)
    [sent] = [r for r in fake_graph.requests if r.kind == "text"]
    assert (sent.body["messaging_type"], sent.body["tag"], sent.text) == (
        "MESSAGE_TAG",
        "HUMAN_AGENT",
        "Yes, every Friday!",
    )

    await deliver(
        client, "/webhooks/messenger", fb_text("m_older", "Hi", sender="2900000000000009", ts=NOW_MS - 8 * 24 * HOUR_MS)
    )
    await settled(settings)
    owner = auth("owner", tenant.account_id)
    listed = await expect(await client.get("/api/conversations?platform=messenger", headers=owner), 200)
    [old] = [c for c in listed["conversations"] if c["external_id"] == "2900000000000009"]
    refused = await _answer(client, tenant, old["id"], "Sorry!", 409)
    assert refused["error"]["code"] == "window_closed" and "7 days" in refused["error"]["message"]


async def test_a_reply_the_platform_refuses_is_not_stored(live: Any, fake_graph: FakeGraph) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Hello", ts=NOW_S))
    await settled(settings)
    contact_id = (await _conversation(client, tenant, "whatsapp"))["conversation"]["id"]
    fake_graph.fail_text_sends_with(GraphFault(131047))  # WhatsApp: re-engagement message (window closed)
    refused = await _answer(client, tenant, contact_id, "Hi!", 409)
    assert refused["error"]["code"] == "window_closed"
    fake_graph.fail_text_sends_with(GraphFault(131026))  # message undeliverable
    refused = await _answer(client, tenant, contact_id, "Hi!", 502)
    assert refused["error"]["code"] == "upstream_unavailable"
    messages = (await _conversation(client, tenant, "whatsapp"))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]


async def test_a_relay_conversation_has_no_channel_to_answer_through(live: Any) -> None:
    client, tenant, _ = live
    await expect(
        await client.post(
            "/api/messages/relay", json={"message": "hi", "user_id": "app-user"}, headers=tenant.key_header
        ),
        200,
    )
    contact_id = (await _conversation(client, tenant, "relay"))["conversation"]["id"]
    refused = await _answer(client, tenant, contact_id, "Hello from a person", 409)
    assert refused["error"]["code"] == "conflict" and "relay" in refused["error"]["message"]


async def test_a_person_answering_from_the_whatsapp_business_app_pauses_the_bot(
    live: Any, fake_openai: FakeOpenAI
) -> None:
    """WhatsApp coexistence: the number is also used in the WhatsApp Business app; a person's reply there arrives
    as an `smb_message_echoes` delivery, and the bot must not talk over that person."""
    client, tenant, settings = live
    echo = wa_message("unused", {})
    value_ = echo["entry"][0]["changes"][0]["value"]
    del value_["messages"], value_["contacts"]
    value_["message_echoes"] = [
        {
            "from": "15550783881",
            "to": WA_USER,
            "id": "wamid.app-reply",
            "timestamp": str(NOW_S),
            "type": "text",
            "text": {"body": "Hi, it's Anna, answering from the app"},
        }
    ]
    echo["entry"][0]["changes"][0]["field"] = "smb_message_echoes"
    await deliver(client, "/webhooks/whatsapp", echo)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.c1", "Thanks Anna", ts=NOW_S + 1))
    rows = await settled(settings)
    assert {r["event_key"]: r["state"] for r in rows} == {"echo:wamid.app-reply": "done", "wamid.c1": "skipped"}
    assert fake_openai.calls == []
    conversation = (await _conversation(client, tenant, "whatsapp"))["conversation"]
    assert conversation["paused_reason"] == "human_takeover"


async def test_a_customer_known_only_by_a_business_scoped_user_id_is_answered(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    """A customer with a WhatsApp username may come without a phone number (`from_user_id` only)."""
    client, _, settings = live
    body = wa_text("wamid.u1", "Do you deliver?", ts=NOW_S)
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["from"]
    message["from_user_id"] = "US.13491208655302741918"
    body["entry"][0]["changes"][0]["value"]["contacts"] = [
        {"profile": {"name": "Sheena"}, "user_id": "US.13491208655302741918"}
    ]
    await deliver(client, "/webhooks/whatsapp", body)
    [row] = await settled(settings)
    assert row["state"] == "done" and len(fake_openai.calls) == 1
    [sent] = [r for r in fake_graph.requests if r.kind == "text"]
    assert sent.body["recipient"] == "US.13491208655302741918" and "to" not in sent.body
    assert sent.text == "You said: Do you deliver?"


async def test_viewers_cannot_answer_customers(live: Any, fake_graph: FakeGraph) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hi", sender=PSID, ts=NOW_MS))
    await settled(settings)
    contact_id = (await _conversation(client, tenant, "messenger"))["conversation"]["id"]
    url = f"/api/conversations/{contact_id}/messages"
    await expect(await client.post(url, json={"text": "hi"}, headers=auth("viewer", tenant.account_id)), 403)
    await expect(await client.post(url, json={"text": "   "}, headers=auth("owner", tenant.account_id)), 400)
    assert len([r for r in fake_graph.requests if r.kind == "text"]) == 1  # the bot's reply only


async def test_the_bot_does_not_talk_over_a_person_who_answers_while_it_thinks(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Hello", ts=NOW_S))
    await settled(settings)
    contact_id = (await _conversation(client, tenant, "whatsapp"))["conversation"]["id"]
    fake_openai.latency = 1.0  # the model takes its time over the next message
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.2", "Is the shop open?", ts=NOW_S + 5))
    deadline = time.monotonic() + 10
    while len(fake_openai.calls) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await _answer(client, tenant, contact_id, "Yes, until 6 - Anna", 201)  # while the model is still writing
    await settled(settings)
    assert fake_graph.texts_to("+" + WA_USER) == ["You said: Hello", "Yes, until 6 - Anna"]


async def _keyed_conversation(client: TestClient, tenant: Tenant, settings: Settings, platform: str) -> str:
    if platform == "whatsapp":
        await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Is my cake ready?", ts=NOW_S))
    else:
        await deliver(client, "/webhooks/messenger", fb_text("m_1", "Is my cake ready?", ts=NOW_MS))
    await settled(settings)
    return (await _conversation(client, tenant, platform))["conversation"]["id"]


def _keyed(tenant: Tenant, key: str) -> dict[str, str]:
    return {**auth("owner", tenant.account_id), "Idempotency-Key": key}


async def test_a_reply_repeated_with_its_idempotency_key_is_sent_once(live: Any, fake_graph: FakeGraph) -> None:
    client, tenant, settings = live
    url = f"/api/conversations/{await _keyed_conversation(client, tenant, settings, 'whatsapp')}/messages"
    ready = {"text": "It is ready!"}
    # The first attempt is refused (the window closed, says WhatsApp): nothing went out, so the key is free again.
    fake_graph.fail_text_sends_with(GraphFault(131047))
    await expect(await client.post(url, json=ready, headers=_keyed(tenant, "reply-1")), 409)
    # A slow send: a repeat that arrives meanwhile does not send a second time.
    fake_graph.fail_text_sends_with(GraphFault.slow(3.0))
    first = asyncio.ensure_future(client.post(url, json=ready, headers=_keyed(tenant, "reply-1")))
    for _ in range(500):
        if fake_graph.in_flight:
            break
        await asyncio.sleep(0.01)
    busy = await expect(await client.post(url, json=ready, headers=_keyed(tenant, "reply-1")), 409)
    assert "still being sent" in busy["error"]["message"]
    sent = await expect(await first, 201)
    # Repeated once it went out: the same message, and nothing sent again.
    assert await expect(await client.post(url, json=ready, headers=_keyed(tenant, "reply-1")), 201) == sent
    assert fake_graph.texts_to("+" + WA_USER).count("It is ready!") == 1
    other = await expect(await client.post(url, json={"text": "Not yet"}, headers=_keyed(tenant, "reply-1")), 409)
    assert "another text" in other["error"]["message"]
    for bad in ("x" * 256, "two\tparts", "caf\u00e9"):
        await expect(await client.post(url, json=ready, headers=_keyed(tenant, bad)), 400)
    # Another key is another reply.
    await expect(await client.post(url, json=ready, headers=_keyed(tenant, "reply-2")), 201)
    messages = (await _conversation(client, tenant, "whatsapp"))["messages"]
    assert [m["content"] for m in messages if m["role"] == "agent"] == ["It is ready!", "It is ready!"]


async def test_a_keyed_reply_whose_fate_is_unknown_is_never_sent_again(live: Any, fake_graph: FakeGraph) -> None:
    """The connection broke while WhatsApp was asked: the text may have gone out, so a repeat is told, not sent."""
    client, tenant, settings = live
    url = f"/api/conversations/{await _keyed_conversation(client, tenant, settings, 'whatsapp')}/messages"
    fake_graph.fail_text_sends_with(GraphFault.reset())
    await expect(await client.post(url, json={"text": "On its way"}, headers=_keyed(tenant, "k")), 502)
    unknown = await expect(await client.post(url, json={"text": "On its way"}, headers=_keyed(tenant, "k")), 409)
    assert "may have reached the customer" in unknown["error"]["message"]
    asked = [r for r in fake_graph.requests if r.kind == "text" and r.text == "On its way"]
    assert len(asked) == 1


async def test_a_keyed_reply_that_went_out_in_part_is_not_sent_again(live: Any, fake_graph: FakeGraph) -> None:
    """Messenger takes 2,000 characters a message: the second part of a longer reply is refused."""
    client, tenant, settings = live
    url = f"/api/conversations/{await _keyed_conversation(client, tenant, settings, 'messenger')}/messages"
    text = "A" * 1500 + " " + "B" * 1500
    fake_graph.script(GraphFault(100, match=lambda body: is_text_send(body) and "BBB" in str(body)))
    first = await expect(await client.post(url, json={"text": text}, headers=_keyed(tenant, "long")), 502)
    assert "took 1 of 2 parts" in first["error"]["message"]
    again = await expect(await client.post(url, json={"text": text}, headers=_keyed(tenant, "long")), 502)
    assert "only part of this message went out" in again["error"]["message"]
    assert fake_graph.texts_to(PSID).count("A" * 1500) == 1
    [agent] = [m for m in (await _conversation(client, tenant, "messenger"))["messages"] if m["role"] == "agent"]
    assert agent["content"] == "A" * 1500
