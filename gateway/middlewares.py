"""The middlewares every route shares: request id and access line, the relay counter, then the error envelope."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from api.envelope import from_domain
from api.errors import ApiError, ClientDisconnected
from core.errors import GatewayError, StorageUnavailable
from gateway.keys import METRICS

log = structlog.get_logger("gateway.http")

REQUEST_ID_HEADER = "X-Request-Id"
RELAY_PATH = "/api/messages/relay"
CLIENT_CLOSED_REQUEST = 499
# A caller's own request id is kept only if it is short and plain, so it cannot forge log content.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else f"req_{secrets.token_hex(8)}"
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:  # a redirect or a refusal raised as a response
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED_REQUEST  # the handler was cancelled because the client went away (or at shutdown)
        raise
    finally:
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )


@web.middleware
async def count_relay(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts relay answers by status. Sits outside the error envelope, so it sees the status actually sent."""
    response = await handler(request)
    if request.path == RELAY_PATH:
        request.app[METRICS].relay_requests.labels(str(response.status)).inc()
    return response


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except ClientDisconnected:
        # Not our failure and not a 500: the client hung up before its body arrived. Nobody reads this answer;
        # 499 (nginx's "client closed request") is what the access line and the relay counter record.
        log.info("client_disconnected", method=request.method, path=request.path)
        response = web.Response(status=CLIENT_CLOSED_REQUEST)
        response.force_close()
        return response
    except GatewayError as exc:
        if isinstance(exc, StorageUnavailable):
            # Busy, locked, full or unreachable database: nothing was stored; the caller is told to retry.
            log.warning("database_unavailable", method=request.method, path=request.path, error=str(exc))
        return from_domain(exc).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = {
            404: "no such route",
            405: f"method {request.method} is not allowed here",
            413: "the request body is too large",
        }.get(exc.status, exc.reason)
        return ApiError(exc.status, code, message, headers=_kept_headers(exc)).response()
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return ApiError(500, "internal_error", "something went wrong on our side; it has been logged").response()


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
