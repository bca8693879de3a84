"""What a turn is charged (core/usage_bounds.py): the provider's figures while possible, the gateway's own counts
beyond; and a WhatsApp customer answered, for a bounded charge, when the provider reports the impossible."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from core.chat import TokenUsage
from core.usage_bounds import Charge, UsageBounds, charge_for
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import PHONE_ID, WA_USER, deliver, settled, wa_text
from tests.support.harness import connect_channel, provision

BOUNDS = UsageBounds(prompt_estimate=400, max_completion_tokens=300)  # prompt up to 400 + 100 + 64 = 564


def charge(reply_tokens: int = 20, **reported: int) -> Charge:
    return charge_for(TokenUsage(**reported), BOUNDS, reply_tokens=reply_tokens)


def test_the_prompt_tolerance_is_a_quarter_and_64_tokens() -> None:
    assert BOUNDS.max_prompt_tokens == 564
    assert UsageBounds(0, 1).max_prompt_tokens == 64


@pytest.mark.parametrize(
    "reported",
    [
        TokenUsage(400, 20),
        TokenUsage(564, 300, cached_tokens=564, reasoning_tokens=300),  # every figure at its bound
        TokenUsage(0, 0),
        TokenUsage(380, 120, cached_tokens=256, reasoning_tokens=100),
    ],
)
def test_possible_figures_are_charged_as_reported(reported: TokenUsage) -> None:
    bill = charge_for(reported, BOUNDS, reply_tokens=20)
    assert bill.charged == reported
    assert not bill.bounded and bill.reported_json() is None


def test_a_completion_above_max_tokens_is_charged_as_the_reply_received() -> None:
    bill = charge(prompt_tokens=400, completion_tokens=10**16, reasoning_tokens=10**15)
    assert bill.charged == TokenUsage(400, 20, 0, 0)  # the hidden reasoning figure is as untrustworthy as its total
    assert bill.bounded
    assert json.loads(bill.reported_json() or "") == {
        "prompt_tokens": 400,
        "completion_tokens": 10**16,
        "cached_tokens": 0,
        "reasoning_tokens": 10**15,
    }


def test_a_reply_longer_than_max_tokens_is_charged_max_tokens() -> None:
    """A provider that ignores max_tokens: the account pays for what it asked for, not for the overrun."""
    bill = charge(reply_tokens=1_100, prompt_tokens=400, completion_tokens=1_100)
    assert bill.charged == TokenUsage(400, 300)


def test_a_prompt_beyond_the_tolerance_is_charged_as_the_gateway_counted_it() -> None:
    bill = charge(prompt_tokens=565, completion_tokens=20, cached_tokens=500)
    assert bill.charged == TokenUsage(400, 20, cached_tokens=400)  # cached never above the charged prompt


def test_figures_past_64_bits_give_a_charge_inside_the_request() -> None:
    huge = 10**40
    bill = charge(reply_tokens=10**6, prompt_tokens=huge, completion_tokens=huge, cached_tokens=huge)
    assert bill.charged == TokenUsage(400, 300, cached_tokens=400)
    assert bill.charged.total_tokens < 2**63
    assert json.loads(bill.reported_json() or "")["prompt_tokens"] == huge  # kept exactly, as text


def test_negative_figures_are_never_charged() -> None:
    """The LLM client refuses them as malformed (tests/core/test_llm.py); the bound stands on its own regardless."""
    bill = charge(reply_tokens=-5, prompt_tokens=-1, completion_tokens=-1, cached_tokens=-1, reasoning_tokens=-1)
    assert bill.charged == TokenUsage(400, 0)


async def test_a_whatsapp_customer_is_answered_and_charged_within_bounds(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client = await make_client(replace(settings, workers=2))
    tenant = await provision(client, plan={"monthly_token_limit": 10**12})
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    honest: list[dict[str, Any]] = []

    def absurd(usage: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        honest.append(usage)
        return {**usage, "completion_tokens": 10**17, "total_tokens": usage["prompt_tokens"] + 10**17}

    fake_openai.usage_with(absurd)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.big", "Do you deliver on Sundays?"))
    [row] = await settled(settings)
    assert (row["state"], row["attempts"], row["last_error"]) == ("done", 1, None)
    assert fake_graph.texts_to(WA_USER) == ["You said: Do you deliver on Sundays?"]
    [counted] = honest
    quota = database.quota_row(settings, tenant.account_id)
    assert (quota["used_tokens"], quota["reserved_tokens"]) == (counted["total_tokens"], 0)
    [usage] = database.rows(settings, "SELECT channel, total_tokens, reported_usage FROM usage_records")
    assert (usage["channel"], usage["total_tokens"]) == ("whatsapp", counted["total_tokens"])
    assert json.loads(usage["reported_usage"])["completion_tokens"] == 10**17
