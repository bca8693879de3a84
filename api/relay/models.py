"""The relay's request and answer (the contract's "Relay API")."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from api.shapes import ApiModel, QuotaBlock, Usd
from core.fields import NotNull, Text


class RelayRequest(ApiModel):
    user_id: Annotated[str, Text(256)] = Field(description="the business's own id for its end customer")
    # Bounded by MAX_MESSAGE_CHARS (longer messages are refused with 400, never silently cut).
    message: Annotated[str, Text(4000, limit="max_message_chars")]
    bot_id: Annotated[Annotated[str, Text(64)] | None, NotNull()] = Field(
        default=None, description="which bot answers; the account's first bot when left out"
    )


class Usage(ApiModel):
    prompt_tokens: Annotated[int, Field(ge=0)]
    completion_tokens: Annotated[int, Field(ge=0)]
    cached_tokens: Annotated[int, Field(ge=0)]
    total_tokens: Annotated[int, Field(ge=0)]


class RelayAnswer(ApiModel):
    reply: str
    bot_id: str
    model: str
    usage: Usage
    # The contract makes cost_usd a decimal string; for a model with no known price it is "0.000000" and cost_known says
    # so, rather than a null that strict clients would choke on.
    cost_usd: Usd
    cost_known: bool
    quota: QuotaBlock
    # Beyond the contract: the stored reply's id, so the business's app can let its customer rate it.
    message_id: str | None = Field(description="the stored reply's id, for POST /api/ai/feedback")
    handoff: bool = Field(
        default=False,
        description="the bot handed the conversation to a person (the bot's handoff_enabled): `reply` is its "
        "handoff_message, and the account was told (activity feed, notification endpoint); the business's app "
        "decides who answers next",
    )
