"""The relay API end to end: signed-in app -> gateway -> fake OpenAI -> SQLite, through the real HTTP path."""

from __future__ import annotations

from decimal import Decimal

from aiohttp.test_utils import TestClient

from sandbox.fakes.openai_server import FakeOpenAI
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
