"""A faithful fake of OpenAI's chat-completions API, for tests and benchmarks.

Serves `POST /v1/chat/completions` (plain and `stream: true` with `stream_options.include_usage`)
and `GET /v1/models` in the real wire format (usage details, dated snapshots, `x-request-id`,
`x-ratelimit-*`, `openai-processing-ms`, the real error envelope); validates like the API; injects
faults (`sandbox.fakes.openai_faults`) from a FIFO `script()` or a seeded `failure_rate`; plays a
provider whose accounting misbehaves (`usage_with()`, `ignores_max_tokens`); records every call in
`calls`. Token counters are injectable; the default is a deterministic word/punctuation count
inside the cookbook's chat framing (3/message, +1/name, +3 priming).

    server = await aiohttp_server(fake.app); base_url = str(server.make_url("/v1"))  # pytest
    async with fake.serve() as base_url: ...                     # standalone, random port
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import math
import random
import re
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from PIL import Image

from sandbox.fakes import openai_faults as errs
from sandbox.fakes.openai_faults import Fault, FaultKind, is_reasoning_model
from sandbox.fakes.serving import serve_app

__all__ = ["FakeOpenAI", "Fault", "FaultKind", "RecordedCall", "is_reasoning_model"]

SNAPSHOTS: dict[str, str] = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}
RECORDED_HEADERS = ("x-stainless-retry-count",)
_ZERO_DETAILS = {"audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
_WORDS = re.compile(r"\w+|[^\w\s]")
_PIECES = re.compile(r"\S+\s*|\s+")


def approx_text_tokens(model: str, text: str) -> int:
    """Default text counter: one token per word or punctuation mark (deterministic, model-agnostic)."""
    return len(_WORDS.findall(text))


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return "" if value is None else json.dumps(value)


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request to /v1/chat/completions, as the fake saw it."""

    model: str | None
    messages: list[dict[str, Any]]
    params: dict[str, Any]  # the whole JSON request body
    headers: dict[str, str]  # subset: RECORDED_HEADERS that were present
    fault: Fault | None
    usage: dict[str, Any] | None  # None unless a complete answer was produced
    status: int | None  # HTTP status sent; None if no response (reset, hang, client gone)
    stream: bool
    request_id: str
    started_at: float  # time.monotonic()
    ended_at: float | None = None  # None while in flight


@dataclass
class _Ctx:  # per-request state, folded into the RecordedCall when the handler ends
    rid: str
    t0: float
    gen: int
    index: int = -1
    fault: Fault | None = None
    kind: FaultKind | None = None
    prompt: int = 0  # prompt tokens, once counted
    status: int | None = None
    usage: dict[str, Any] | None = None


