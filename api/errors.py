"""The contract's error envelope: `{"error": {"code", "message", "details"?}}`, raised as ApiError.

How the domain's own errors become envelopes is api/envelope.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


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
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
        self.close = close  # end the connection after this answer (the client's stream is in an unknown state)

    def response(self) -> web.Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = dict(self.details)
        response = web.json_response({"error": error}, status=self.status, headers=self.headers)
        if self.close:
            response.force_close()
        return response


class ClientDisconnected(Exception):
    """The client went away while its request body was being read: nobody is left to answer."""


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "bad_request", message, details=details or None)


def rate_limited(message: str, retry_after_seconds: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        message,
        details={"retry_after_seconds": retry_after_seconds},
        headers={"Retry-After": str(retry_after_seconds)},
    )
