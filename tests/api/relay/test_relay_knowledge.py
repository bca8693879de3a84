"""The knowledge base in a turn: the right excerpts reach the model's prompt, within the bot's budget, after the
persona and the history; strict mode answers its no-answer message without calling the model."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.tokens import TokenCounter
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.channel_traffic import PHONE_ID, WA_USER, deliver, settled, wa_text
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay

# A small bakery's knowledge: the delivery policy among look-alikes (other policies, prices, hours).
DOCUMENTS: list[dict[str, str]] = [
    {
        "title": "Lieferung",
        "text": "Wir liefern innerhalb Berlins und nach Potsdam. Ab 25 € Bestellwert ist die "
        "Lieferung kostenlos, darunter kostet sie 3,90 €. Bestellungen bis 18 Uhr kommen am nächsten Morgen.",
    },
    {
        "title": "Abholung",
        "text": "Vorbestellte Torten und Brote holen Sie in der Filiale Kastanienallee ab, "
        "frühestens ab 7 Uhr. Bitte bringen Sie Ihre Bestellnummer mit.",
    },
    {
        "title": "Stornierung",
        "text": "Bestellungen können bis 24 Stunden vor dem Termin kostenlos storniert werden. "
        "Danach berechnen wir 50 % des Bestellwerts.",
    },
    {
        "title": "Öffnungszeiten",
        "text": "Montag bis Freitag 7 bis 19 Uhr, Samstag 7 bis 14 Uhr, Sonntag 8 bis 12 "
        "Uhr. An Feiertagen geschlossen.",
    },
    {
        "title": "Preise Brot",
        "text": "Roggenbrot 750 g 4,20 €. Dinkelvollkorn 500 g 4,80 €. Sauerteigbrot 1 kg 5,90 €.",
    },
    {"title": "Preise Brötchen", "text": "Schrippe 0,50 €, Kürbiskernbrötchen 0,90 €, Laugenbrezel 1,10 €."},
    {
        "title": "Torten",
        "text": "Hochzeitstorten ab 180 €, Geburtstagstorten ab 45 €. Bestellung mindestens drei Tage vorher.",
    },
    {
        "title": "Allergene",
        "text": "Alle Brote können Spuren von Sesam, Nüssen und Soja enthalten. Glutenfreie "
        "Backwaren bieten wir nicht an.",
    },
    {
        "title": "Zahlung",
        "text": "Wir nehmen Bargeld, EC-Karte, Kreditkarte und Apple Pay. Rechnungen für Firmen auf Anfrage.",
    },
    {
        "title": "Jobs",
        "text": "Wir suchen Bäcker:innen und Verkäufer:innen in Voll- und Teilzeit. Bewerbungen an jobs@example.org.",
    },
]
DELIVERY = "Wir liefern innerhalb Berlins und nach Potsdam"


async def _with_knowledge(
    client: TestClient, bot: dict[str, Any] | None = None, plan: dict[str, Any] | None = None
) -> Tenant:
    tenant = await provision(client, name="Baeckerei", bot=bot, plan=plan)
    for document in DOCUMENTS:
        await expect(
            await client.post(f"/api/admin/bots/{tenant.bot_id}/knowledge", json=document, headers=auth()), 201
        )
    return tenant


def _system_messages(call: Any) -> list[str]:
    return [m["content"] for m in call.messages if m["role"] == "system"]


async def test_the_answering_excerpt_reaches_the_prompt_between_history_and_message(
    client: TestClient, fake_openai: FakeOpenAI, tokens: TokenCounter
) -> None:
    tenant = await _with_knowledge(client)
    await expect(await relay(client, tenant, "Hallo, ich bin Anna."), 200)
    body = await expect(await relay(client, tenant, "Bringt ihr Bestellungen auch nach Potsdam?"), 200)

    first, second = fake_openai.calls
    assert DELIVERY not in str(first.messages)  # an introduction finds nothing relevant: no excerpts at all
    persona, *middle, excerpts, user = second.messages
    assert persona == {"role": "system", "content": "You are the assistant of Baeckerei."}
    # The history comes before the excerpts: the persona and history stay a stable prefix (prompt caching).
    assert [m["role"] for m in middle] == ["user", "assistant"]
    assert excerpts["role"] == "system" and DELIVERY in excerpts["content"]
    assert (
        excerpts["content"].index(DELIVERY) < excerpts["content"].find("Abholung")
        or "Abholung" not in excerpts["content"]
    )
    assert user == {"role": "user", "content": "Bringt ihr Bestellungen auch nach Potsdam?"}
    # The provider's prompt count is the prompt we reserved for: the excerpts were estimated too.
    assert body["usage"]["prompt_tokens"] == tokens.count_messages(
        "gpt-4o-mini", [m for m in _as_chat(second.messages)]
    )


async def test_the_excerpts_stay_within_the_bots_knowledge_tokens(
    client: TestClient, fake_openai: FakeOpenAI, tokens: TokenCounter
) -> None:
    # Both price lists are relevant to this question; the excerpts of both come to 117 tokens, of either one
    # to 73 or 79: a budget of 100 shows the model the better one alone.
    tenant = await _with_knowledge(client, bot={"knowledge_tokens": 100})
    await expect(await relay(client, tenant, "Roggenbrot oder Schrippe?"), 200)
    [call] = fake_openai.calls
    [excerpts] = [m for m in call.messages[1:-1] if m["role"] == "system"]
    added = tokens.count_messages("gpt-4o-mini", _as_chat([excerpts])) - tokens.count_messages("gpt-4o-mini", [])
    assert added <= 100
    assert ("Roggenbrot 750 g" in excerpts["content"]) != ("Schrippe 0,50" in excerpts["content"])


async def test_knowledge_mode_off_shows_the_model_nothing(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await _with_knowledge(client, bot={"knowledge_mode": "off"})
    await expect(await relay(client, tenant, "Liefert ihr nach Potsdam?"), 200)
    [call] = fake_openai.calls
    assert _system_messages(call) == ["You are the assistant of Baeckerei."]


async def test_strict_mode_answers_without_the_model_when_nothing_is_relevant(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await _with_knowledge(
        client, bot={"knowledge_mode": "strict", "no_answer_message": "Dazu weiß ich leider nichts."}
    )
    body = await expect(await relay(client, tenant, "Wie wird das Wetter morgen in Hamburg?"), 200)

    assert body["reply"] == "Dazu weiß ich leider nichts."
    assert fake_openai.calls == []
    assert body["usage"]["total_tokens"] == 0 and body["quota"]["used_tokens"] == 0
    # Stored like any reply: the owner sees what was asked and what the bot said.
    conversations = await expect(
        await client.get("/api/conversations", params={"account_id": tenant.account_id}, headers=auth()), 200
    )
    [conversation] = conversations["conversations"]
    assert conversation["message_count"] == 2
    assert conversation["last_message"]["preview"] == "Dazu weiß ich leider nichts."

    # A question the documents answer still goes to the model, with them.
    await expect(await relay(client, tenant, "Liefert ihr nach Potsdam?"), 200)
    [call] = fake_openai.calls
    assert DELIVERY in _system_messages(call)[1]


@pytest.mark.parametrize("documents", [True, False], ids=["with-knowledge", "without-knowledge"])
async def test_a_strict_bot_counts_each_question_against_the_rate(
    client: TestClient, fake_openai: FakeOpenAI, documents: bool
) -> None:
    """With knowledge, the rate is counted before the search (a question's embedding may be paid for); without,
    in the commit of the no-answer reply. Either way a question past the plan's rate is refused, stored nowhere."""
    bot = {"knowledge_mode": "strict", "no_answer_message": "Dazu weiß ich leider nichts."}
    plan = {"messages_per_minute": 1}
    tenant = await (_with_knowledge(client, bot, plan) if documents else provision(client, bot=bot, plan=plan))
    answered = await expect(await relay(client, tenant, "Wie wird das Wetter morgen in Hamburg?"), 200)
    assert answered["reply"] == "Dazu weiß ich leider nichts."
    refused = await expect(await relay(client, tenant, "Und übermorgen in Bremen?"), 429)
    assert refused["error"]["code"] == "rate_limited"
    conversations = await expect(
        await client.get("/api/conversations", params={"account_id": tenant.account_id}, headers=auth()), 200
    )
    [conversation] = conversations["conversations"]
    assert conversation["message_count"] == 2
    assert fake_openai.calls == []


async def test_a_deleted_document_never_reaches_a_turn_again(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await _with_knowledge(client)
    listed = await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}/knowledge", headers=auth()), 200)
    [delivery] = [d for d in listed["documents"] if d["title"] == "Lieferung"]
    await expect(await client.delete(f"/api/admin/knowledge/{delivery['id']}", headers=auth()), 204)

    await expect(await relay(client, tenant, "Liefert ihr nach Potsdam?"), 200)
    [call] = fake_openai.calls
    assert DELIVERY not in str(call.messages)


async def test_a_whatsapp_customer_in_strict_mode_gets_the_no_answer_message(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await _with_knowledge(
        client, bot={"knowledge_mode": "strict", "no_answer_message": "Dazu weiß ich leider nichts."}
    )
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)

    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.K1", "Wer hat die Fußball-WM gewonnen?"))
    rows = await settled(settings)

    assert {r["event_key"]: r["state"] for r in rows}["wamid.K1"] == "done"
    assert fake_graph.texts_to(WA_USER) == ["Dazu weiß ich leider nichts."]
    assert fake_openai.calls == []


def _as_chat(messages: list[dict[str, Any]]) -> list[Any]:
    from core.chat import ChatMessage

    return [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
