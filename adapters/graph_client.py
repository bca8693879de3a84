"""The Graph API transport: one shared aiohttp session, one small method.

The access token travels in the Authorization header, never in the URL, so it cannot leak into access logs or
error messages. Failures come back classified (adapters/graph_errors.py), never as raw exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.graph_errors import GraphAction, GraphFailure, classify
from adapters.replies import GraphRequest

# A Graph send that takes longer than this is treated as failed and retried; Meta answers in well under a second.
SEND_TIMEOUT_SECONDS = 15.0
# An operator or owner is waiting on the answer (connecting a channel): fail fast and let them try again.
READ_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class GraphRead:
    """The answer to a GET: the decoded body when ok, else the classified failure."""

    ok: bool
    body: Any = None
    failure: GraphFailure | None = None


@dataclass(frozen=True, slots=True)
class GraphResult:
    ok: bool
    message_id: str | None = None  # Messenger/Instagram `message_id`, WhatsApp `messages[0].id`
    failure: GraphFailure | None = None


class GraphClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        version: str,
        on_failure: Callable[[GraphFailure], None] | None = None,
    ) -> None:
        self._session = session
        self._root = f"{base_url.rstrip('/')}/{version}"
        self._on_failure = on_failure  # told of every failed send (the service counts them for /metrics)

    async def send(self, request: GraphRequest, access_token: str) -> GraphResult:
        result = await self._send(request, access_token)
        if result.failure is not None and self._on_failure is not None:
            self._on_failure(result.failure)
        return result

    async def _send(self, request: GraphRequest, access_token: str) -> GraphResult:
        url = f"{self._root}/{request.path}"
        headers = {"Authorization": f"Bearer {access_token}"}
        try:
            async with self._session.post(
                url, json=request.body, headers=headers, timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_SECONDS)
            ) as response:
                raw = await response.read()
                if response.status == 200:
                    return GraphResult(True, _message_id(raw))
                return GraphResult(False, failure=classify(response.status, raw, dict(response.headers)))
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Connection failures and timeouts: the message may or may not have gone out; Graph sends have no
            # idempotency key, so a retry can duplicate it. That is the documented trade-off (at most the sends
            # in flight), preferred to losing the reply.
            message = f"graph transport error: {type(exc).__name__}"
            return GraphResult(False, failure=GraphFailure(GraphAction.RETRY, None, None, message, None))

    async def read(self, path: str, access_token: str, *, fields: str) -> GraphRead:
        """GET /{version}/{path}?fields=...; used to check what a token controls before a channel is saved."""
        url = f"{self._root}/{path}"
        headers = {"Authorization": f"Bearer {access_token}"}
        try:
            timeout = aiohttp.ClientTimeout(total=READ_TIMEOUT_SECONDS)
            async with self._session.get(url, params={"fields": fields}, headers=headers, timeout=timeout) as response:
                raw = await response.read()
                if response.status == 200:
                    try:
                        return GraphRead(True, json.loads(raw))
                    except ValueError:
                        message = "graph answered 200 with a body that is not JSON"
                        return GraphRead(False, failure=GraphFailure(GraphAction.RETRY, None, None, message, None))
                return GraphRead(False, failure=classify(response.status, raw, dict(response.headers)))
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = f"graph transport error: {type(exc).__name__}"
            return GraphRead(False, failure=GraphFailure(GraphAction.RETRY, None, None, message, None))


def _message_id(raw: bytes) -> str | None:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    message_id = body.get("message_id")
    if isinstance(message_id, str):
        return message_id
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        return found if isinstance(found, str) else None
    return None
