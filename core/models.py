"""The domain records the stores hand out, never database rows or dicts.

The records an owner or the operator edits (plans, accounts, bots, API keys, credit entries) are pydantic models,
because the same shape is also the API's body and answer; the records only the service writes are frozen
dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from core.fields import Choice, EpochMs, Finite, Names, Text, WholeNumber

KnowledgeMode = Literal["off", "augment", "strict"]
CreditKind = Literal["purchase", "grant", "refund", "adjustment", "overage", "usage"]
# Kinds an operator may post; `overage` and `usage` are written by the quota settlement itself.
OPERATOR_CREDIT_KINDS: tuple[str, ...] = ("purchase", "grant", "refund", "adjustment")


class Record(BaseModel):
    """Base of the records an owner or the operator edits: immutable, strict, closed to unknown fields.

    Each record's settings class is its one source of truth: the fields, their bounds and defaults, the body the
    API accepts (creation; an update is the same fields, each optional), the answer it gives, and the columns the
    store reads and writes. Stores build records from rows they wrote themselves with `model_construct`.
    """

    # Fields with defaults are still in every answer: the serialization schema says so (required).
    model_config = ConfigDict(
        frozen=True, strict=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


class PlanSettings(Record):
    name: Annotated[str, Text(100)] = Field(description="unique")
    monthly_token_limit: Annotated[int, Field(ge=0, le=10**12), WholeNumber]
    models: Names = Field(description="model names the plan allows; duplicates are dropped, at most 100")
    default_model: Annotated[str, Text(100)] = Field(description="one of models")
    overage_percent: Annotated[int, Field(ge=0, le=100), WholeNumber] = 0
    messages_per_minute: Annotated[int, Field(ge=1, le=100_000), WholeNumber] | None = None

    @model_validator(mode="after")
    def _default_model_is_allowed(self) -> PlanSettings:
        if self.default_model not in self.models:
            raise PydanticCustomError("not_in_models", "must be one of 'models'", {"field": "default_model"})
        return self


class Plan(PlanSettings):
    id: str
    created_at: EpochMs
    updated_at: EpochMs


class AccountSettings(Record):
    name: Annotated[str, Text(200)]
    plan_id: Annotated[str, Text(64)]
    email: Annotated[str, Text(320)] | None = Field(default=None, description="a contact address")


class Account(AccountSettings):
    id: str
    locked: bool
    created_at: EpochMs
    updated_at: EpochMs


class ApiKey(Record):
    id: str
    account_id: str = Field(exclude=True)
    prefix: str = Field(description="the first characters of the key, to recognise it")
    name: str | None
    created_at: EpochMs
    last_used_at: EpochMs | None
    revoked_at: EpochMs | None


class CreditEntry(Record):
    id: str
    account_id: str
    kind: str
    tokens: int
    note: str | None
    created_by: str | None
    created_at: EpochMs


class BotSettings(Record):
    name: Annotated[str, Text(100)]
    persona: Annotated[str, Text(20_000)] = Field(description="the system prompt")
    model: Annotated[str, Text(100)] | None = Field(
        default=None, description="one of the plan's models; null: the plan's default"
    )
    temperature: Annotated[float, Field(ge=0, le=2), Finite] | None = None
    max_reply_tokens: Annotated[int, Field(ge=1, le=32_768), WholeNumber] = 300
    memory_tokens: Annotated[int, Field(ge=64, le=1_000_000), WholeNumber] = 2000
    fallback_message: Annotated[str, Text(1000)] = (
        "Sorry, I can't answer right now. Please try again in a little while."
    )
    # The answer to media the bot cannot read; None: a built-in sentence.
    media_reply: Annotated[str, Text(1000)] | None = None
    # A human reply from the Page inbox pauses the bot this long (0: never).
    handover_pause_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60), WholeNumber] = 30
    knowledge_mode: Annotated[KnowledgeMode, Choice] = Field(
        default="augment",
        description="off: the knowledge base is not used; augment: what is found is shown to the model; strict: when "
        "nothing relevant is found the bot answers no_answer_message (or hands off: handoff_on_no_answer) without "
        "calling the model",
    )
    no_answer_message: Annotated[str, Text(1000)] = Field(
        default="Sorry, I don't have an answer to that. Please ask in another way, or contact us directly.",
        description="strict knowledge mode's answer when nothing relevant is found",
    )
    knowledge_tokens: Annotated[int, Field(ge=0, le=100_000), WholeNumber] = Field(
        default=1000, description="the most knowledge tokens shown to the model per turn (0: none)"
    )
    handoff_enabled: bool = Field(
        default=False,
        description="the model may hand the conversation to a person (a tool it is offered) when the customer asks "
        "for one or it cannot help: the customer gets handoff_message and the bot is paused until someone resumes it",
    )
    handoff_message: Annotated[str, Text(1000)] = Field(
        default="I'm passing you to a member of our team. They will answer you here as soon as they can.",
        description="what the customer is told when the conversation goes to a person",
    )
    handoff_on_no_answer: bool = Field(
        default=False,
        description="strict knowledge mode hands the conversation to a person instead of answering no_answer_message",
    )
    handoff_on_quota: bool = Field(
        default=False,
        description="when the account's tokens are used up, channel conversations go to a person instead of the "
        "bot's one notice and silence",
    )
    keep_images: bool = Field(
        default=False,
        description="customers' photos stay in the bot's memory for later turns (stored with the conversation, "
        "deleted with it; their tokens count against memory_tokens); off: a photo is seen in its own turn only",
    )


class Bot(BotSettings):
    id: str
    account_id: str
    created_at: EpochMs
    updated_at: EpochMs


class Channel(Record):
    """A bot's connection to a Facebook Page, an Instagram account or a WhatsApp number. It carries no secret:
    access tokens, app secrets and verify tokens are sealed in the store and never leave it but opened."""

    id: str
    account_id: str
    bot_id: str
    platform: Literal["messenger", "instagram", "whatsapp"]
    external_id: str
    status: Literal["active", "needs_reauth", "disabled"] = Field(
        description="needs_reauth: Graph refused the token (error 190), sends stop until a new access_token"
    )
    status_reason: str | None
    has_app_secret: bool
    has_verify_token: bool
    created_at: EpochMs
    updated_at: EpochMs
    disconnected_at: EpochMs | None = Field(default=None, exclude=True)


class KnowledgeDocument(Record):
    """One source of a bot's knowledge base: a text, an FAQ entry, a fetched page or an uploaded file."""

    id: str
    account_id: str = Field(exclude=True)
    bot_id: str
    title: str
    kind: Literal["text", "faq", "url", "file"]
    source: str | None = Field(description="the page's URL or the file's name")
    status: Literal["ready", "processing", "failed"]
    error: str | None = Field(description="why it failed (status failed)")
    chunks: int = Field(description="the pieces it was cut into, each found on its own")
    tokens: int = Field(description="its text's tokens, counted with the bot's tokenizer")
    created_at: EpochMs
    updated_at: EpochMs


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    account_id: str
    bot_id: str
    platform: str
    external_id: str
    created_at: int
    message_count: int = 0  # the messages of its conversation when it was read (a turn's history reads no more)
    # False: a new customer's, not stored yet; the turn's first commit stores it (ConversationStore.created)
    stored: bool = True


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image shown to the model with a message: a data URL, and its size (what its tokens depend on)."""

    url: str  # data:image/jpeg;base64,...
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    contact_id: str
    seq: int
    role: Literal["user", "assistant", "agent"]
    content: str
    tokens: int
    created_at: int
    note: str | None = None  # transcript | image | paused | undeliverable (core/storage/migrations.py, migration 8)
    encoding: str | None = None  # the tokenizer `tokens` was counted with; None: stored before migration 16


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
    # The tokens above are what the account was charged. When the provider reported what the request cannot have
    # cost (core/usage_bounds.py), its own figures as JSON; None when it was charged as reported.
    reported_usage: str | None = None

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
