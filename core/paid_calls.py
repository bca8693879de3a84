"""Model calls paid for outside a turn (embeddings, transcriptions): who pays, and the usage row each leaves.

Each is reserved against the account's quota first, charged as the provider counted it (never more than
reserved), and recorded in a usage row priced from the price table, like a turn's model call.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.chat import TokenUsage
from core.clock import Clock
from core.ids import new_id
from core.llm import LLMClient
from core.models import UsageRecord
from core.pricing import PriceTable, to_nanousd
from core.storage.db import Database
from core.storage.quota import QuotaService
from core.storage.usage import UsageStore


@dataclass(frozen=True, slots=True)
class PaidCalls:
    """What a model call paid for outside a turn (an embedding, a transcription) is made and charged with: the
    client, and the quota, usage rows and prices of the account it is charged to."""

    llm: LLMClient
    db: Database
    quota: QuotaService
    usage: UsageStore
    prices: PriceTable
    clock: Clock


@dataclass(frozen=True, slots=True)
class Payer:
    """Whose quota a call is charged to, and what its usage row says it was for."""

    account_id: str
    bot_id: str
    channel: str  # the turn's channel, "knowledge" (indexing documents) or "knowledge_search" (the search API)
    contact_id: str | None = None
    request_id: str | None = None


def paid_call_record(
    payer: Payer,
    model: str,
    charged: TokenUsage,
    *,
    prices: PriceTable,
    now_ms: int,
    latency_ms: int,
    attempts: int,
    reported: str | None,
    response_model: str | None = None,
) -> UsageRecord:
    """The usage row of one paid call: the charged figures, priced; `reported`: the provider's own figures as JSON
    when they were not charged as reported (core/usage_bounds.py), else None."""
    cost = prices.cost_usd(model, charged)
    return UsageRecord(
        id=new_id("use"),
        account_id=payer.account_id,
        bot_id=payer.bot_id,
        contact_id=payer.contact_id,
        channel=payer.channel,
        model=model,
        response_model=response_model,
        prompt_tokens=charged.prompt_tokens,
        cached_tokens=0,
        completion_tokens=charged.completion_tokens,
        reasoning_tokens=0,
        cost_nanousd=None if cost is None else to_nanousd(cost),
        price_version=prices.version,
        latency_ms=latency_ms,
        attempts=attempts,
        request_id=payer.request_id,
        upstream_request_id=None,
        outcome="ok",
        error_code=None,
        created_at=now_ms,
        reported_usage=reported,
    )
