"""Value rules shared by the domain records and every API body, as reusable annotations (pydantic v2).

One rule each, written once: a text field is trimmed, not empty, free of NUL (PostgreSQL refuses it), valid
Unicode (a lone UTF-16 surrogate is legal JSON but not text) and bounded; a credential is visible ASCII only (it
travels in headers and query strings, where a line break would be refused or injected); a whole number is never a
string or a boolean, and 48.0 is the integer 48 (as in JSON Schema); a number is finite. Timestamps are epoch
milliseconds inside the service and RFC 3339 UTC strings in every JSON answer.

Errors raised here carry a reason without the field's name ("may not be empty"); the API layer puts the name in
front ("'name' may not be empty") and the name into `details.field`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from core.clock import iso_utc

# Strings inside lists (and fields that set no bound of their own) are at most this long.
DEFAULT_MAX_CHARS = 200
MAX_LIST_ITEMS = 100
CREDENTIAL_PATTERN = "^[!-~]+$"  # visible ASCII, at least one character, nothing else
_CREDENTIAL = re.compile(r"[!-~]+")
# A JSON schema key the document builder replaces with a configured bound (api/openapi.py); validation reads the
# same bound from the validation context, so the document and the check cannot disagree.
LIMIT_KEY = "x-limit"


@dataclass(frozen=True, slots=True)
class Text:
    """A trimmed, non-empty, NUL-free string of at most `max_length` characters.

    `limit` names a configured bound (for example "max_message_chars") that replaces `max_length` when the
    validation context carries it: `{"limits": {"max_message_chars": 4000}}`.
    """

    max_length: int = DEFAULT_MAX_CHARS
    limit: str | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(minLength=1, maxLength=self.max_length, pattern=r"\S")
        if self.limit is not None:
            json_schema[LIMIT_KEY] = self.limit
        return json_schema

    def _check(self, value: str, info: core_schema.ValidationInfo) -> str:
        return check_text(value, _bound(self.max_length, self.limit, info))


@dataclass(frozen=True, slots=True)
class Credential:
    """An access token, app secret or verify token: visible ASCII, at most `max_length`; never shown back."""

    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(minLength=1, maxLength=self.max_length, pattern=CREDENTIAL_PATTERN, writeOnly=True)
        return json_schema

    def _check(self, value: str) -> str:
        if not _CREDENTIAL.fullmatch(value):
            raise PydanticCustomError(
                "credential_chars",
                "may contain only visible ASCII characters (no spaces, line breaks or control characters)",
            )
        if len(value) > self.max_length:
            raise PydanticCustomError("text_too_long", "is longer than {max_length} characters", _max(self.max_length))
        return value


@dataclass(frozen=True, slots=True)
class NotNull:
    """On `X | None = None`: the field may be left out (then it is None), but not sent as null.

    For optional fields whose absence means "the default" and for which null means nothing: `{"bot_id": null}` is
    a client's mistake worth a 400, not a silent default. The documented schema is X's alone.
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(_refuse_null, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        branches = [b for b in json_schema.get("anyOf", ()) if b != {"type": "null"}]
        if len(branches) == 1:
            rest = {key: value for key, value in json_schema.items() if key not in ("anyOf", "default")}
            return {**branches[0], **rest}
        return json_schema


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("not_null", "may not be null")
    return value


def check_text(value: str, max_length: int = DEFAULT_MAX_CHARS) -> str:
    """The rule of `Text`, for callers outside a model: trimmed, not empty, no NUL, bounded."""
    value = value.strip()
    if not value:
        raise PydanticCustomError("text_empty", "may not be empty")
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # `"\ud800"` is legal JSON but not text: a lone UTF-16 surrogate cannot be stored or sent anywhere.
        raise PydanticCustomError("text_surrogate", "is not valid Unicode text (lone surrogate)") from None
    if len(value) > max_length:
        raise PydanticCustomError("text_too_long", "is longer than {max_length} characters", _max(max_length))
    return value


def _bound(default: int, limit: str | None, info: core_schema.ValidationInfo) -> int:
    if limit is None or not isinstance(info.context, dict):
        return default
    limits = info.context.get("limits")
    value = getattr(limits, limit, None) if limits is not None else None
    return value if isinstance(value, int) else default


def _max(max_length: int) -> dict[str, Any]:
    return {"max_length": max_length}


def _whole(value: Any) -> Any:
    """48.0 is the integer 48 in JSON (and in JSON Schema); anything else goes on to the strict integer check."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _unique_names(values: list[str]) -> list[str]:
    items = list(dict.fromkeys(values))  # duplicates dropped, order kept
    if len(items) > MAX_LIST_ITEMS:
        raise PydanticCustomError(
            "list_too_long", "may hold at most {max_items} entries", {"max_items": MAX_LIST_ITEMS}
        )
    return items


# Markers after an int's or float's bounds: `Annotated[int, Field(ge=1, le=10), WholeNumber]`. Bounds first, so
# they stay JSON Schema's minimum and maximum. A whole number is never a string or a boolean (the models are
# strict) and 48.0 is 48; a number is finite (integers are numbers too).
WholeNumber = BeforeValidator(_whole)
Finite = Field(allow_inf_nan=False)
# One of a fixed set of words, surrounding spaces ignored: use as `Annotated[Literal[...], Choice]`.
Choice = BeforeValidator(_stripped)
# A non-empty list of distinct short texts (model names): duplicates dropped, at most MAX_LIST_ITEMS distinct.
Names = Annotated[list[Annotated[str, Text()]], Field(min_length=1), AfterValidator(_unique_names)]

# Epoch milliseconds inside the service; an RFC 3339 UTC string (second precision) in JSON answers.
EpochMs = Annotated[
    int,
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}, mode="serialization"),
]
