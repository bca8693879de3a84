"""Fault values, error bodies and request validation for `sandbox.fakes.openai_server`.

A `Fault` is a small frozen value describing one way a chat-completions request can go wrong.
Build them with the class-method constructors (`Fault.rate_limit(retry_after=1.5)`,
`Fault.reset()`, ...) and hand them to `FakeOpenAI.script(...)` or `FakeOpenAI.random_faults`.
Error bodies follow the real API: `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    SERVER_ERROR = "server_error"
    OVERLOADED = "overloaded"
    BAD_REQUEST = "bad_request"
    HTTP_ERROR = "http_error"
    HANG = "hang"
    SLOW = "slow"
    MALFORMED = "malformed"
    RESET = "reset"
    STREAM_CUT = "stream_cut"
    STREAM_ERROR = "stream_error"


MSG_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
MSG_OVERLOADED = "The engine is currently overloaded, please try again later."
MSG_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
MSG_MAX_TOKENS = "'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
MSG_TEMPERATURE = "'temperature' does not support {value} with this model. Only the default (1) value is supported."
MSG_CONTEXT = (
    "This model's maximum context length is {window} tokens. However, your messages resulted in "
    "{tokens} tokens. Please reduce the length of the messages."
)
_BAD_REQUEST_DEFAULTS: dict[str, tuple[str, str | None]] = {  # code -> (message, param)
    "context_length_exceeded": (MSG_CONTEXT.format(window=128000, tokens=130000), "messages"),
    "unsupported_parameter": (MSG_MAX_TOKENS, "max_tokens"),
    "unsupported_value": (MSG_TEMPERATURE.format(value=0.7), "temperature"),
}


REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def is_reasoning_model(model: str) -> bool:
    """o-series and gpt-5.x: no `max_tokens`, only the default temperature, hidden reasoning tokens."""
    return model.startswith(REASONING_PREFIXES)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The exact error envelope the API uses."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def context_error(window: int, tokens: int) -> dict[str, Any]:
    msg = MSG_CONTEXT.format(window=window, tokens=tokens)
    return error_body(msg, "invalid_request_error", "messages", "context_length_exceeded")


def abort_connection(transport: asyncio.Transport | None) -> None:
    """Drop the TCP connection with a RST (SO_LINGER 0), sending nothing more."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def auth_error(authorization: str, api_key: str | None) -> dict[str, Any] | None:
    """401 body for a missing/invalid bearer token (any non-empty key passes unless `api_key` is set)."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        msg = "You didn't provide an API key. You need to provide your API key in an Authorization header "
        msg += "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    elif api_key is not None and key != api_key:
        msg = f"Incorrect API key provided: {key[:3]}***{key[-4:]}. You can find your API key at "
        msg += "https://platform.openai.com/account/api-keys."
    else:
        return None
    return error_body(msg, "invalid_request_error", None, "invalid_api_key")


def validation_error(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """400 body for a request the real API would reject before running the model, else None."""
    if body is None:
        return error_body("We could not parse the JSON body of your request.", "invalid_request_error")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        return error_body("you must provide a model parameter", "invalid_request_error")
    if not isinstance(messages, list) or not messages:
        msg = "Missing required parameter: 'messages'."
        return error_body(msg, "invalid_request_error", "messages", "missing_required_parameter")
    if is_reasoning_model(model):
        if body.get("max_tokens") is not None:
            return error_body(MSG_MAX_TOKENS, "invalid_request_error", "max_tokens", "unsupported_parameter")
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            msg = MSG_TEMPERATURE.format(value=json.dumps(temperature))
            return error_body(msg, "invalid_request_error", "temperature", "unsupported_value")
    return None


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure. Only the fields relevant to `kind` are meaningful."""

    kind: FaultKind
    status: int | None = None  # HTTP status for error-response faults
    error_type: str | None = None
    code: str | None = None
    param: str | None = None
    message: str | None = None
    retry_after: float | None = None  # seconds, for rate_limit
    seconds: float | None = None  # for slow
    after_chunks: int = 1  # content chunks sent before a stream_cut / stream_error
    abort: bool = False  # stream_cut: drop the TCP connection instead of ending the body cleanly

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def rate_limit(cls, retry_after: float = 1.0, *, limit_type: str = "tokens") -> Fault:
        """429 `rate_limit_exceeded` with `retry-after` (whole seconds) and `retry-after-ms`."""
        return cls(FaultKind.RATE_LIMIT, 429, limit_type, "rate_limit_exceeded", retry_after=retry_after)

    @classmethod
    def insufficient_quota(cls, code: str = "insufficient_quota") -> Fault:
        """429 billing failure (`code` may also be "credit_balance_exhausted"); must not be retried."""
        return cls(FaultKind.INSUFFICIENT_QUOTA, 429, "insufficient_quota", code, message=MSG_QUOTA)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(FaultKind.SERVER_ERROR, status, "server_error", None, message=MSG_SERVER_ERROR)

    @classmethod
    def overloaded(cls) -> Fault:
        """503 `service_unavailable_error` / `server_is_overloaded`."""
        return cls(
            FaultKind.OVERLOADED, 503, "service_unavailable_error", "server_is_overloaded", message=MSG_OVERLOADED
        )

    @classmethod
    def bad_request(
        cls, code: str = "context_length_exceeded", *, param: str | None = None, message: str | None = None
    ) -> Fault:
        default_message, default_param = _BAD_REQUEST_DEFAULTS.get(code, (f"Invalid request ({code}).", None))
        return cls(
            FaultKind.BAD_REQUEST,
            400,
            "invalid_request_error",
            code,
            param if param is not None else default_param,
            message if message is not None else default_message,
        )

    @classmethod
    def http_error(
        cls, status: int, *, error_type: str, code: str | None = None, message: str = "", param: str | None = None
    ) -> Fault:
        """Any other error response, e.g. `Fault.http_error(404, error_type="invalid_request_error",
        code="model_not_found")`."""
        return cls(FaultKind.HTTP_ERROR, status, error_type, code, param, message or f"Error {status}.")

    @classmethod
    def hang(cls) -> Fault:
        """Never answer; ends when the client disconnects or the server shuts down."""
        return cls(FaultKind.HANG)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally after an extra delay."""
        return cls(FaultKind.SLOW, seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """200 `application/json` whose body is truncated, invalid JSON."""
        return cls(FaultKind.MALFORMED, 200)

    @classmethod
    def reset(cls) -> Fault:
        """Close the TCP connection (RST) without sending any response."""
        return cls(FaultKind.RESET)

    @classmethod
    def stream_cut(cls, after_chunks: int = 1, *, abort: bool = False) -> Fault:
        """Streaming: stop after `after_chunks` content chunks, with no usage chunk and no [DONE].
        Non-streaming requests get a malformed (truncated) body instead."""
        return cls(FaultKind.STREAM_CUT, 200, after_chunks=after_chunks, abort=abort)

    @classmethod
    def stream_error(cls, after_chunks: int = 1) -> Fault:
        """Streaming: a `data: {"error": ...}` event after `after_chunks` content chunks.
        Non-streaming requests get a 500 `server_error` instead."""
        return cls(FaultKind.STREAM_ERROR, 200, "server_error", after_chunks=after_chunks, message=MSG_SERVER_ERROR)

    # ---- helpers used by the server ----------------------------------------------------------
    @property
    def is_error_response(self) -> bool:
        """True if the fault is answered with a 4xx/5xx JSON error body."""
        return self.status is not None and self.status >= 400

    def payload(self, model: str | None) -> dict[str, Any]:
        message = self.message or ""
        if self.kind is FaultKind.RATE_LIMIT:
            per = "tokens per min (TPM)" if self.error_type == "tokens" else "requests per min (RPM)"
            message = (
                f"Rate limit reached for {model or 'default'} in organization org-fake on {per}: "
                f"Limit 160000, Used 160000, Requested 1. Please try again in {self.retry_after}s. "
                "Visit https://platform.openai.com/account/rate-limits to learn more."
            )
        return error_body(message, self.error_type or "server_error", self.param, self.code)

    def headers(self) -> dict[str, str]:
        if self.kind is not FaultKind.RATE_LIMIT or self.retry_after is None:
            return {}
        per = "tokens" if self.error_type == "tokens" else "requests"
        return {
            "retry-after": str(math.ceil(self.retry_after)),  # whole seconds, like the API
            "retry-after-ms": str(round(self.retry_after * 1000)),
            f"x-ratelimit-remaining-{per}": "0",
            f"x-ratelimit-reset-{per}": f"{self.retry_after}s",
        }
