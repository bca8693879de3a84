"""Bodies and answers of the provisioning API (/api/admin) that are not the records themselves.

A plan, an account, a bot, an API key, a credit entry and a channel are answered as their records
(core/models.py); creation takes the record's settings, an update any of them (`partial`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from api.shapes import AccountQuota, ApiModel, Changes, partial
from core.fields import Choice, Credential, NotNull, Text, WholeNumber
from core.models import (
    OPERATOR_CREDIT_KINDS,
    Account,
    AccountSettings,
    ApiKey,
    Bot,
    BotSettings,
    Channel,
    CreditEntry,
    Plan,
    PlanSettings,
)

if TYPE_CHECKING:  # to the type checker an update body is what every update body is: sent() gives its fields
    PlanChanges = Changes
    AccountChanges = Changes
    BotChanges = Changes
    ChannelChanges = Changes
else:
    PlanChanges = partial(PlanSettings, "PlanChanges")
    AccountChanges = partial(AccountSettings, "AccountChanges")
    BotChanges = partial(BotSettings, "BotChanges")

Platform = Literal["messenger", "instagram", "whatsapp"]
OperatorCreditKind = Literal["purchase", "grant", "refund", "adjustment"]
assert set(OperatorCreditKind.__args__) == set(OPERATOR_CREDIT_KINDS)  # type: ignore[attr-defined]


class PlanList(ApiModel):
    plans: list[Plan]


class AccountDetail(Account):
    quota: AccountQuota


class AccountList(ApiModel):
    accounts: list[Account]


class LockRequest(ApiModel):
    locked: bool


class ApiKeyRequest(ApiModel):
    name: Annotated[Annotated[str, Text(100)] | None, NotNull()] = Field(
        default=None, description="a name to recognise the key by"
    )


class IssuedApiKey(ApiKey):
    key: str = Field(description="the API key itself: shown in this answer only, stored only as a hash")


class ApiKeyList(ApiModel):
    api_keys: list[ApiKey]


class CreditRequest(ApiModel):
    tokens: Annotated[int, Field(ge=-(10**12), le=10**12), WholeNumber] = Field(
        description="positive adds; purchase and grant must be positive; never zero",
        json_schema_extra={"not": {"const": 0}},
    )
    kind: Annotated[OperatorCreditKind, Choice]
    note: Annotated[str, Text(500)] | None = None


class CreditLedgerView(ApiModel):
    balance_tokens: int
    entries: list[CreditEntry]


class BotList(ApiModel):
    bots: list[Bot]


class ChannelConnect(ApiModel):
    platform: Annotated[Platform, Choice]
    external_id: Annotated[str, Text(64)] = Field(
        description="the numeric Page id, Instagram account id or WhatsApp phone_number_id",
        json_schema_extra={"pattern": "^[0-9]+$"},
    )
    access_token: Annotated[str, Credential(4096)] = Field(description="write-only: never returned")
    app_secret: Annotated[str, Credential(256)] | None = Field(
        default=None, description="write-only: this channel's own Meta app secret"
    )
    verify_token: Annotated[str, Credential(256)] | None = Field(
        default=None, description="write-only: this channel's own verify token"
    )


class ChannelSettings(ApiModel):
    """What an owner may change on a connected channel (each optional in ChannelChanges)."""

    access_token: Annotated[str, Credential(4096)] = Field(description="write-only: never returned")
    app_secret: Annotated[str, Credential(256)] | None = Field(
        description="write-only: this channel's own Meta app secret"
    )
    verify_token: Annotated[str, Credential(256)] | None = Field(
        description="write-only: this channel's own verify token"
    )
    status: Annotated[Literal["active", "disabled"], Choice] = Field(
        description="disabled: messages are recorded, not answered"
    )


if not TYPE_CHECKING:
    ChannelChanges = partial(ChannelSettings, "ChannelChanges")


class ChannelList(ApiModel):
    channels: list[Channel]
