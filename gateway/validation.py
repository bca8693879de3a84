"""Reading and checking JSON bodies: a clear 400 naming the field, never a 500 or a silent default."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.errors import ApiError, bad_request
from gateway.keys import SETTINGS

# Bounds for fields that do not set their own: list entries and strings inside lists.
_MAX_LIST_ITEMS = 100
_MAX_STRING = 200
# The names (never the values) of the fields a JSON body carried, for the audit trail (admin/audit.py).
BODY_FIELDS = web.RequestKey("body_fields", tuple)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type  # str, int, float, bool or list (of strings)
    required: bool = False
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    choices: Sequence[str] | None = None
    # A credential (access token, app secret, verify token): visible ASCII only, no spaces or control characters.
    # They travel in HTTP headers and query strings, where a newline would be refused (or worse, injected).
    credential: bool = False


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it passes `limit` bytes (declared or streamed, chunked included)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        raise bad_request("a JSON object body is required")
    raw = await read_limited(request, request.config_dict[SETTINGS].max_body_bytes)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("the body is not valid JSON (or is nested too deeply)") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    request[BODY_FIELDS] = tuple(body)
    return body


def validate(body: Mapping[str, Any], fields: Sequence[Field], *, partial: bool = False) -> dict[str, Any]:
    """The known fields of `body`, checked; unknown fields are refused so typos and injected keys are visible."""
    known = {f.name: f for f in fields}
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}", fields=unknown)
    clean: dict[str, Any] = {}
    for f in fields:
        if f.name not in body:
            if f.required and not partial:
                raise bad_request(f"'{f.name}' is required", field=f.name)
            continue
        clean[f.name] = _check(f, body[f.name])
    if partial and not clean:
        raise bad_request("nothing to update")
    return clean


def _check(f: Field, value: Any) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise bad_request(f"'{f.name}' may not be null", field=f.name)
    if f.kind is list:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise bad_request(f"'{f.name}' must be a non-empty list of strings", field=f.name)
        items = list(dict.fromkeys(_text(f, v.strip()) for v in value))  # duplicates dropped, order kept
        if len(items) > _MAX_LIST_ITEMS:
            raise bad_request(f"'{f.name}' may hold at most {_MAX_LIST_ITEMS} entries", field=f.name)
        return items
    if f.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if f.kind is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)  # 48.0 is the integer 48 in JSON (and in JSON Schema, which the OpenAPI document uses)
    if not isinstance(value, f.kind) or (f.kind is not bool and isinstance(value, bool)):
        raise bad_request(f"'{f.name}' must be {_kind_name(f.kind)}", field=f.name)
    if isinstance(value, str) and f.credential and not _CREDENTIAL.fullmatch(value):
        raise bad_request(
            f"'{f.name}' may contain only visible ASCII characters (no spaces, line breaks or control characters)",
            field=f.name,
        )
    if isinstance(value, str):
        value = _text(f, value.strip())
        if f.choices is not None and value not in f.choices:
            raise bad_request(f"'{f.name}' must be one of: {', '.join(f.choices)}", field=f.name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise bad_request(f"'{f.name}' must be a finite number", field=f.name)
        if f.min is not None and value < f.min:
            raise bad_request(f"'{f.name}' must be at least {f.min:g}", field=f.name)
        if f.max is not None and value > f.max:
            raise bad_request(f"'{f.name}' must be at most {f.max:g}", field=f.name)
    return value


_CREDENTIAL = re.compile(r"[!-~]+")
CREDENTIAL_PATTERN = "^[!-~]+$"  # the same rule in JSON Schema terms, for the OpenAPI document


def _text(f: Field, value: str) -> str:
    """A string we can store and send on: not empty, no NUL (PostgreSQL refuses it), valid Unicode, bounded."""
    if not value:
        raise bad_request(f"'{f.name}' may not be empty", field=f.name)
    if "\x00" in value:
        raise bad_request(f"'{f.name}' may not contain NUL characters", field=f.name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # `"\ud800"` is legal JSON but not text: a lone UTF-16 surrogate cannot be stored or sent anywhere.
        raise bad_request(f"'{f.name}' is not valid Unicode text (lone surrogate)", field=f.name) from None
    limit = f.max_length if f.max_length is not None else _MAX_STRING
    if len(value) > limit:
        raise bad_request(f"'{f.name}' is longer than {limit} characters", field=f.name)
    return value


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(kind, str(kind))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
