"""Conversation memory: newest whole turns within the bot's token budget, persona always first."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from core.chat import ChatMessage
from core.memory import build_prompt
from core.models import StoredMessage
from core.tokens import TokenCounter
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.harness import expect, provision, relay

PERSONA = ChatMessage(role="system", content="You are a patient bakery assistant.")


def _history(turns: int) -> list[StoredMessage]:
    stored = []
    for n in range(turns):
        for offset, (role, text) in enumerate((("user", f"question {n} about bread"), ("assistant", f"answer {n}"))):
            stored.append(StoredMessage(f"m{n}{offset}", "c", 2 * n + offset + 1, role, text, 0, 0))
    return stored


def test_keeps_the_newest_whole_turns_within_budget(tokens: TokenCounter) -> None:
    user = ChatMessage(role="user", content="and rye?")
    full = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=_history(10), user=user, budget=10_000)
    assert full.history_turns == 10
    budget = full.tokens - 40  # too small for everything
    prompt = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=_history(10), user=user, budget=budget)
    assert prompt.tokens <= budget
    assert prompt.tokens == tokens.count_messages("gpt-4o-mini", prompt.messages)
    assert 0 < prompt.history_turns < 10
    roles = [m.role for m in prompt.messages]
    assert roles[0] == "system" and roles[-1] == "user"
    assert roles[1:-1] == ["user", "assistant"] * prompt.history_turns  # never half a turn
    assert prompt.messages[-2].content == "answer 9"  # the newest turn is the one kept


def test_persona_and_message_survive_a_budget_too_small_for_them(tokens: TokenCounter) -> None:
    user = ChatMessage(role="user", content="hello")
    prompt = build_prompt(tokens, "gpt-4o-mini", persona=PERSONA, history=_history(3), user=user, budget=5)
    assert prompt.messages == (PERSONA, user)
    assert prompt.history_turns == 0


async def test_relay_remembers_the_conversation_within_the_bot_budget(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client, bot={"memory_tokens": 300})
    for n in range(15):
        await expect(await relay(client, tenant, f"Tell me about cake number {n}, please."), 200)
    # OpenAI's own prompt count (real tiktoken in the fake) never exceeds the bot's budget.
    assert all(call.usage["prompt_tokens"] <= 300 for call in fake_openai.calls)
    second = fake_openai.calls[1].messages
    assert second[1:3] == [
        {"role": "user", "content": "Tell me about cake number 0, please."},
        {"role": "assistant", "content": "You said: Tell me about cake number 0, please."},
    ]
    last = fake_openai.calls[-1].messages
    assert last[0]["role"] == "system"
    assert 2 < len(last) < 2 * 15  # truncated, but not emptied
    assert last[-3]["content"] == "Tell me about cake number 13, please."


async def test_customers_do_not_share_memory(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "my secret is 1234", user_id="alice"), 200)
    await expect(await relay(client, tenant, "hello", user_id="bob"), 200)
    assert [m["role"] for m in fake_openai.calls[1].messages] == ["system", "user"]
    assert all("1234" not in m["content"] for m in fake_openai.calls[1].messages)


async def test_the_same_customer_id_at_two_businesses_is_two_conversations(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    shop = await provision(client, name="Shop")
    bank = await provision(client, name="Bank")
    await expect(await relay(client, shop, "my order number is 777", user_id="+15550001"), 200)
    await expect(await relay(client, bank, "hello", user_id="+15550001"), 200)
    assert [m["role"] for m in fake_openai.calls[1].messages] == ["system", "user"]
