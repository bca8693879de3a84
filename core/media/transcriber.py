"""Transcribing voice notes, paid for like any model call: reserved against the account's quota first, charged as
the provider counted it (never more than reserved), recorded in a usage row priced from the price table.

The reservation bounds what the call can cost before it is made: the audio's length at most (core/media/audio.py)
times AUDIO_TOKENS_PER_SECOND audio tokens and TEXT_TOKENS_PER_SECOND transcript tokens, OpenAI's token-billed
transcription models counting about 17 audio tokens a second of speech in all (their per-minute price over their
per-token price). A provider that reports more is charged the reservation and its own figures are kept in the usage
row (`reported_usage`); one that reports no tokens (whisper-1 bills by the second) is charged the reservation.
The price table prices a transcription model's input at its audio-token rate: the gateway sends no prompt text.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable

from core.chat import TokenUsage
from core.llm import Transcribed
from core.media.audio import seconds_at_most, upload_name
from core.media.download import Media
from core.paid_calls import PaidCalls, Payer, paid_call_record
from core.storage.db import Transaction

AUDIO_TOKENS_PER_SECOND = 25
TEXT_TOKENS_PER_SECOND = 10


class AudioRefused(Exception):
    """The audio is not transcribed: too long, or of a kind the endpoint does not read. The message says why."""


class ChargedTranscriber:
    def __init__(
        self,
        *,
        model: str,
        paid: PaidCalls,
        max_seconds: int,
    ) -> None:
        self.model = model
        self._llm, self._db, self._quota = paid.llm, paid.db, paid.quota
        self._usage, self._prices, self._clock = paid.usage, paid.prices, paid.clock
        self._max_seconds = max_seconds

    async def transcribe(
        self, media: Media, payer: Payer, keep: Callable[[Transaction, str], Awaitable[None]] | None = None
    ) -> str:
        """The transcript. `keep` runs in the charge's commit with it (the channel worker stores it on its event).
        AudioRefused before any charge; QuotaExceeded / AccountLocked before any call; UpstreamUnavailable when
        the provider does not answer (nothing is charged then)."""
        name = upload_name(media.mime_type)
        if name is None:
            raise AudioRefused(f"audio of type {media.mime_type or 'unknown'} cannot be transcribed")
        seconds = seconds_at_most(media.data, media.mime_type)
        if seconds > self._max_seconds:
            raise AudioRefused(f"the audio lasts {seconds:.0f} s, more than MEDIA_MAX_AUDIO_SECONDS")
        ceiling = math.ceil(max(seconds, 1.0) * (AUDIO_TOKENS_PER_SECOND + TEXT_TOKENS_PER_SECOND)) + 16
        reservation = await self._quota.reserve(payer.account_id, ceiling, request_id=payer.request_id)
        try:
            result = await self._llm.transcribe(self.model, name, media.data, media.mime_type)
        except BaseException:
            await asyncio.shield(self._quota.release(reservation))
            raise
        charged = _charged(result, ceiling)
        reported = TokenUsage(prompt_tokens=result.input_tokens, completion_tokens=result.output_tokens)
        record = paid_call_record(
            payer,
            self.model,
            charged,
            prices=self._prices,
            now_ms=self._clock.now_ms(),
            latency_ms=result.latency_ms,
            attempts=result.attempts,
            reported=None
            if charged == reported
            else json.dumps({"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}),
        )

        async def account(tx: Transaction) -> None:
            await self._quota.settle(tx, reservation, charged.total_tokens)
            await self._usage.record(record, tx=tx)
            if keep is not None:
                await keep(tx, result.text)

        try:
            await self._db.run(account)
        except BaseException:  # nothing was charged: the reservation goes back now, not at its expiry
            await asyncio.shield(self._quota.release(reservation))
            raise
        return result.text


def _charged(result: Transcribed, ceiling: int) -> TokenUsage:
    """As reported, never more than reserved; nothing reported: the reservation."""
    if result.input_tokens + result.output_tokens == 0:
        return TokenUsage(prompt_tokens=ceiling)
    prompt = min(result.input_tokens, ceiling)
    return TokenUsage(prompt_tokens=prompt, completion_tokens=min(result.output_tokens, ceiling - prompt))
