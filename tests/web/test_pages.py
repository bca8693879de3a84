"""The dashboard's pages show what the API answers the same person, change only what that person may change, and
escape everything a customer wrote."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph, GraphFault
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.channel_traffic import NOW_S, PHONE_ID, WA_USER, deliver, settled, wa_text
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay
from tests.support.people import add_person, form_token, sign_in

SNEAKY = '<script>alert("hi")</script><img src=x onerror=alert(1)> & "quotes"'


@pytest.fixture
async def shop(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> tuple[TestClient, Tenant, Settings]:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    await add_person(settings, "vic@bakery.example", "viewer", tenant.account_id)
    return client, tenant, settings


async def _whatsapp_conversation(client: TestClient, tenant: Tenant, settings: Settings, text: str) -> str:
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", text, ts=NOW_S))
    await settled(settings)
    owner = auth("owner", tenant.account_id)
    [summary] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    return str(summary["id"])


def _figure(page: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', page)
    assert found is not None, name
    return found.group(1)


async def test_the_overview_shows_the_apis_figures(shop: Any) -> None:
    client, tenant, _ = shop
    for text in ("When do you open?", "Do you deliver?"):
        await expect(await relay(client, tenant, text), 200)
    page = await sign_in(client, "anna@bakery.example")
    metrics = await expect(await client.get("/api/dashboard/metrics", headers=auth("owner", tenant.account_id)), 200)
    assert _figure(page, "tokens") == f"{metrics['tokens']['total']:,}"
    assert _figure(page, "messages") == f"{metrics['messages']['inbound']:,}" == "2"
    assert _figure(page, "conversations") == str(metrics["conversations"])
    assert _figure(page, "cost") == f"${metrics['cost_usd']}" and metrics["cost_usd"] != "0.000000"
    assert f"{metrics['quota']['used_tokens']:,} of {metrics['quota']['limit_tokens']:,} tokens used" in page
    assert page.count("<rect ") >= 1 and "Tokens used each day this month" in page
    assert "WhatsApp</strong> " + PHONE_ID in page and "working." in page
    # A link with parameters of its own (a campaign's) still opens the page.
    assert (await client.get("/dashboard/?utm_source=newsletter")).status == 200


async def test_an_empty_account_says_what_to_do_next(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings)
    tenant = await provision(client)
    await add_person(settings, "new@shop.example", "owner", tenant.account_id)
    page = await sign_in(client, "new@shop.example")
    assert "No model calls yet this month" in page and "No channel is connected yet" in page
    inbox = await (await client.get("/dashboard/conversations")).text()
    assert "No conversations yet." in inbox


async def test_a_person_answers_a_whatsapp_customer_from_the_page(shop: Any, fake_graph: FakeGraph) -> None:
    client, tenant, settings = shop
    contact_id = await _whatsapp_conversation(client, tenant, settings, "Is my cake ready?")
    await sign_in(client, "anna@bakery.example")
    inbox = await (await client.get("/dashboard/conversations?platform=whatsapp")).text()
    assert f'href="/dashboard/conversations/{contact_id}"' in inbox and "Is my cake ready?" in inbox
    page = await (await client.get(f"/dashboard/conversations/{contact_id}")).text()
    assert '<label for="reply">Reply</label>' in page and '<button type="submit">Send</button>' in page

    fields = {"csrf": form_token(page), "key": "k-1", "text": "Yes, it is! Anna"}
    url = f"/dashboard/conversations/{contact_id}/messages"
    answer = await client.post(url, data=fields, allow_redirects=False)
    assert answer.status == 303
    assert fake_graph.texts_to("+" + WA_USER)[-1] == "Yes, it is! Anna"
    # Sent twice (a double click, a resent form): the customer gets it once.
    assert (await client.post(url, data=fields, allow_redirects=False)).status == 303
    assert fake_graph.texts_to("+" + WA_USER).count("Yes, it is! Anna") == 1
    page = await (await client.get(f"/dashboard/conversations/{contact_id}")).text()
    assert "Person (anna@bakery.example)</span>" in page and "The bot is paused: a person answered" in page

    # WhatsApp refuses (its window closed): the page says so in words, and keeps what was typed.
    fake_graph.fail_text_sends_with(GraphFault(131047))
    refused = await client.post(url, data={**fields, "key": "k-2", "text": "Still there?"}, allow_redirects=False)
    assert refused.status == 409
    body = await refused.text()
    assert "refused the reply outside its reply window" in body and ">Still there?</textarea>" in body

    # Without the page's form token nothing is sent, paused or resumed.
    forged = await client.post(url, data={"text": "Free cake!", "key": "k-3"}, allow_redirects=False)
    assert forged.status == 403
    assert "Free cake!" not in fake_graph.texts_to("+" + WA_USER)
    resume = f"/dashboard/conversations/{contact_id}/resume"
    assert (await client.post(resume, data={"csrf": "guess"}, allow_redirects=False)).status == 403
    assert "The bot is paused" in await (await client.get(f"/dashboard/conversations/{contact_id}")).text()

    # What a person did here is in the audit trail, as if done through the API.
    trail = await expect(await client.get("/api/admin/audit", headers=auth()), 200)
    sent = [e for e in trail["entries"] if e["action"] == "send_message"]
    assert [(e["actor"], e["actor_role"], e["status"]) for e in sent][-1] == ("anna@bakery.example", "owner", 303)
    assert any(e["action"] == "resume_conversation" and e["status"] == 403 for e in trail["entries"])


async def test_a_viewer_sees_the_conversation_without_controls(shop: Any, fake_graph: FakeGraph) -> None:
    client, tenant, settings = shop
    contact_id = await _whatsapp_conversation(client, tenant, settings, "Hello")
    await sign_in(client, "vic@bakery.example")
    page = await (await client.get(f"/dashboard/conversations/{contact_id}")).text()
    assert "Hello" in page and "<textarea" not in page
    for action in ("/messages", "/pause", "/resume"):  # no form that changes the conversation
        assert f'action="/dashboard/conversations/{contact_id}{action}"' not in page
    fields = {"csrf": form_token(page), "text": "Hi from a viewer", "key": "v"}
    answer = await client.post(f"/dashboard/conversations/{contact_id}/messages", data=fields)
    assert answer.status == 403
    assert "Hi from a viewer" not in fake_graph.texts_to("+" + WA_USER)


async def test_another_accounts_conversation_is_not_found(shop: Any) -> None:
    client, tenant, settings = shop
    contact_id = await _whatsapp_conversation(client, tenant, settings, "Hello")
    other = await provision(client, name="Other")
    await add_person(settings, "olga@other.example", "owner", other.account_id)
    page = await sign_in(client, "olga@other.example")
    answer = await client.get(f"/dashboard/conversations/{contact_id}")
    assert answer.status == 404 and "Not found" in await answer.text()
    fields = {"csrf": form_token(page), "text": "Hi", "key": "o"}
    assert (await client.post(f"/dashboard/conversations/{contact_id}/messages", data=fields)).status == 404
    inbox = await (await client.get("/dashboard/conversations")).text()
    assert contact_id not in inbox


async def test_what_a_customer_writes_is_shown_as_text_never_as_markup(shop: Any) -> None:
    client, tenant, settings = shop
    contact_id = await _whatsapp_conversation(client, tenant, settings, SNEAKY)
    await sign_in(client, "anna@bakery.example")
    for url in ("/dashboard/conversations", f"/dashboard/conversations/{contact_id}"):
        answer = await client.get(url)
        page = await answer.text()
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;hi&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"
