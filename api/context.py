"""What the frame's request middleware leaves for handlers: the request's id (gateway/middlewares.py binds it)."""

from __future__ import annotations

import structlog


def request_id() -> str | None:
    """The current request's id, as logged and answered in X-Request-Id."""
    bound = structlog.contextvars.get_contextvars().get("request_id")
    return bound if isinstance(bound, str) else None
