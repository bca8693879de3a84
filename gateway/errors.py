"""The contract's error envelope, and how domain errors map onto it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from core.clock import iso_utc
from core.errors import (
    AccountLocked,
    Conflict,
    GatewayError,
    NotConfigured,
    NotFound,
    QuotaExceeded,
    RateLimited,
    UpstreamUnavailable,
)
from core.models import QuotaSnapshot


class ApiError(Exception):
    """An answer other than 2xx, raised from handlers and middlewares."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers

    def response(self) -> web.Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = dict(self.details)
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "bad_request", message, details=details or None)


def quota_json(snapshot: QuotaSnapshot) -> dict[str, Any]:
    return {
        "limit_tokens": snapshot.limit_tokens,
        "used_tokens": snapshot.used_tokens,
        "remaining_tokens": snapshot.remaining_tokens,
        "period_end": iso_utc(snapshot.period_end),
    }


def from_domain(exc: GatewayError) -> ApiError:
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", f"{exc.what} not found")
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, NotConfigured):
        return ApiError(503, "not_configured", str(exc))
    if isinstance(exc, AccountLocked):
        return ApiError(403, "account_locked", str(exc))
    if isinstance(exc, QuotaExceeded):
        return ApiError(429, "quota_exceeded", str(exc), details={"quota": quota_json(exc.snapshot)})
    if isinstance(exc, RateLimited):
        seconds = max(1, math.ceil(exc.retry_after))
        return ApiError(
            429,
            "rate_limited",
            f"{exc} ; try again in {seconds} s".replace(" ;", ";"),
            details={"retry_after_seconds": seconds},
            headers={"Retry-After": str(seconds)},
        )
    if isinstance(exc, UpstreamUnavailable):
        status = 503 if exc.temporary else 502
        return ApiError(
            status,
            "upstream_unavailable",
            "the AI model could not answer; nothing was charged. Please try again later.",
            details={"upstream_code": exc.code},
        )
    return ApiError(500, "internal_error", "something went wrong on our side")
