"""How the domain's errors (core/errors.py) map onto the contract's envelope: status, code, message, details."""

from __future__ import annotations

import math

from api.errors import ApiError, rate_limited
from api.shapes import QuotaBlock
from core.errors import (
    AccountLocked,
    ChannelRefused,
    Conflict,
    Forbidden,
    GatewayError,
    LimitReached,
    NotConfigured,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StorageUnavailable,
    UpstreamUnavailable,
    ValueOutOfRange,
    WindowClosed,
)


def from_domain(exc: GatewayError) -> ApiError:
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", f"{exc.what} not found")
    if isinstance(exc, Forbidden):
        return ApiError(403, "forbidden", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, WindowClosed):
        return ApiError(409, "window_closed", str(exc))
    if isinstance(exc, ChannelRefused):
        return ApiError(502, "upstream_unavailable", str(exc))
    if isinstance(exc, StorageUnavailable):
        return ApiError(
            503, "service_unavailable", "the database is busy; please retry shortly", headers={"Retry-After": "1"}
        )
    if isinstance(exc, ValueOutOfRange):
        return ApiError(400, "bad_request", "a value is outside the range this gateway can store")
    if isinstance(exc, LimitReached):
        return ApiError(409, "limit_reached", str(exc))
    if isinstance(exc, NotConfigured):
        return ApiError(503, "not_configured", str(exc))
    if isinstance(exc, AccountLocked):
        return ApiError(403, "account_locked", str(exc))
    if isinstance(exc, QuotaExceeded):
        quota = QuotaBlock.of(exc.snapshot).model_dump(mode="json")
        return ApiError(429, "quota_exceeded", str(exc), details={"quota": quota})
    if isinstance(exc, RateLimited):
        seconds = max(1, math.ceil(exc.retry_after))
        return rate_limited(f"{exc}; try again in {seconds} s", seconds)
    if isinstance(exc, UpstreamUnavailable):
        status = 503 if exc.temporary else 502
        return ApiError(
            status,
            "upstream_unavailable",
            "the AI model could not answer; nothing was charged. Please try again later.",
            details={"upstream_code": exc.code},
        )
    return ApiError(500, "internal_error", "something went wrong on our side")
