"""A faithful fake of Meta's Graph API send endpoints (Messenger, Instagram, WhatsApp Cloud API), for tests.

Serves `POST /{version}/{object_id}/messages` in the real wire format (meta-platforms.md §5): Messenger/Instagram
text and sender actions → `{"recipient_id", "message_id"}`, WhatsApp text → `{"messaging_product", "contacts",
"messages"}`, WhatsApp mark-read/typing → `{"success": true}`. Validates like Graph (bearer token or `access_token`
query, JSON body, recipient, text length) and answers with the real error envelope (§8). Injects `GraphFault`s
from a FIFO `script()`, each optionally limited to the requests its `match` predicate accepts, and records every
request in `requests`.

    server = await aiohttp_server(fake.app); base_url = str(server.make_url(""))  # pytest
    async with fake.serve() as base_url: ...                                 # standalone, random port
    GraphClient(session, base_url=base_url, version="v25.0")                  # the client adds /{version}/{path}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web

from sandbox.fakes.graph_assets import GraphAssets, GraphReadCall
from sandbox.fakes.openai_faults import abort_connection
from sandbox.fakes.serving import serve_app

__all__ = ["THROTTLE_CODES", "CallKind", "FakeGraph", "GraphCall", "GraphFault", "is_text_send"]

CallKind = Literal["text", "typing", "read", "other"]
Predicate = Callable[[dict[str, Any]], bool]
# Codes Meta answers with an X-Business-Use-Case-Usage header (estimated_time_to_regain_access, minutes).
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80001, 80002, 80006, 80007, 80008, 130429, 131056})
MESSENGER_MAX_CHARS = 1999  # "less than 2000 characters"
INSTAGRAM_MAX_BYTES = 1000  # "1000 bytes or less"
WHATSAPP_MAX_CHARS = 4096
MSG_NO_TOKEN = "An active access token must be used to query information about the current user."
MSG_EXPIRED = "Error validating access token: Session has expired on Thursday, 01-Jan-26 00:00:00 PST."
# The usual `message` per code, used when a fault gives none (WhatsApp copies it into error_data.details).
_MESSAGES: dict[int, str] = {
    1: "An unknown error has occurred.",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) This message is sent outside of allowed window.",
    100: "(#100) Invalid parameter",
    190: MSG_EXPIRED,
    551: "This person isn't available right now.",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80007: "(#80007) Rate limit issues",
    130429: "(#130429) Rate limit hit",
    131026: "(#131026) Message Undeliverable.",
    131047: "(#131047) Re-engagement message: more than 24 hours have passed since the customer last replied.",
    131056: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
}


def graph_error(
    code: int, subcode: int | None, message: str, trace: str, details: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The Graph error envelope; `details` (WhatsApp) adds `error_data`; `error_subcode` only when there is one."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": {**error, **extra, "fbtrace_id": trace}}


@dataclass(frozen=True, slots=True)
class GraphFault:
    """One scripted fault: a Graph error response (the default), `hang()`, `reset()` or `slow(seconds)`."""

    code: int
    subcode: int | None = None
    http_status: int = 400
    message: str = ""  # "" = the usual message for `code`
    retry_after_minutes: int | None = None  # estimated_time_to_regain_access in X-Business-Use-Case-Usage
    details: str = ""  # WhatsApp error_data.details; "" = the message
    is_transient: bool | None = None  # Graph's own flag; omitted from the body when None
    match: Predicate | None = field(default=None, compare=False)  # None = any send request
    behaviour: Literal["error", "hang", "reset", "slow"] = "error"
    latency: float = 0.0  # seconds before the fault takes effect (on top of `FakeGraph.latency`)

    @classmethod
    def hang(cls, match: Predicate | None = None) -> GraphFault:
        """Never answer; ends when the client gives up or the server shuts down."""
        return cls(0, match=match, behaviour="hang")

    @classmethod
    def reset(cls, match: Predicate | None = None) -> GraphFault:
        """Drop the TCP connection (RST) without sending any response."""
        return cls(0, match=match, behaviour="reset")

    @classmethod
    def slow(cls, seconds: float, match: Predicate | None = None) -> GraphFault:
        """Answer normally, `seconds` late."""
        return cls(0, match=match, behaviour="slow", latency=seconds)

    def applies_to(self, body: dict[str, Any]) -> bool:
        return self.match is None or bool(self.match(body))

    def payload(self, trace: str, whatsapp: bool) -> dict[str, Any]:
        message = self.message or _MESSAGES.get(self.code, f"(#{self.code}) An error occurred")
        details = (self.details or message) if whatsapp else None
        extra = {} if self.is_transient is None else {"is_transient": self.is_transient}
        return graph_error(self.code, self.subcode, message, trace, details, **extra)

    def headers(self, object_id: str, whatsapp: bool) -> dict[str, str]:
        """Throttling codes (or an explicit `retry_after_minutes`) carry the rate-limit usage headers."""
        if self.code not in THROTTLE_CODES and self.retry_after_minutes is None:
            return {}
        app = {"call_count": 100, "total_cputime": 25, "total_time": 25}
        kind = "whatsapp_business_management" if whatsapp else "messenger"
        usage = {"type": kind, **app, "estimated_time_to_regain_access": self.retry_after_minutes or 0}  # 0: unsaid
        return {"X-Business-Use-Case-Usage": json.dumps({object_id: [usage]}), "X-App-Usage": json.dumps(app)}


@dataclass(frozen=True, slots=True)
class GraphCall:
    """One request to the fake, as it saw it."""

    version: str
    object_id: str
    body: dict[str, Any]  # {} when the body was not a JSON object
    token: str | None
    kind: CallKind
    recipient: str | None  # PSID / IGSID / WhatsApp `to` (with its "+") or `recipient`; None for a mark-read
    text: str | None
    fault: GraphFault | None
    started_at: float  # time.monotonic()
    status: int | None = None  # None while in flight, or when no response went out (hang, reset, client gone)
    response: dict[str, Any] | None = None
    ended_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _describe(body: dict[str, Any]) -> tuple[CallKind, str | None, str | None]:
    """(kind, recipient, text) of a send body."""
    if body.get("messaging_product") == "whatsapp":
        if body.get("status") == "read":
            return ("typing" if "typing_indicator" in body else "read"), None, None
        # A phone number in `to`, or a business-scoped user id in `recipient` (a customer with a username).
        recipient = body.get("to") if "to" in body else body.get("recipient")
        text = _dig(body, "text", "body") if body.get("type") == "text" else None
    else:
        action = body.get("sender_action")
        recipient, text = _dig(body, "recipient", "id"), _dig(body, "message", "text")
        if action is not None:
            kind: CallKind = "typing" if action in ("typing_on", "typing_off") else "other"
            return ("read" if action == "mark_seen" else kind), _id(recipient), None
    return ("text" if isinstance(text, str) else "other"), _id(recipient), text if isinstance(text, str) else None


def _id(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


def is_text_send(body: dict[str, Any]) -> bool:
    """A `GraphFault.match` predicate: text messages only, not typing / mark-read / sender actions."""
    return _describe(body)[0] == "text"


class FakeGraph:
    """The fake server: set `valid_tokens` / `latency` / `instagram_ids`, `script()` faults, read `requests`."""

    def __init__(
        self, *, valid_tokens: set[str] | None = None, latency: float = 0.0, implicit_grants: bool = False
    ) -> None:
        self.valid_tokens = valid_tokens  # None = any non-empty token
        # What each token controls, for the ownership reads (GET /me, GET /{id}); see graph_assets.py.
        self.assets = GraphAssets(implicit=implicit_grants)
        self.reads: list[GraphReadCall] = []
        self.read_faults: deque[GraphFault] = deque()  # consumed by reads only (error, hang, reset or slow)
        self.latency = latency  # seconds added before every answer
        self.instagram_ids: set[str] = set()  # object ids that get Instagram's 1000-byte text limit
        self.requests: list[GraphCall] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[GraphFault] = deque()
        self._message_ids = itertools.count(1)
        self._traces = itertools.count(1)
        self._gen = 0
        self._closing = asyncio.Event()
        self._app = web.Application()
        # Media: WhatsApp media nodes and their bytes (token required), Messenger/Instagram CDN files (no token).
        self.media: dict[str, tuple[bytes, str]] = {}  # WhatsApp media id -> (bytes, MIME type)
        self.cdn: dict[str, tuple[bytes, str]] = {}  # file name under /cdn/ -> (bytes, MIME type)
        self.media_downloads: list[tuple[str, str | None]] = []  # (path, token) of each byte download
        self.media_latency = 0.0  # seconds before the bytes of a WhatsApp media file come
        self.media_failures: deque[int] = deque()  # HTTP statuses answered to the next byte downloads, one each
        self.media_in_flight = 0
        self._app.router.add_get("/whatsapp_business/attachments/", self._media_bytes)
        self._app.router.add_get("/cdn/{name}", self._cdn)
        self._app.router.add_post(r"/{version:v\d+\.\d+}/{object_id:[^/]+}/messages", self._messages)
        self._app.router.add_get(r"/{version:v\d+\.\d+}/{object_id:[^/]+}", self._read)
        self._app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._app.on_startup.append(self._on_startup)
        self._app.on_shutdown.append(self._on_shutdown)

    # ---- public API ------------------------------------------------------------------------------
    @property
    def app(self) -> web.Application:
        return self._app

    def script(self, *faults: GraphFault) -> None:
        """Queue faults. Each send request consumes the first queued fault whose `match` accepts its body."""
        self._script.extend(faults)

    def fail_text_sends_with(self, *faults: GraphFault) -> None:
        """Queue faults that only text sends consume (typing and mark-read requests pass through)."""
        self.script(*(replace(fault, match=is_text_send) for fault in faults))

    def reset_records(self) -> None:
        self._gen += 1
        self.requests = []
        self.max_in_flight = self.in_flight

    def texts_to(self, recipient: str) -> list[str]:
        """Texts successfully sent to `recipient` (a leading "+" is ignored), in arrival order."""
        want = recipient.lstrip("+")
        return [text for who, text in self.sent_texts() if who.lstrip("+") == want]

    def sent_texts(self) -> list[tuple[str, str]]:
        """(recipient, text) of every successful text send, in arrival order."""
        return [(c.recipient, c.text) for c in self.requests if c.ok and c.kind == "text" and c.recipient and c.text]

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run on a real socket (port 0 = random); yields the base URL without a version."""
        async with serve_app(self._app, host, port) as url:
            yield url

    # ---- lifecycle and helpers -------------------------------------------------------------------
    async def _on_startup(self, app: web.Application) -> None:
        self._closing = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()  # wakes hanging handlers so shutdown never blocks

    async def _pause(self, request: web.Request, seconds: float | None) -> bool:
        """Sleep (None = forever); False as soon as the client leaves or the server shuts down."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            if self._closing.is_set() or request.transport is None or request.transport.is_closing():
                return False
            step = 0.05 if deadline is None else min(0.05, deadline - loop.time())
            if step <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await self._closing.wait()

    def _trace(self) -> str:
        return f"AFakeTrace{next(self._traces):08d}"

    def _rejection(self, token: str | None, body: Any) -> dict[str, Any] | None:
        """The error Graph answers before looking at the request: token first, then the JSON body."""
        if not token:
            return graph_error(190, None, MSG_NO_TOKEN, "")
        if self.valid_tokens is not None and token not in self.valid_tokens:
            return graph_error(190, 463, MSG_EXPIRED, "")
        if not isinstance(body, dict):
            return graph_error(100, None, "(#100) The request body could not be parsed as a JSON object", "")
        return None

    def _invalid(self, call: GraphCall) -> str | None:
        """The (#100) message for a send Graph would refuse, else None."""
        whatsapp = call.body.get("messaging_product") == "whatsapp"
        if whatsapp and call.kind in ("typing", "read"):
            return None if _id(call.body.get("message_id")) else "(#100) The parameter message_id is required."
        if not call.recipient:
            return f"(#100) The parameter {'to' if whatsapp else 'recipient'} is required"
        text = call.text if call.kind == "text" else None
        limit = WHATSAPP_MAX_CHARS if whatsapp else MESSENGER_MAX_CHARS
        if text is not None and not text:
            return "(#100) Param message[text] must be non-empty."
        if text is not None and call.object_id in self.instagram_ids and len(text.encode()) > INSTAGRAM_MAX_BYTES:
            return f"(#100) Length of param message[text] must be at most {INSTAGRAM_MAX_BYTES} bytes"
        if text is not None and len(text) > limit:
            return f"(#100) Length of param message[text] must be at most {limit} characters"
        return None

    def _success(self, call: GraphCall) -> dict[str, Any]:
        if call.body.get("messaging_product") != "whatsapp":
            if "sender_action" in call.body:
                return {"recipient_id": call.recipient}
            return {"recipient_id": call.recipient, "message_id": f"m_{next(self._message_ids)}"}
        if call.kind in ("typing", "read"):
            return {"success": True}
        to, wamid = str(call.recipient), f"wamid.FAKE{next(self._message_ids)}"
        contacts = [{"input": to, "wa_id": to.lstrip("+")}]
        return {"messaging_product": "whatsapp", "contacts": contacts, "messages": [{"id": wamid}]}

    # ---- handlers --------------------------------------------------------------------------------
    async def _unknown(self, request: web.Request) -> web.Response:
        error = graph_error(2500, None, f"Unknown path components: {request.path}", self._trace())
        return web.json_response(error, status=400)

    async def _read(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else request.query.get("access_token", "").strip()
        object_id, fields = request.match_info["object_id"], request.query.get("fields", "")
        self.reads.append(GraphReadCall(object_id, fields, token or None))
        trace = self._trace()
        rejection = self._rejection(token, {})
        if rejection is not None:
            rejection["error"]["fbtrace_id"] = trace
            return web.json_response(rejection, status=400)
        if object_id in self.media:  # a WhatsApp media node: a short-lived URL to its bytes
            data, mime = self.media[object_id]
            url = request.url.with_path("/whatsapp_business/attachments/").with_query(mid=object_id, ext="1")
            node = {
                "messaging_product": "whatsapp",
                "url": str(url),
                "mime_type": mime,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": str(len(data)),
                "id": object_id,
            }
            return web.json_response(node)
        fault = self.read_faults.popleft() if self.read_faults else None
        if fault is not None and fault.behaviour in ("hang", "reset"):
            if fault.behaviour == "hang":
                await self._pause(request, None)
            abort_connection(request.transport)
            return web.Response(status=499)
        if fault is not None and fault.behaviour == "slow":
            await self._pause(request, fault.latency)
        elif fault is not None:
            return web.json_response(fault.payload(trace, False), status=fault.http_status)
        status, answer = self.assets.answer(object_id, fields, token)
        if isinstance(answer, str):
            return web.json_response(graph_error(100, 33, answer, trace), status=status)
        return web.json_response(answer, status=status)

    async def _media_bytes(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        self.media_downloads.append((request.path_qs, token or None))
        if self._rejection(token, {}) is not None:
            return web.Response(status=401, text="Unauthorized")
        found = self.media.get(request.query.get("mid", ""))
        if found is None:
            return web.Response(status=404)
        if self.media_failures:
            return web.Response(status=self.media_failures.popleft())
        self.media_in_flight += 1
        try:
            if self.media_latency and not await self._pause(request, self.media_latency):
                abort_connection(request.transport)
                return web.Response(status=499)
        finally:
            self.media_in_flight -= 1
        return web.Response(body=found[0], content_type=found[1])

    async def _cdn(self, request: web.Request) -> web.Response:
        self.media_downloads.append((request.path_qs, None))
        found = self.cdn.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    async def _messages(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else request.query.get("access_token", "").strip()
        rejection = self._rejection(token, body)
        params = body if isinstance(body, dict) else {}
        fault = None if rejection else next((f for f in self._script if f.applies_to(params)), None)
        if fault is not None:
            self._script.remove(fault)
        kind, recipient, text = _describe(params)
        info = request.match_info
        call = GraphCall(
            info["version"], info["object_id"], params, token or None, kind, recipient, text, fault, time.monotonic()
        )
        self.requests.append(call)
        index, gen = len(self.requests) - 1, self._gen
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        status: int | None = None
        payload: dict[str, Any] | None = None
        try:
            status, payload, headers = await self._answer(request, call, rejection)
            if status is None:
                abort_connection(request.transport)
                return web.Response(status=499)  # never reaches the client
            return web.json_response(payload, status=status, headers=headers)
        finally:
            self.in_flight -= 1
            if gen == self._gen:
                self.requests[index] = replace(
                    self.requests[index], status=status, response=payload, ended_at=time.monotonic()
                )

    async def _answer(
        self, request: web.Request, call: GraphCall, rejection: dict[str, Any] | None
    ) -> tuple[int | None, dict[str, Any] | None, dict[str, str]]:
        """(status, body, headers) to answer with; status None = drop the connection."""
        trace = self._trace()
        headers = {"x-fb-trace-id": trace, "facebook-api-version": call.version}
        fault, whatsapp = call.fault, call.body.get("messaging_product") == "whatsapp"
        delay = self.latency + (fault.latency if fault else 0.0)
        if delay and not await self._pause(request, delay):
            return None, None, {}
        if rejection is not None:
            rejection["error"]["fbtrace_id"] = trace
            if rejection["error"]["code"] == 190:
                headers["WWW-Authenticate"] = 'OAuth "Facebook Platform" "invalid_token"'
            return 400, rejection, headers
        if fault is not None and fault.behaviour in ("hang", "reset"):
            if fault.behaviour == "hang":
                await self._pause(request, None)
            return None, None, {}
        if fault is not None and fault.behaviour == "error":
            headers |= fault.headers(call.object_id, whatsapp)
            return fault.http_status, fault.payload(trace, whatsapp), headers
        if (problem := self._invalid(call)) is not None:
            return 400, graph_error(100, None, problem, trace, problem if whatsapp else None), headers
        return 200, self._success(call), headers
