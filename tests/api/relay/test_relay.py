"""The relay API end to end: signed-in app -> gateway -> fake OpenAI -> SQLite, through the real HTTP path."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from core.errors import AccountLocked
from core.models import Contact
from core.storage.conversations import ConversationStore
from core.storage.db import Transaction
from core.storage.quota import QuotaService
from core.storage.rate_limits import Decision, RateLimitStore
from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import expect, provision, relay


async def test_relay_answers_with_reply_usage_cost_and_quota(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    body = await expect(await relay(client, tenant, "Hello there"), 200)

    assert body["reply"] == "You said: Hello there"
    assert body["bot_id"] == tenant.bot_id
    assert body["model"] == "gpt-4o-mini"
    [call] = fake_openai.calls
    assert body["usage"]["prompt_tokens"] == call.usage["prompt_tokens"]
    assert body["usage"]["completion_tokens"] == call.usage["completion_tokens"]
    assert body["usage"]["total_tokens"] == call.usage["total_tokens"]
    expected = (
        Decimal(call.usage["prompt_tokens"]) * Decimal("0.15")
        + Decimal(call.usage["completion_tokens"]) * Decimal("0.60")
    ) / 1_000_000
    assert Decimal(body["cost_usd"]) == expected
    quota = body["quota"]
    assert quota["limit_tokens"] == 100_000
    assert quota["used_tokens"] == call.usage["total_tokens"]
    assert quota["remaining_tokens"] == 100_000 - call.usage["total_tokens"]
    assert quota["period_end"].endswith("T00:00:00Z")
    # The persona leads the prompt; the customer's message ends it.
    assert call.messages[0] == {"role": "system", "content": "You are the assistant of Acme."}
    assert call.messages[-1] == {"role": "user", "content": "Hello there"}


async def test_messages_of_a_new_customer_sent_at_once_make_one_conversation(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """A new customer's contact is stored with their first turn's reservation: several first messages at once,
    each turn with a contact of its own making, all land in the one conversation, shown once in the feed."""
    tenant = await provision(client)
    questions = [f"question {n}" for n in range(4)]
    responses = await asyncio.gather(*(relay(client, tenant, q, user_id="newcomer") for q in questions))
    for response in responses:
        await expect(response, 200)
    [contact] = database.rows(settings, "SELECT id, message_count FROM contacts WHERE external_id = 'newcomer'")
    stored = database.rows(
        settings, "SELECT seq, content FROM messages WHERE contact_id = ? ORDER BY seq", (contact["id"],)
    )
    assert [m["seq"] for m in stored] == list(range(1, 9)) and contact["message_count"] == 8
    turns = sorted((stored[n]["content"], stored[n + 1]["content"]) for n in range(0, 8, 2))
    assert turns == [(q, f"You said: {q}") for q in questions]  # each question right before its answer
    started = database.rows(settings, "SELECT contact_id FROM activity WHERE kind = 'conversation_started'")
    assert [row["contact_id"] for row in started] == [contact["id"]]
    assert len(fake_openai.calls) == 4


async def test_a_message_past_the_rate_holds_nothing_and_stores_nothing(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """The rate is counted in the reservation's commit: a refused message undoes it whole."""
    tenant = await provision(client, plan={"messages_per_minute": 1})
    answered = await expect(await relay(client, tenant, "one"), 200)
    await expect(await relay(client, tenant, "two"), 429)
    quota = database.quota_row(settings, tenant.account_id)
    assert (quota["reserved_tokens"], quota["used_tokens"]) == (0, answered["usage"]["total_tokens"])
    assert [m["content"] for m in database.rows(settings, "SELECT content FROM messages ORDER BY seq")] == [
        "one",
        "You said: one",
    ]
    assert len(fake_openai.calls) == 1


@pytest.mark.postgresql_only
async def test_a_message_past_the_rate_is_refused_without_waiting_for_the_accounts_quota_row(
    client: TestClient, settings: Settings
) -> None:
    """Every turn of an account takes its quota row: a customer flooding one conversation must be turned away
    before that, not queue behind (and hold up) the account's other turns. Here another turn holds the row."""
    tenant = await provision(client, plan={"messages_per_minute": 1})
    await expect(await relay(client, tenant, "one", user_id="flooding"), 200)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as other_turn, other_turn.transaction():
        await other_turn.execute("SELECT * FROM quota_state WHERE account_id = %s FOR UPDATE", (tenant.account_id,))
        refused = await expect(await asyncio.wait_for(relay(client, tenant, "two", user_id="flooding"), 10), 429)
    assert refused["error"]["code"] == "rate_limited"


async def test_an_account_locked_while_a_new_customer_writes_stores_nothing(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process locks the account after this one read it (here: the lock written straight into the
    database, so this process's kept account still says unlocked). The reservation reads the lock itself and
    refuses the turn; the new customer's contact and the rate count of its commit are undone with it."""
    reserve = QuotaService.reserve
    refusals: list[BaseException] = []

    async def watched(self: QuotaService, *args: Any, **kwargs: Any) -> Any:
        try:
            return await reserve(self, *args, **kwargs)
        except AccountLocked as exc:
            refusals.append(exc)
            raise

    monkeypatch.setattr(QuotaService, "reserve", watched)
    tenant = await provision(client, plan={"messages_per_minute": 60})
    await expect(await relay(client, tenant, "hello", user_id="regular"), 200)  # the account is kept from here on
    assert database.execute(settings, "UPDATE accounts SET locked = 1 WHERE id = ?", (tenant.account_id,)) == 1
    refused = await expect(await relay(client, tenant, "hi there", user_id="newcomer"), 403)
    assert refused["error"]["code"] == "account_locked"
    assert len(refusals) == 1  # the reservation refused it, not the relay's own look at the kept account
    assert database.rows(settings, "SELECT id FROM contacts WHERE external_id = 'newcomer'") == []
    assert len(database.rows(settings, "SELECT key FROM rate_limits")) == 1  # the regular customer's count alone
    assert database.quota_row(settings, tenant.account_id)["reserved_tokens"] == 0
    assert len(fake_openai.calls) == 1


@pytest.mark.postgresql_only
async def test_a_new_customers_turn_survives_a_retried_reservation(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL runs a transaction again after a deadlock: here the reservation's, once it has stored the new
    customer's contact and while it counts the rate. The second attempt stores the contact again (the first
    attempt's was rolled back), and the turn is answered and stored."""
    tenant = await provision(client, plan={"messages_per_minute": 60})
    created, take = ConversationStore.created, RateLimitStore.take
    met: list[bool] = []

    async def noting(self: ConversationStore, tx: Transaction, contact: Contact) -> Contact:
        met.append(contact.stored)
        return await created(self, tx, contact)

    async def deadlocked_once(self: RateLimitStore, tx: Transaction, key: str, per_minute: int) -> Decision:
        decision = await take(self, tx, key, per_minute)
        if len(met) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected (raised by the test)")
        return decision

    monkeypatch.setattr(ConversationStore, "created", noting)
    monkeypatch.setattr(RateLimitStore, "take", deadlocked_once)
    body = await expect(await relay(client, tenant, "hello", user_id="retried"), 200)
    assert body["reply"] == "You said: hello"
    assert met[:2] == [False, False]  # each attempt from the contact as the turn met it, not yet stored
    [contact] = database.rows(settings, "SELECT id, message_count FROM contacts WHERE external_id = 'retried'")
    assert contact["message_count"] == 2
    assert database.quota_row(settings, tenant.account_id)["reserved_tokens"] == 0
