"""Embeddings, paid for like any model call (core/paid_calls.py): reserved against the account's quota first,
charged as the provider counted them (never more than reserved), and recorded in a usage row priced from the price
table.

The reservation is our own count of the texts' tokens (the model's tiktoken encoding: exact for OpenAI's
embedding models). A provider reporting more than that is charged what we counted, and its own figure is kept in
the usage row (`reported_usage`), as for chat completions (core/usage_bounds.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from core.chat import TokenUsage
from core.paid_calls import PaidCalls, Payer, paid_call_record
from core.storage.db import Transaction
from core.tokens import TokenCounter

# Texts per /embeddings request (OpenAI takes up to 2,048; fewer keeps one failure and one retry small).
BATCH = 64


class ChargedEmbedder:
    def __init__(
        self,
        *,
        model: str,
        paid: PaidCalls,
        tokens: TokenCounter,
    ) -> None:
        self.model = model
        self._llm, self._db, self._quota = paid.llm, paid.db, paid.quota
        self._usage, self._prices, self._clock = paid.usage, paid.prices, paid.clock
        self._tokens = tokens

    async def embed(self, texts: Sequence[str], payer: Payer) -> list[list[float]]:
        """One vector per text, in order. QuotaExceeded / AccountLocked before any call; UpstreamUnavailable when
        the provider does not answer (nothing is charged then)."""
        await self._tokens.ready(self.model)
        counted = sum(self._tokens.count_text(self.model, text) for text in texts)
        reservation = await self._quota.reserve(payer.account_id, max(counted, 1), request_id=payer.request_id)
        try:
            result = await self._llm.embed(self.model, texts)
        except BaseException:
            await asyncio.shield(self._quota.release(reservation))
            raise
        # Never more than we counted; a provider that reports no tokens for text is charged what we counted.
        charged = min(result.prompt_tokens, reservation.tokens) if result.prompt_tokens > 0 else reservation.tokens
        record = paid_call_record(
            payer,
            self.model,
            TokenUsage(prompt_tokens=charged),
            prices=self._prices,
            now_ms=self._clock.now_ms(),
            latency_ms=result.latency_ms,
            attempts=result.attempts,
            reported=None if charged == result.prompt_tokens else json.dumps({"prompt_tokens": result.prompt_tokens}),
            response_model=result.model or None,
        )

        async def account(tx: Transaction) -> None:
            await self._quota.settle(tx, reservation, charged)
            await self._usage.record(record, tx=tx)

        await self._db.run(account)
        return result.vectors
