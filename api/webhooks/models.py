"""Answers and queries of the Meta webhook routes."""

from __future__ import annotations

from pydantic import Field

from api.query import QueryModel
from api.shapes import ApiModel


class Handshake(QueryModel):
    """Meta's subscription handshake (GET)."""

    mode: str | None = Field(default=None, alias="hub.mode", description="must be subscribe")
    verify_token: str | None = Field(
        default=None, alias="hub.verify_token", description="META_VERIFY_TOKEN or a channel's own token"
    )
    challenge: str | None = Field(default=None, alias="hub.challenge", description="echoed back when the token matches")


class WebhookReceipt(ApiModel):
    stored: int = Field(ge=0, description="events committed to the inbox")
    duplicates: int = Field(ge=0, description="events seen before, dropped")
    unrouted: int = Field(ge=0, description="events kept aside: no channel, bad shape")


class DataDeletionForm(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}  # Meta may add fields; only this one is ours

    signed_request: str = Field(description="Meta's signed request: <signature>.<payload>, base64url")


class DataDeletionReceipt(ApiModel):
    url: str = Field(json_schema_extra={"format": "uri"}, description="where the user can check the status")
    confirmation_code: str = Field(pattern="^[0-9a-f]+$")
