"""Embeddings, paid for like any model call: reserved against the account's quota first, charged as the provider
counted them (never more than reserved), and recorded in a usage row priced from the price table.

The reservation is our own count of the texts' tokens (the model's tiktoken encoding: exact for OpenAI's
embedding models). A provider reporting more than that is charged what we counted, and its own figure is kept in
the usage row (`reported_usage`), as for chat completions (core/usage_bounds.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

from core.chat import TokenUsage
from core.clock import Clock
from core.ids import new_id
from core.llm import LLMClient
from core.models import UsageRecord
from core.pricing import PriceTable, to_nanousd
from core.storage.db import Database, Transaction
from core.storage.quota import QuotaService
from core.storage.usage import UsageStore
from core.tokens import TokenCounter

# Texts per /embeddings request (OpenAI takes up to 2,048; fewer keeps one failure and one retry small).
BATCH = 64


@dataclass(frozen=True, slots=True)
class Payer:
    """Whose quota an embedding is charged to, and what its usage row says it was for."""

    account_id: str
    bot_id: str
    channel: str  # the turn's channel, "knowledge" (indexing documents) or "knowledge_search" (the search API)
    contact_id: str | None = None
    request_id: str | None = None


class ChargedEmbedder:
    def __init__(
        self,
        *,
        model: str,
        llm: LLMClient,
        db: Database,
        quota: QuotaService,
        usage: UsageStore,
        prices: PriceTable,
        tokens: TokenCounter,
        clock: Clock,
    ) -> None:
        self.model = model
        self._llm = llm
        self._db = db
        self._quota = quota
        self._usage = usage
        self._prices = prices
        self._tokens = tokens
        self._clock = clock

    async def embed(self, texts: Sequence[str], payer: Payer) -> list[list[float]]:
        """One vector per text, in order. QuotaExceeded / AccountLocked before any call; UpstreamUnavailable when
        the provider does not answer (nothing is charged then)."""
        counted = sum(self._tokens.count_text(self.model, text) for text in texts)
        reservation = await self._quota.reserve(payer.account_id, max(counted, 1), request_id=payer.request_id)
        try:
            result = await self._llm.embed(self.model, texts)
        except BaseException:
            await asyncio.shield(self._quota.release(reservation))
            raise
        # Never more than we counted; a provider that reports no tokens for text is charged what we counted.
        charged = min(result.prompt_tokens, reservation.tokens) if result.prompt_tokens > 0 else reservation.tokens
        usage = TokenUsage(prompt_tokens=charged)
        cost = self._prices.cost_usd(self.model, usage)
        record = UsageRecord(
            id=new_id("use"),
            account_id=payer.account_id,
            bot_id=payer.bot_id,
            contact_id=payer.contact_id,
            channel=payer.channel,
            model=self.model,
            response_model=result.model or None,
            prompt_tokens=charged,
            cached_tokens=0,
            completion_tokens=0,
            reasoning_tokens=0,
            cost_nanousd=None if cost is None else to_nanousd(cost),
            price_version=self._prices.version,
            latency_ms=result.latency_ms,
            attempts=result.attempts,
            request_id=payer.request_id,
            upstream_request_id=None,
            outcome="ok",
            error_code=None,
            created_at=self._clock.now_ms(),
            reported_usage=None
            if charged == result.prompt_tokens
            else json.dumps({"prompt_tokens": result.prompt_tokens}),
        )

        async def account(tx: Transaction) -> None:
            await self._quota.settle(tx, reservation, charged)
            await self._usage.record(record, tx=tx)

        await self._db.run(account)
        return result.vectors
