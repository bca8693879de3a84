"""Hybrid knowledge retrieval (EMBEDDINGS_MODEL set): documents embedded in the background and charged to their
account, questions embedded per turn and per search, chunks found by meaning when they share no word with the
question. The fake OpenAI's vectors are bags of "concepts" (sandbox/fakes/openai_server.py): a test says which words
mean the same, so what is similar is decided here, not by a model."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.admin_api import ADMIN
from tests.support.harness import Tenant, auth, expect, provision, relay

MODEL = "text-embedding-3-small"
DELIVERY = "Wir liefern in ganz Berlin bis nach Hause."
DOCUMENTS = [
    {"title": "Lieferung", "text": DELIVERY},
    {"title": "Preise", "text": "Roggenbrot kostet 4,20 Euro, Schrippen 0,50 Euro."},
    {"title": "Zahlung", "text": "Bar, mit Karte oder Apple Pay."},
]


@pytest.fixture
async def hybrid(make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI) -> TestClient:
    # "bringt ... heim" means "liefern ... nach Hause" here: no word in common, the same concepts.
    fake_openai.concepts = {"bringt": "deliver", "liefern": "deliver", "heim": "home", "hause": "home"}
    return await make_client(replace(settings, embeddings_model=MODEL, knowledge_min_similarity=0.3))


async def _ready(client: TestClient, document_id: str, within: float = 10.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        document = await expect(await client.get(f"{ADMIN}/knowledge/{document_id}", headers=auth()), 200)
        if document["status"] != "processing" or loop.time() > deadline:
            return dict(document)
        await asyncio.sleep(0.1)


async def _with_documents(
    client: TestClient, plan: dict[str, Any] | None = None
) -> tuple[Tenant, list[dict[str, Any]]]:
    tenant = await provision(client, plan=plan)
    added = []
    for body in DOCUMENTS:
        document = await expect(
            await client.post(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", json=body, headers=auth()), 201
        )
        assert document["status"] == "processing"  # answered at once; embedded in the background
        added.append(document)
    return tenant, [await _ready(client, d["id"]) for d in added]


def _embedding_usage(settings: Settings, account_id: str) -> list[Any]:
    return database.rows(
        settings,
        "SELECT channel, contact_id, prompt_tokens, cost_nanousd FROM usage_records WHERE account_id = ? AND model = ?"
        " ORDER BY created_at",
        (account_id, MODEL),
    )


async def test_documents_are_embedded_in_the_background_and_charged_to_their_account(
    hybrid: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    tenant, documents = await _with_documents(hybrid)
    assert [d["status"] for d in documents] == ["ready"] * 3
    embedded = [text for call in fake_openai.embedding_calls for text in call]
    assert any(DELIVERY in text for text in embedded)

    rows = _embedding_usage(settings, tenant.account_id)
    assert rows and {row["channel"] for row in rows} == {"knowledge"}
    assert all(row["prompt_tokens"] > 0 and row["cost_nanousd"] is not None for row in rows)
    account = await expect(await hybrid.get(f"{ADMIN}/accounts/{tenant.account_id}", headers=auth()), 200)
    assert account["quota"]["used_tokens"] == sum(row["prompt_tokens"] for row in rows)


async def test_a_question_sharing_no_word_finds_its_chunk_by_meaning_and_is_charged(
    hybrid: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    tenant, _ = await _with_documents(hybrid)
    search = f"{ADMIN}/bots/{tenant.bot_id}/knowledge/search"
    results = (await expect(await hybrid.get(search, params={"q": "Bringt ihr Sachen heim?"}, headers=auth()), 200))[
        "results"
    ]
    assert results[0]["text"].endswith(DELIVERY)
    assert results[0]["relevance"] == 0 and results[0]["similarity"] >= 0.3 and results[0]["relevant"] is True

    body = await expect(await relay(hybrid, tenant, "Bringt ihr Sachen heim?"), 200)
    [call] = fake_openai.calls
    assert DELIVERY in call.messages[-2]["content"]  # the excerpts, right before the customer's message
    rows = _embedding_usage(settings, tenant.account_id)
    assert [row["channel"] for row in rows if row["channel"] != "knowledge"] == ["knowledge_search", "relay"]
    turn = next(row for row in rows if row["channel"] == "relay")
    assert turn["contact_id"] is not None
    # The turn's quota standing includes every embedding: documents, the search and the question.
    chat = body["usage"]["total_tokens"]
    assert body["quota"]["used_tokens"] == chat + sum(row["prompt_tokens"] for row in rows)


async def test_a_question_past_the_rate_is_refused_before_its_embedding_is_paid_for(
    hybrid: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    tenant, _ = await _with_documents(hybrid, plan={"messages_per_minute": 1})
    documents = len(fake_openai.embedding_calls)
    await expect(await relay(hybrid, tenant, "Bringt ihr Sachen heim?"), 200)
    assert len(fake_openai.embedding_calls) == documents + 1  # the question's embedding
    refused = await expect(await relay(hybrid, tenant, "Und was kostet ein Roggenbrot?"), 429)
    assert refused["error"]["code"] == "rate_limited"
    assert len(fake_openai.embedding_calls) == documents + 1 and len(fake_openai.calls) == 1
    charged = [row["channel"] for row in _embedding_usage(settings, tenant.account_id) if row["channel"] != "knowledge"]
    assert charged == ["relay"]


async def test_a_model_that_refuses_the_text_fails_the_document_with_the_reason(
    hybrid: TestClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.embedding_failures.extend([400])
    tenant = await provision(hybrid)
    document = await expect(
        await hybrid.post(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", json=DOCUMENTS[0], headers=auth()), 201
    )
    failed = await _ready(hybrid, document["id"])
    assert failed["status"] == "failed" and "refused" in failed["error"]
    # Replacing it tries again, and this time it is embedded.
    again = await expect(
        await hybrid.put(f"{ADMIN}/knowledge/{document['id']}", json=DOCUMENTS[0], headers=auth()), 200
    )
    assert again["status"] == "processing"
    assert (await _ready(hybrid, document["id"]))["status"] == "ready"


async def test_a_bot_without_embedded_documents_pays_for_no_question_embedding(
    hybrid: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(hybrid)
    await expect(await relay(hybrid, tenant, "Liefert ihr nach Potsdam?"), 200)
    assert fake_openai.embedding_calls == []
    assert _embedding_usage(settings, tenant.account_id) == []


async def test_a_document_the_account_cannot_pay_to_embed_fails_with_the_reason(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    client = await make_client(replace(settings, embeddings_model=MODEL))
    tenant = await provision(client, plan={"monthly_token_limit": 3})
    document = await expect(
        await client.post(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", json=DOCUMENTS[0], headers=auth()), 201
    )
    failed = await _ready(client, document["id"])
    assert failed["status"] == "failed" and "allowance is used up" in failed["error"]
    assert fake_openai.embedding_calls == []  # refused before any call: nothing spent, nothing charged
    account = await expect(await client.get(f"{ADMIN}/accounts/{tenant.account_id}", headers=auth()), 200)
    assert account["quota"]["used_tokens"] == 0


async def test_a_provider_that_is_down_leaves_the_turn_its_lexical_knowledge(
    hybrid: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant, _ = await _with_documents(hybrid)
    fake_openai.embedding_failures.extend([503] * 10)  # every attempt of the question's embedding fails
    body = await expect(await relay(hybrid, tenant, "Was kostet Roggenbrot?"), 200)
    [call] = fake_openai.calls
    assert "Roggenbrot kostet 4,20 Euro" in call.messages[-2]["content"]
    assert body["reply"]
