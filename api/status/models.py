"""Answers of the status API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.query import AccountQuery, QueryModel
from api.shapes import ApiModel
from core.fields import EpochMs


class NoQuery(QueryModel):
    model_config = QueryModel.model_config | {"extra": "forbid"}


class WebhookStatusQuery(AccountQuery):
    model_config = AccountQuery.model_config | {"extra": "forbid"}


class ProbeFailure(ApiModel):
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(min_length=1)
    at: EpochMs


class LastCall(ApiModel):
    outcome: str
    error_code: str | None
    model: str
    at: EpochMs


class OpenAIStatus(ApiModel):
    # base_url is left out for owners and viewers: the one field not in every answer.
    model_config = ApiModel.model_config | {"json_schema_serialization_defaults_required": False}

    configured: bool = Field(description="false when OPENAI_API_KEY is unset")
    reachable: bool = Field(description="GET {base}/models answered 2xx with our key")
    latency_ms: int | None = Field(ge=0)
    checked_at: EpochMs = Field(description="when this probe ran (results are reused for 30 s)")
    cached: bool = Field(description="true when served from an earlier probe within 30 s")
    http_status: int | None
    error: ProbeFailure | None = Field(description="this probe's failure")
    last_error: ProbeFailure | None = Field(
        description="the newest failure of any probe since the process started, kept after successes"
    )
    last_call: LastCall | None = Field(
        description="the newest model call the engine made (for owners and viewers: of their account)"
    )
    # Where the gateway sends model calls: an operator's concern, not a tenant's (it may be an internal host).
    base_url: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # left out of the answer, not null, for owners and viewers
        description="admin only: the configured OPENAI_BASE_URL",
        json_schema_extra={"anyOf": [{"type": "string"}]},  # left out, never null
    )


class ChannelHealth(ApiModel):
    id: str
    account_id: str
    bot_id: str
    platform: Literal["messenger", "instagram", "whatsapp"]
    external_id: str
    status: Literal["active", "needs_reauth", "disabled"]
    status_reason: str | None
    needs_reauthorisation: bool = Field(
        description="Graph refused the access token (error 190): sends have stopped until a new token"
    )
    last_delivery_at: EpochMs | None
    last_error: str | None
    last_error_at: EpochMs | None
    inbox_pending: int = Field(description="events received and not yet answered")
    dead_letters: int = Field(description="events given up on, over the inbox's 10-day retention")
    dead_letters_24h: int = Field(description="of which in the last 24 hours")


class WebhookStatus(ApiModel):
    channels: list[ChannelHealth]