class FakeOpenAI:
    def __init__(
        self,
        *,
        count_prompt_tokens: Callable[[str, list[dict]], int] | None = None,
        count_text_tokens: Callable[[str, str], int] | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
        context_windows: Mapping[str, int] | None = None,
    ) -> None:
        self.count_text_tokens: Callable[[str, str], int] = count_text_tokens or approx_text_tokens
        self.count_prompt_tokens: Callable[[str, list[dict]], int] = count_prompt_tokens or self._framed_count
        self.latency = latency
        self.jitter = jitter  # up to this many seconds more per call, seeded: real calls never take equally long
        self.context_windows: dict[str, int] = dict(context_windows or {})
        self.api_key: str | None = None  # when set, the bearer token must match exactly
        self.cached_tokens = 0  # reported as prompt_tokens_details.cached_tokens (capped at prompt)
        self.reasoning_tokens = 0  # added to completion_tokens of reasoning models only
        self.ignores_max_tokens = False  # True: the whole reply, counted in full, whatever max_tokens says
        self.failure_rate = 0.0
        self.random_faults: list[Fault] = [Fault.rate_limit(), Fault.server_error(), Fault.overloaded()]
        self.snapshots: dict[str, str] = dict(SNAPSHOTS)
        self.rate_limits = (5000, 160000)  # (requests, tokens) reported in x-ratelimit-limit-*
        self.calls: list[RecordedCall] = []
        # /v1/embeddings: deterministic bag-of-concepts vectors. A word's concept is itself unless `concepts` maps
        # it to another (synonyms across words and languages), so a test decides which texts are "similar".
        self.concepts: dict[str, str] = {}
        self.embedding_dimensions = 64
        self.embedding_calls: list[list[str]] = []  # the inputs of each call, in order
        self.embedding_failures: deque[int] = deque()  # HTTP statuses answered to the next calls, one each
        self.model_lists = 0  # GET /v1/models requests seen (status probes)
        # /v1/audio/transcriptions: what each audio file "says" (by the sha256 of its bytes), the calls seen
        # (model, file name, bytes), and HTTP statuses answered to the next calls, one each.
        self.transcripts: dict[str, str] = {}
        self.transcription_calls: list[tuple[str, str, int]] = []
        self.transcription_failures: deque[int] = deque()
        self.transcription_latency = 0.0  # seconds before a transcription answers
        self.transcriptions_in_flight = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._reply: Callable[[dict], str] = _default_reply
        # Scripted tool calls: fn(request body) -> (function name, arguments JSON) when the model "calls" a tool.
        self._tool_call: Callable[[dict], tuple[str, str] | None] = lambda body: None
        self._usage: Callable[[dict[str, Any], dict], dict[str, Any]] | None = None
        self._script: deque[Fault] = deque()
        self._rng = random.Random(seed)  # fault decisions only
        self._ids = random.Random(f"ids-{seed}")
        self._delays = random.Random(f"delays-{seed}")
        self._gen = 0
        self._closing = asyncio.Event()
        self._app = web.Application()
        self._app.router.add_post("/v1/chat/completions", self._chat)
        self._app.router.add_get("/v1/models", self._models)
        self._app.router.add_post("/v1/embeddings", self._embeddings)
        self._app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        self._app.on_startup.append(self._on_startup)
        self._app.on_shutdown.append(self._on_shutdown)

    # ---- public API ------------------------------------------------------------------------------
    @property
    def app(self) -> web.Application:
        return self._app

    def reply_with(self, fn: Callable[[dict], str]) -> None:
        """Script the assistant text from the request body."""
        self._reply = fn

    def call_tool_with(self, fn: Callable[[dict], tuple[str, str] | None]) -> None:
        """Script tool calls: when fn(request body) gives (name, arguments) and the request offers a function of
        that name, the answer is that call (no content, finish_reason "tool_calls"), as OpenAI's is."""
        self._tool_call = fn

    def usage_with(self, fn: Callable[[dict[str, Any], dict], dict[str, Any]]) -> None:
        """Script the `usage` object of every complete answer: fn(the usage the fake counted, the request body)
        returns what is sent instead, however impossible (10**16 tokens, negative, floats)."""
        self._usage = fn

    def script(self, *faults: Fault) -> None:
        """Queue faults, consumed one per chat request in arrival order (before random faults)."""
        self._script.extend(faults)

    def reset_records(self) -> None:
        self._gen += 1
        self.calls = []
        self.max_in_flight = self.in_flight

    def successful_usage_total(self) -> dict[str, int]:
        keys = ("prompt_tokens", "completion_tokens", "total_tokens")
        ok = [c.usage for c in self.calls if c.usage is not None and c.status == 200]
        return {k: sum(u[k] for u in ok) for k in keys}

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run on a real socket (port 0 = random); yields the base URL ending in /v1."""
        async with serve_app(self._app, host, port, suffix="/v1", handler_cancellation=True) as url:
            yield url

    # ---- lifecycle --------------------------------------------------------------------------------
    async def _on_startup(self, app: web.Application) -> None:
        self._closing = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()  # wakes hanging / slow handlers so shutdown never blocks

    # ---- helpers ----------------------------------------------------------------------------------
    def _tool_tokens(self, model: str, tools: Any) -> int:
        """What offered functions add to the prompt (the cookbook's num_tokens_for_tools, gpt-4o constants)."""
        if not isinstance(tools, list) or not tools:
            return 0
        total = 12
        for tool in tools:
            function = tool.get("function") or {}
            total += 7 + self.count_text_tokens(
                model, f"{function.get('name')}:{str(function.get('description', '')).removesuffix('.')}"
            )
            properties = (function.get("parameters") or {}).get("properties") or {}
            if properties:
                total += 3
                for key, spec in properties.items():
                    total += 3
                    if "enum" in spec:
                        total += -3 + sum(3 + self.count_text_tokens(model, item) for item in spec["enum"])
                    line = f"{key}:{spec.get('type')}:{str(spec.get('description', '')).removesuffix('.')}"
                    total += self.count_text_tokens(model, line)
        return total

    def _framed_count(self, model: str, messages: list[dict]) -> int:
        total = 3
        for message in messages:
            total += 3
            for key, value in message.items():
                if key in ("role", "content", "name"):
                    total += self.count_text_tokens(model, _text_of(value)) + (key == "name")
        return total

    def _next_fault(self) -> Fault | None:
        if self._script:
            return self._script.popleft()
        if self.failure_rate > 0 and self._rng.random() < self.failure_rate and self.random_faults:
            return self._rng.choice(self.random_faults)
        return None

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

    def _headers(self, ctx: _Ctx) -> dict[str, str]:
        req_limit, tok_limit = self.rate_limits
        return {
            "x-request-id": ctx.rid,
            "openai-processing-ms": str(round((time.monotonic() - ctx.t0) * 1000)),
            "openai-version": "2020-10-01",
            "openai-organization": "org-fake",
            "x-ratelimit-limit-requests": str(req_limit),
            "x-ratelimit-limit-tokens": str(tok_limit),
            "x-ratelimit-remaining-requests": str(max(0, req_limit - self.in_flight)),
            "x-ratelimit-remaining-tokens": str(max(0, tok_limit - ctx.prompt)),
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-reset-tokens": "9ms",
        }

    def _error(self, ctx: _Ctx, status: int, body: dict) -> web.Response:
        ctx.status = status
        headers = {**self._headers(ctx), **(ctx.fault.headers() if ctx.fault else {})}
        return web.json_response(body, status=status, headers=headers)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        errs.abort_connection(request.transport)
        return web.Response(status=499)  # never reaches the client

    def _complete(self, body: dict[str, Any], model: str, prompt: int) -> tuple[str, str, dict[str, Any]]:
        text = self._reply(body)
        limit = None if self.ignores_max_tokens else body.get("max_completion_tokens") or body.get("max_tokens")
        reasoning = self.reasoning_tokens if is_reasoning_model(model) else 0
        finish = "stop"
        if limit is not None:
            reasoning = min(reasoning, limit)
            if self.count_text_tokens(model, text) > limit - reasoning:
                text, finish = self._truncate(model, text, limit - reasoning), "length"
        completion = self.count_text_tokens(model, text) + reasoning
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, prompt), "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, **_ZERO_DETAILS},
        }
        if self._usage is not None:
            usage = self._usage(usage, body)
        return text, finish, usage

    def _truncate(self, model: str, text: str, limit: int) -> str:
        lo, hi = 0, len(text)  # longest prefix whose count fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.count_text_tokens(model, text[:mid]) <= limit else (lo, mid - 1)
        return text[:lo]

    # ---- handlers ---------------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        self.model_lists += 1
        rid = f"req_{self._ids.getrandbits(128):032x}"
        if (err := errs.auth_error(request.headers.get("Authorization", ""), self.api_key)) is not None:
            return web.json_response(err, status=401, headers={"x-request-id": rid})
        names = sorted({*self.snapshots, *self.snapshots.values(), "gpt-4.1-mini", "gpt-5-mini", "o4-mini"})
        data = [{"id": n, "object": "model", "created": 1715367049, "owned_by": "system"} for n in names]
        return web.json_response({"object": "list", "data": data}, headers={"x-request-id": rid})

    def embedding_of(self, text: str) -> list[float]:
        vector = [0.0] * self.embedding_dimensions
        for word in re.findall(r"[^\W_]+", text.casefold()):
            concept = self.concepts.get(word, word)
            vector[zlib.crc32(concept.encode()) % self.embedding_dimensions] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    async def _embeddings(self, request: web.Request) -> web.Response:
        rid = f"req_{self._ids.getrandbits(128):032x}"
        if (err := errs.auth_error(request.headers.get("Authorization", ""), self.api_key)) is not None:
            return web.json_response(err, status=401, headers={"x-request-id": rid})
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.embedding_calls.append(list(texts))
        if self.embedding_failures:
            status = self.embedding_failures.popleft()
            error = {"error": {"message": "scripted failure", "type": "server_error", "param": None, "code": None}}
            return web.json_response(error, status=status, headers={"x-request-id": rid})
        model = str(body["model"])
        tokens = sum(self.count_text_tokens(model, text) for text in texts)
        data = [{"object": "embedding", "index": i, "embedding": self.embedding_of(t)} for i, t in enumerate(texts)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response(
            {"object": "list", "data": data, "model": model, "usage": usage}, headers={"x-request-id": rid}
        )

    async def _transcriptions(self, request: web.Request) -> web.Response:
        """As OpenAI's: the format is read from the file name's extension (`.oga` and `.opus` are refused even for
        Ogg Opus bytes); token-billed usage, audio tokens about 17 a second (an Ogg file's own duration)."""
        rid = f"req_{self._ids.getrandbits(128):032x}"
        if (err := errs.auth_error(request.headers.get("Authorization", ""), self.api_key)) is not None:
            return web.json_response(err, status=401, headers={"x-request-id": rid})
        form = await request.post()
        upload, model = form.get("file"), str(form.get("model") or "")
        if not isinstance(upload, web.FileField):
            return web.json_response(_invalid("file is required", "file"), status=400, headers={"x-request-id": rid})
        data = upload.file.read()
        upload.file.close()
        self.transcription_calls.append((model, upload.filename, len(data)))
        if self.transcription_latency:
            self.transcriptions_in_flight += 1
            try:
                await asyncio.sleep(self.transcription_latency)
            finally:
                self.transcriptions_in_flight -= 1
        if self.transcription_failures:
            status = self.transcription_failures.popleft()
            error = {"error": {"message": "scripted failure", "type": "server_error", "param": None, "code": None}}
            return web.json_response(error, status=status, headers={"x-request-id": rid})
        extension = upload.filename.rsplit(".", 1)[-1].lower()
        if extension not in ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"):
            error = _invalid(f"Unsupported file format {extension}", "file", code="unsupported_value")
            return web.json_response(error, status=400, headers={"x-request-id": rid})
        text = self.transcripts.get(hashlib.sha256(data).hexdigest(), "")
        audio = max(1, math.ceil(_ogg_duration(data) * 17))
        output = self.count_text_tokens("gpt-4o", text) if text else 0
        usage = {
            "type": "tokens",
            "input_tokens": audio,
            "output_tokens": output,
            "total_tokens": audio + output,
            "input_token_details": {"audio_tokens": audio, "text_tokens": 0},
        }
        return web.json_response({"text": text, "usage": usage}, headers={"x-request-id": rid})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        ctx = _Ctx(rid=f"req_{self._ids.getrandbits(128):032x}", t0=time.monotonic(), gen=self._gen)
        try:
            raw = await request.read()
            body = None
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
            body = body if isinstance(body, dict) else None
            params = body or {}
            ctx.fault = self._next_fault()
            ctx.kind = ctx.fault.kind if ctx.fault else None
            messages = params.get("messages")
            self.calls.append(
                RecordedCall(
                    model=params.get("model"),
                    messages=list(messages) if isinstance(messages, list) else [],
                    params=params,
                    headers={h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers},
                    fault=ctx.fault,
                    usage=None,
                    status=None,
                    stream=bool(params.get("stream")),
                    request_id=ctx.rid,
                    started_at=ctx.t0,
                )
            )
            ctx.index = len(self.calls) - 1
            return await self._answer(request, body, ctx)
        finally:
            self.in_flight -= 1
            if ctx.gen == self._gen and 0 <= ctx.index < len(self.calls):
                self.calls[ctx.index] = replace(
                    self.calls[ctx.index], usage=ctx.usage, status=ctx.status, ended_at=time.monotonic()
                )

    async def _answer(self, request: web.Request, body: dict | None, ctx: _Ctx) -> web.StreamResponse:
        fault, kind = ctx.fault, ctx.kind
        delay = self.latency + (self._delays.uniform(0, self.jitter) if self.jitter else 0.0)
        if delay and not await self._pause(request, delay):
            return self._drop(request)
        if kind is FaultKind.HANG:
            await self._pause(request, None)
            return self._drop(request)
        if kind is FaultKind.RESET or (
            kind is FaultKind.SLOW and not await self._pause(request, (fault and fault.seconds) or 0.0)
        ):
            return self._drop(request)
        if fault is not None and fault.is_error_response:
            return self._error(ctx, fault.status or 500, fault.payload(body.get("model") if body else None))
        if (err := errs.auth_error(request.headers.get("Authorization", ""), self.api_key)) is not None:
            return self._error(ctx, 401, err)
        if (err := errs.validation_error(body)) is not None or body is None:
            return self._error(ctx, 400, err or {})
        model, stream = body["model"], bool(body.get("stream"))
        prompt = (
            self.count_prompt_tokens(model, body["messages"])
            + self._tool_tokens(model, body.get("tools"))
            + sum(_image_tokens(model, url) for url in _image_urls(body["messages"]))
        )
        window = self.context_windows.get(model)
        if window is not None and prompt > window:
            return self._error(ctx, 400, errs.context_error(window, prompt))
        ctx.prompt = prompt
        if kind is FaultKind.STREAM_ERROR and not stream:
            return self._error(ctx, 500, Fault.server_error().payload(model))
        text, finish, usage = self._complete(body, model, prompt)
        tier = body.get("service_tier")
        head = {
            "id": f"chatcmpl-{self._ids.getrandbits(120):030x}",
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": int(time.time()),
            "model": self.snapshots.get(model, model),
            "service_tier": tier if tier in ("flex", "priority") else "default",
            "system_fingerprint": "fp_fake0000",
        }
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, ctx, head, text, finish, usage, include_usage)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": [],
            "tool_calls": None,
        }
        offered = {_dig_name(t) for t in body.get("tools") or []}
        called = self._tool_call(body)
        if called is not None and called[0] in offered:
            name, arguments = called
            message |= {
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{self._ids.getrandbits(64):016x}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ],
            }
            completion = self.count_text_tokens(model, name + arguments) + 3
            usage = usage | {"completion_tokens": completion, "total_tokens": prompt + completion}
            finish = "tool_calls"
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        payload = json.dumps({**head, "choices": [choice], "usage": usage})
        ctx.status = 200
        if kind in (FaultKind.MALFORMED, FaultKind.STREAM_CUT):
            payload = payload[: len(payload) // 2]
        else:
            ctx.usage = usage
        return web.Response(text=payload, content_type="application/json", headers=self._headers(ctx))

    async def _stream(
        self, request: web.Request, ctx: _Ctx, head: dict, text: str, finish: str, usage: dict, include_usage: bool
    ) -> web.StreamResponse:
        extra = {"usage": None} if include_usage else {}  # without include_usage: no usage key at all

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return json.dumps({**head, "choices": [choice], **extra})

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in _PIECES.findall(text)]
        fault, kind = ctx.fault, ctx.kind
        if fault is not None and kind in (FaultKind.STREAM_CUT, FaultKind.STREAM_ERROR):
            events = events[: 1 + fault.after_chunks]
            if kind is FaultKind.STREAM_ERROR:
                events.append(json.dumps(Fault.server_error().payload(head["model"])))
        elif kind is FaultKind.MALFORMED:  # a truncated JSON event, then the body ends
            events = [events[0], events[-1][: len(events[-1]) // 2]]
        else:
            events.append(chunk({}, finish))
            if include_usage:
                events.append(json.dumps({**head, "choices": [], "usage": usage}))
            events.append("[DONE]")
        resp = web.StreamResponse(headers={**self._headers(ctx), "Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        await resp.prepare(request)
        ctx.status = 200
        try:
            for event in events:
                await resp.write(f"data: {event}\n\n".encode())
            if fault is not None and fault.abort:
                return self._drop(request)
            await resp.write_eof()
        except ConnectionError:  # client went away mid-stream
            return resp
        if events[-1] == "[DONE]":
            ctx.usage = usage
        return resp


def _default_reply(body: dict) -> str:
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return f"You said: {_text_of(users[-1].get('content')) if users else ''}"


def _dig_name(tool: Any) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    return function.get("name") if isinstance(function, dict) else None


def _invalid(message: str, param: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _ogg_duration(data: bytes) -> float:
    """Seconds an Ogg Opus file declares (its last page's granule position at 48 kHz); 1 for anything else."""
    last = data.rfind(b"OggS")
    if data[:4] != b"OggS" or last < 0 or len(data) < last + 14:
        return 1.0
    return max(int.from_bytes(data[last + 6 : last + 14], "little", signed=True) / 48_000, 0.0)


def _image_urls(messages: Any) -> list[str]:
    urls: list[str] = []
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                urls.append(str((part.get("image_url") or {}).get("url") or ""))
    return urls


def _image_tokens(model: str, url: str) -> int:
    """OpenAI's tile formula at high detail (gpt-4o-mini: 2833 + 5667 a tile; gpt-4o family: 85 + 170)."""
    width, height = _image_size(url)
    if max(width, height) > 2048:
        width, height = (width * 2048 // max(width, height), height * 2048 // max(width, height))
    if min(width, height) > 768:
        width, height = (width * 768 // min(width, height), height * 768 // min(width, height))
    tiles = -(-width // 512) * -(-height // 512)
    base, per_tile = (2833, 5667) if model.startswith("gpt-4o-mini") else (85, 170)
    return base + per_tile * tiles


def _image_size(url: str) -> tuple[int, int]:
    """An image data URL's width and height, as the provider reads them (any format it takes)."""
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.size
