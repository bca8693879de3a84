"""Typed request input: a body or query string becomes a model, or a clear 400 naming the field.

A handler declares what it reads in its signature: `body: Body[BotSettings]`, `query: Query[UsageQuery]`. The
operation table reads the same annotations to document the operation (api/openapi.py), so what is documented is
what is checked. Input is parsed when the handler asks for it (`await body.parse()`), not before: a handler
first settles who is asking and which object (401, 403, 404) and only then looks at the body (400), as clients
of this service have always seen.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args, get_origin
from urllib.parse import parse_qs

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from api.errors import ApiError, ClientDisconnected, bad_request

M = TypeVar("M", bound=BaseModel)

# The names (never the values) of the fields a JSON body carried, for the audit trail (api/audit_trail.py).
BODY_FIELDS = web.RequestKey("body_fields", tuple)


@dataclass(frozen=True, slots=True)
class Limits:
    """Configured bounds the bodies are checked against (and documented with)."""

    max_body_bytes: int
    max_message_chars: int
    # The whole body must arrive within this many seconds of the handler asking for it: a client that sends
    # headers and then trickles (or stops) cannot hold a connection and a handler open indefinitely.
    body_read_seconds: float


LIMITS = web.AppKey("api.limits", Limits)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it passes `limit` bytes (declared or streamed, chunked included), or 408
    when it has not all arrived within the configured time. A client that hangs up meanwhile is ClientDisconnected
    (not an error of ours: the frame logs it and answers no one)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
    content = request.content
    if content.is_eof():  # all of it came with the headers (most API calls): no timer, no reading loop
        try:
            whole = content.read_nowait()
        except ConnectionError:  # the client hung up once it had sent it
            raise ClientDisconnected() from None
        if len(whole) > limit:
            raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
        return whole
    seconds = request.config_dict[LIMITS].body_read_seconds
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        # The rest will not be waited for: without this, aiohttp would linger up to 10 s reading it before closing.
        content.feed_eof()
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {seconds:g} s", close=True
        ) from None
    except ConnectionError:
        raise ClientDisconnected() from None
    return b"".join(chunks)


class Body(Generic[M]):
    """A JSON object body, checked against `M` when the handler parses it."""

    required = True

    def __init__(self, request: web.Request, model: type[M]) -> None:
        self._request = request
        self.model = model

    async def parse(self) -> M:
        if not self._request.can_read_body:
            if not self.required:
                return self.model()
            raise bad_request("a JSON object body is required")
        limits = self._request.config_dict[LIMITS]
        raw = await read_limited(self._request, limits.max_body_bytes)
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise bad_request("the body is not valid JSON (or is nested too deeply)") from None
        if not isinstance(data, dict):
            raise bad_request("the body must be a JSON object")
        self._request[BODY_FIELDS] = tuple(data)
        return validate(self.model, data, limits)


class OptionalBody(Body[M]):
    """A body that may be left out altogether (then every field takes its default)."""

    required = False


class Query(Generic[M]):
    """The query string, checked against `M` (each parameter once; the first value counts, as in aiohttp)."""

    def __init__(self, request: web.Request, model: type[M]) -> None:
        self._request = request
        self.model = model

    def parse(self) -> M:
        query = self._request.query
        return validate(self.model, {name: query[name] for name in query}, None, noun="query parameter(s)")

    def parse_field(self, name: str) -> Any:
        """One parameter alone, by its own rule (its default when absent): for the one a handler must settle
        before the others, as the account a request is about (another account's is a 404 whatever else is wrong)."""
        info = self.model.model_fields[name]
        raw = self._request.query.get(info.alias or name)
        if raw is None:
            return info.get_default(call_default_factory=True)
        adapter = _field_adapter(self.model, name)
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            errors = [ErrorDetails(**{**error, "loc": (info.alias or name, *error["loc"])}) for error in exc.errors()]
            raise _bad_input(self.model, errors, "query parameter(s)") from None


class Form(Generic[M]):
    """An application/x-www-form-urlencoded body, each field sent exactly once."""

    def __init__(self, request: web.Request, model: type[M]) -> None:
        self._request = request
        self.model = model

    async def parse(self) -> M:
        limits = self._request.config_dict[LIMITS]
        raw = await read_limited(self._request, limits.max_body_bytes)
        form = parse_qs(raw.decode("utf-8", "replace"))
        for name, values in form.items():
            if len(values) != 1:
                raise bad_request(f"the form field {name} must be sent once", field=name)
        return validate(self.model, {name: values[0] for name, values in form.items()}, limits)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent as multipart/form-data (its `file` field), with the form's short text fields."""

    filename: str | None
    content_type: str | None
    data: bytes
    fields: Mapping[str, str]


# The multipart form's text fields are short (a title); anything longer is not what the form is for.
_MAX_FORM_FIELD_BYTES = 4096


class JsonOrUpload(Body[M]):
    """A JSON object body checked against `M`, or a multipart/form-data upload of a `file` field (bounded by
    `upload_limit`, which the handler passes: an upload's limit is not a JSON body's)."""

    async def parse_either(self, upload_limit: int) -> M | Upload:
        if self._request.content_type != "multipart/form-data":
            return await self.parse()
        seconds = self._request.config_dict[LIMITS].body_read_seconds
        try:
            async with asyncio.timeout(seconds):
                return await _read_upload(self._request, upload_limit)
        except TimeoutError:
            self._request.content.feed_eof()
            raise ApiError(
                408, "request_timeout", f"the request body did not arrive within {seconds:g} s", close=True
            ) from None
        except ConnectionError:
            raise ClientDisconnected() from None
        except (ValueError, AssertionError, HttpProcessingError):  # what aiohttp's multipart reader raises
            raise bad_request("the multipart/form-data body is malformed") from None


async def _read_upload(request: web.Request, limit: int) -> Upload:
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, "payload_too_large", f"the file is larger than {limit} bytes")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, HttpProcessingError):
        raise bad_request("the multipart/form-data body is malformed") from None
    file: Upload | None = None
    fields: dict[str, str] = {}
    while True:
        try:
            part = await reader.next()
        except (ValueError, HttpProcessingError):  # a part's headers that are not HTTP headers (InvalidHeader)
            raise bad_request("the multipart/form-data body is malformed") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise bad_request("nested multipart bodies are not accepted")
        name = part.name or ""
        if name == "file":
            if file is not None:
                raise bad_request("send one file per request", field="file")
            data = await _read_part(part, limit, f"the file is larger than {limit} bytes", status=413)
            file = Upload(part.filename, part.headers.get("Content-Type"), data, {})
        elif name:
            raw = await _read_part(part, _MAX_FORM_FIELD_BYTES, f"the form field {name} is too long", status=400)
            try:
                fields[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request(f"the form field {name} is not UTF-8 text", field=name) from None
    if file is None:
        raise bad_request("the form has no 'file' field", field="file")
    return Upload(file.filename, file.content_type, file.data, fields)


async def _read_part(part: BodyPartReader, limit: int, too_large: str, *, status: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            if status == 413:
                raise ApiError(413, "payload_too_large", too_large)
            raise bad_request(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def input_kind(annotation: Any) -> tuple[Literal["body", "query", "form"], type[BaseModel], bool] | None:
    """For a handler parameter's annotation: what it reads, its model, and whether it is required."""
    origin = get_origin(annotation)
    if origin is None or not isinstance(origin, type):
        return None
    args = get_args(annotation)
    if issubclass(origin, Body):
        return "body", args[0], origin.required
    if issubclass(origin, Query):
        return "query", args[0], False
    if issubclass(origin, Form):
        return "form", args[0], True
    return None


def validate(model: type[M], data: Mapping[str, Any], limits: Limits | None, *, noun: str = "field(s)") -> M:
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise _bad_input(model, exc.errors(), noun) from None


def _bad_input(model: type[BaseModel], errors: Sequence[ErrorDetails], noun: str) -> ApiError:
    """One 400 for the first problem; unknown fields first, all of them named (typos and injected keys)."""
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"])
    if unknown:
        return bad_request(f"unknown {noun}: {', '.join(unknown)}", fields=unknown)
    error = errors[0]
    loc = error["loc"]
    field = str(loc[0]) if loc else str((error.get("ctx") or {}).get("field", ""))
    if not field:  # a rule of the whole body (which fields go together), not of one field
        return bad_request(f"the body does not fit: {_reason(model, field, error)}")
    return bad_request(f"'{field}' {_reason(model, field, error)}", field=field)


_TYPE_NAMES = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
}


def _reason(model: type[BaseModel], field: str, error: ErrorDetails) -> str:
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    item = f"entry {loc[1]} " if len(loc) > 1 and isinstance(loc[1], int) else ""
    if kind == "missing":
        return "is required"
    if error["input"] is None and (kind in _TYPE_NAMES or kind.endswith("_type")):
        return f"{item}may not be null"
    if kind in _TYPE_NAMES:
        return item + _TYPE_NAMES[kind]
    if kind == "string_unicode":
        return f"{item}is not valid Unicode text (lone surrogate)"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {_number(ctx.get('ge', ctx.get('gt')))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {_number(ctx.get('le', ctx.get('lt')))}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("too_short", "string_too_short"):
        return "may not be empty"
    if kind == "too_long":
        return f"may hold at most {ctx.get('max_length')} entries"
    if kind in ("literal_error", "enum"):
        return f"must be one of: {', '.join(_choices(model, field))}"
    if kind.startswith(("text_", "credential_", "list_", "not_", "query_")):
        return item + str(error["msg"])  # our own rules (core/fields.py) say why in words already
    return f"{item}is not valid: {error['msg']}"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _choices(model: type[BaseModel], field: str) -> list[str]:
    info = model.model_fields.get(field)
    if info is None:
        return []
    return [str(choice) for choice in _literal_values(info.annotation)]


def _literal_values(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    found: list[Any] = []
    for arg in get_args(annotation):
        found += _literal_values(arg)
    return found


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
