"""Query-string models: parameters arrive as text, so these rules read text into numbers and instants.

Every bad value is a 400 naming the parameter; nothing falls back silently. Unknown parameters are ignored
unless a model says otherwise (`extra="forbid"`, for routes whose every parameter changes the answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# Up to the last millisecond of year 9999: what datetime can render back as ISO-8601.
MAX_INSTANT_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class QueryModel(BaseModel):
    """The parameters of one route's query string (each given once; the first value counts)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


@dataclass(frozen=True, slots=True)
class Count:
    """A whole number from `low` to `high` written in ASCII digits (no sign, no spaces, no exponent)."""

    low: int
    high: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self._check)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}

    def _check(self, raw: object) -> int:
        # Length first: int() of thousands of digits is slow, and refused past 4,300 of them.
        digits = len(str(self.high))
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= digits + 3):
            raise self._problem()
        value = int(raw)
        if not self.low <= value <= self.high:
            raise self._problem()
        return value

    def _problem(self) -> PydanticCustomError:
        return PydanticCustomError(
            "query_count", "must be a whole number from {low} to {high}", {"low": self.low, "high": self.high}
        )


@dataclass(frozen=True, slots=True)
class Instant:
    """Epoch milliseconds, or ISO-8601 (`2026-03-01`, `2026-03-01T12:00:00Z`; no offset means UTC)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(parse_instant)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "minLength": 1, "examples": ["2026-03-01T00:00:00Z", "1772323200000"]}


def parse_instant(raw: object) -> int:
    if not isinstance(raw, str):
        raise PydanticCustomError("query_instant", "must be epoch milliseconds or an ISO-8601 time")
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= 16:
        value = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise PydanticCustomError(
                "query_instant", "must be epoch milliseconds or an ISO-8601 time such as 2026-03-01T00:00:00Z"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # Exact integer arithmetic: float timestamps would be off by a millisecond now and then.
        value = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= value <= MAX_INSTANT_MS:
        raise PydanticCustomError("query_instant_range", "is out of range (1970 to 9999)")
    return value


# An account id in a query string (`account_id`), as the JWT surfaces take it: any non-empty string, so that an id
# that is not the caller's is a 404 (like one that does not exist), never a 400 that would tell them apart.
AccountId = Annotated[str, Field(min_length=1)]


class AccountQuery(QueryModel):
    account_id: AccountId | None = Field(
        default=None,
        description="admin: one account (an unknown id is 404); owner or viewer: only their own (another "
        "account's id is 404)",
    )
