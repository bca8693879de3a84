"""The base of every JSON body model, and the shapes several surfaces share (money, the quota block)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, create_model

from api.errors import bad_request
from core.fields import EpochMs
from core.models import QuotaSnapshot
from core.pricing import format_usd


class ApiModel(BaseModel):
    """A request or response body: closed (unknown fields refused, and documented as such), strict, immutable."""

    # Python names that are keywords (`from`) are aliases: answers use the alias, code may use either.
    # Fields with defaults are still in every answer: the serialization schema says so (required).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        serialize_by_alias=True,
        validate_by_name=True,
        validate_by_alias=True,
        json_schema_serialization_defaults_required=True,
    )


# US dollars as a decimal string ("0.0000102"), from integer nano-dollars inside the service.
Usd = Annotated[
    int,
    PlainSerializer(format_usd, return_type=str, when_used="json"),
    Field(json_schema_extra={"pattern": r"^-?\d+\.\d{6,9}$", "description": "US dollars as a decimal string"}),
]


class QuotaBlock(ApiModel):
    """The calendar month's allowance of an account and where it stands (the relay answer's `quota`)."""

    limit_tokens: Annotated[int, Field(ge=0)]
    used_tokens: Annotated[int, Field(ge=0)]
    remaining_tokens: Annotated[int, Field(ge=0)]
    period_end: EpochMs

    @classmethod
    def of(cls, snapshot: QuotaSnapshot) -> QuotaBlock:
        return cls(
            limit_tokens=snapshot.limit_tokens,
            used_tokens=snapshot.used_tokens,
            remaining_tokens=snapshot.remaining_tokens,
            period_end=snapshot.period_end,
        )


class AccountQuota(QuotaBlock):
    """An account's quota block with its credit balance (GET /api/admin/accounts/{account_id})."""

    credit_balance_tokens: int

    @classmethod
    def of(cls, snapshot: QuotaSnapshot) -> AccountQuota:
        return cls(**QuotaBlock.of(snapshot).model_dump(), credit_balance_tokens=snapshot.credit_balance)


class QuotaDetail(QuotaBlock):
    """The quota block plus what makes up the allowance and what is held for calls in flight."""

    reserved_tokens: int
    period_start: EpochMs
    monthly_tokens: int
    overage_band_tokens: int
    credit_tokens: int
    credit_balance_tokens: int

    @classmethod
    def of(cls, snapshot: QuotaSnapshot) -> QuotaDetail:
        return cls(
            **QuotaBlock.of(snapshot).model_dump(),
            reserved_tokens=snapshot.reserved_tokens,
            period_start=snapshot.period_start,
            monthly_tokens=snapshot.monthly_tokens,
            overage_band_tokens=snapshot.overage_band_tokens,
            credit_tokens=snapshot.credit_tokens,
            credit_balance_tokens=snapshot.credit_balance,
        )


def partial(model: type[BaseModel], name: str) -> type[Changes]:
    """An update body: `model`'s fields with their rules, each optional. A field left out is not changed (read the
    sent ones with `model_dump(exclude_unset=True)`); null is accepted only where the field itself takes null."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[field_name] = (annotation, Field(default=None, description=info.description))
    doc = f"Any of the fields of {model.__name__}; those left out keep their value."
    return create_model(name, __base__=Changes, __doc__=doc, **fields)


class Changes(ApiModel):
    """Base of the update bodies `partial` makes."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    def sent(self) -> dict[str, Any]:
        """The fields the client sent, checked; a 400 when it sent none."""
        fields = self.model_dump(exclude_unset=True)
        if not fields:
            raise bad_request("nothing to update")
        return fields
