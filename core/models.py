"""The domain records the stores hand out: frozen dataclasses, never database rows or dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CreditKind = Literal["purchase", "grant", "refund", "adjustment", "overage", "usage"]
# Kinds an operator may post; `overage` and `usage` are written by the quota settlement itself.
OPERATOR_CREDIT_KINDS: tuple[str, ...] = ("purchase", "grant", "refund", "adjustment")


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    monthly_token_limit: int
    models: tuple[str, ...]
    default_model: str
    overage_percent: int
    messages_per_minute: int | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    email: str | None
    plan_id: str
    locked: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    prefix: str
    name: str | None
    created_at: int
    last_used_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class CreditEntry:
    id: str
    account_id: str
    kind: str
    tokens: int
    note: str | None
    created_by: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Bot:
    id: str
    account_id: str
    name: str
    persona: str
    model: str | None  # None: the plan's default model
    temperature: float | None
    max_reply_tokens: int
    memory_tokens: int
    fallback_message: str
    created_at: int
    updated_at: int
    media_reply: str | None = None  # answer to media the bot cannot read; None: a built-in sentence
    handover_pause_minutes: int = 30  # a human reply from the Page inbox pauses the bot this long


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    account_id: str
    bot_id: str
    platform: str
    external_id: str
    created_at: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    contact_id: str
    seq: int
    role: Literal["user", "assistant"]
    content: str
    tokens: int
    created_at: int


@dataclass(frozen=True, slots=True)
class UsageRecord:
    id: str
    account_id: str
    bot_id: str | None
    contact_id: str | None
    channel: str
    model: str
    response_model: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_nanousd: int | None  # None: no price known for the model; the call was still served
    price_version: str | None
    latency_ms: int | None
    attempts: int
    request_id: str | None
    upstream_request_id: str | None
    outcome: str
    error_code: str | None
    created_at: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    """An account's standing in the current calendar month, as the relay's `quota` block shows it."""

    limit_tokens: int
    used_tokens: int
    reserved_tokens: int
    period_start: int
    period_end: int
    credit_balance: int
    # How limit_tokens is made up: the plan's monthly tokens, its overage band, and the credit tokens of the
    # period (drawn so far + still available); shown by GET /api/user/quota.
    monthly_tokens: int = 0
    overage_band_tokens: int = 0
    credit_tokens: int = 0

    @property
    def remaining_tokens(self) -> int:
        return max(0, self.limit_tokens - self.used_tokens - self.reserved_tokens)
