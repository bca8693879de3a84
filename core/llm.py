"""The LLM client: chat completions over our own aiohttp session, embeddings and transcriptions through OpenAI's
async SDK; the SDK's own retries off and ours on.

The SDK is imported, and its client made, the first time an embedding, a transcription or the status probe needs
it: about 20 MB of resident memory and 600 modules that a gateway answering chats alone never uses.

A chat completion is the call every turn makes, so it skips the SDK's layers we do not use: its request building
(a typed transform of every message), its httpx-over-aiohttp transport and its response models cost about 1.6 ms
of CPU a call where a plain aiohttp POST costs 0.4 ms (`python -m bench.openai_layers`). The request carries what
the SDK's would that a server reads (the key as a bearer token; OPENAI_ORG_ID, OPENAI_PROJECT_ID and
OPENAI_CUSTOM_HEADERS as the SDK reads them from the environment; JSON accepted) and goes to the same base URL;
the answer is checked by the same code as the SDK's answers (`_completion`), and a failure is classified by the
same rules whichever way it came.

Retries live at this one layer. Rate limits (429 `rate_limit_exceeded`, honouring `retry-after`), 5xx,
timeouts, dropped connections and unreadable bodies are retried with jittered exponential backoff, within a
bounded number of attempts and one wall-clock budget per call. Billing failures (`insufficient_quota`) and
request errors (400, 401, 403, 404, 422) are never retried: repeating them cannot succeed. A 400 that names a
parameter the model refuses (`temperature`, `max_tokens`) is answered once by adapting the request, and the
client remembers that for the model.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import random
import ssl
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import structlog
import yarl

from adapters.text_clean import clean_text
from core.chat import ChatMessage, Completion, TokenUsage, Tool, ToolCall
from core.errors import UpstreamUnavailable
from core.metrics import Metrics

if TYPE_CHECKING:
    import openai

log = structlog.get_logger("core.llm")
T = TypeVar("T")

_BILLING_CODES = frozenset({"insufficient_quota", "credit_balance_exhausted"})
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0
# Leave this much of the budget for the request itself; a retry that cannot finish is not worth starting.
_MIN_ATTEMPT_SECONDS = 0.05
_UNBOUNDED = aiohttp.ClientTimeout()  # for requests an asyncio.timeout around them bounds


class ContextLengthExceeded(UpstreamUnavailable):
    """The prompt is longer than the model's context window; the caller may retry with less history."""


class ProviderError(Exception):
    """The provider answered a chat completion with an error status (our aiohttp path's counterpart of the SDK's
    `APIStatusError`): its status, the `error` object of its JSON body (empty when it sent none) and its headers."""

    def __init__(self, status: int, error: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        self.status = status
        self.error = error
        self.headers = headers
        super().__init__(f"model provider answered {status}: {error.get('code') or error.get('type') or ''}")


@dataclass(frozen=True, slots=True)
class LLMRequest:
    model: str
    messages: Sequence[ChatMessage]
    max_reply_tokens: int
    temperature: float | None = None
    tools: Sequence[Tool] = ()  # offered with tool_choice "auto": the model may call one instead of answering


@dataclass(slots=True)
class _ModelQuirks:
    no_temperature: bool = False
    completion_tokens_param: bool = False


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str
    message: str
    retry: bool
    temporary: bool
    retry_after: float | None = None


def is_reasoning_model(model: str) -> bool:
    name = model.rsplit("/", 1)[-1]
    return name.startswith(_REASONING_PREFIXES)


@functools.cache
def system_tls() -> ssl.SSLContext:
    """The system's certificate authorities, for TLS to the model's endpoint: loaded once per process (reading
    them takes about 30 ms of CPU, which every client the SDK made would pay again), never changed once made."""
    return ssl.create_default_context()


@dataclass
class LLMClient:
    api_key: str
    base_url: str
    attempt_timeout: float
    max_attempts: int
    total_budget: float
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    _quirks: dict[str, _ModelQuirks] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics.create)
    # The OpenAI-Organization and OpenAI-Project headers, and OPENAI_CUSTOM_HEADERS's, read from the environment
    # as the SDK reads them.
    organization: str | None = None
    project: str | None = None
    custom_headers: Mapping[str, str] = field(default_factory=dict)
    _sdk: openai.AsyncOpenAI | None = None  # made when first needed (embeddings, transcriptions, the probe)
    _session: aiohttp.ClientSession | None = None  # chat completions' own, made on the first call (in the loop)
    _proxy: yarl.URL | None = None  # HTTPS_PROXY's (or ALL_PROXY's), unless NO_PROXY names the host
    _chat_url: str = ""  # the base URL's /chat/completions, made with the session

    @classmethod
    def create(
        cls,
        *,
        api_key: str,
        base_url: str,
        attempt_timeout: float,
        max_attempts: int,
        total_budget: float,
        metrics: Metrics | None = None,
    ) -> LLMClient:
        return cls(
            api_key=api_key,
            base_url=base_url,
            attempt_timeout=attempt_timeout,
            max_attempts=max_attempts,
            total_budget=total_budget,
            metrics=metrics or Metrics.create(),
            organization=os.environ.get("OPENAI_ORG_ID") or None,
            project=os.environ.get("OPENAI_PROJECT_ID") or None,
            custom_headers=custom_headers(os.environ.get("OPENAI_CUSTOM_HEADERS")),
        )

    @property
    def sdk(self) -> openai.AsyncOpenAI:
        """OpenAI's async client for this endpoint and key, made (and the SDK imported) on first use; its own
        retries off."""
        if self._sdk is None:
            import openai  # on first use: see the module docstring

            # aiohttp as the SDK's transport (its own DefaultAioHttpClient): a call costs the event loop about half
            # the CPU of the default httpx/anyio transport, CPU the webhook acknowledgements share.
            self._sdk = openai.AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                organization=self.organization,
                project=self.project,
                max_retries=0,
                timeout=self.attempt_timeout,
                http_client=openai.DefaultAioHttpClient(timeout=self.attempt_timeout, verify=system_tls()),
            )
        return self._sdk

    async def sdk_client(self) -> openai.AsyncOpenAI:
        """`sdk`, the SDK imported on a thread the first time (about half a second the event loop keeps serving)."""
        if self._sdk is None and "openai" not in sys.modules:
            await asyncio.to_thread(importlib.import_module, "openai")
        return self.sdk

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._sdk is not None:
            await self._sdk.close()

    def _chat_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {
                **self.custom_headers,
                "Accept": "application/json",
                "User-Agent": f"nexus-gateway/{_version()}",
                "Authorization": f"Bearer {self.api_key}",
            }
            if self.organization is not None:
                headers["OpenAI-Organization"] = self.organization
            if self.project is not None:
                headers["OpenAI-Project"] = self.project
            # The proxy variables are honoured as the SDK's transport honours them, read once: aiohttp's trust_env
            # reads them again for every request, on a thread, and by other rules.
            self._chat_url = f"{self.base_url.rstrip('/')}/chat/completions"
            self._proxy = env_proxy(yarl.URL(self._chat_url))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=system_tls(), limit=0),
                headers=headers,
                json_serialize=_compact_json,
            )
        return self._session

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.monotonic()

        async def once(seconds: float, attempts: int) -> Completion:
            body, headers = await self._attempt(request)
            return _completion(body, headers, attempts, started)

        return await self._retrying(request.model, once, adapt=True)

    async def embed(self, model: str, texts: Sequence[str]) -> Embedded:
        """The texts' vectors (in order) and the tokens the provider counted, with the same retries as a
        completion. A vector of another length than the others, or a count of vectors that is not the count of
        texts, is a malformed answer (retried, then UpstreamUnavailable)."""
        started = time.monotonic()

        sdk = await self.sdk_client()

        async def once(seconds: float, attempts: int) -> Embedded:
            raw = await sdk.embeddings.with_raw_response.create(
                model=model, input=list(texts), encoding_format="float", timeout=seconds
            )
            return _embedded(json.loads(raw.content), len(texts), attempts, started)

        return await self._retrying(model, once, adapt=False)

    async def transcribe(self, model: str, filename: str, data: bytes, mime_type: str) -> Transcribed:
        """The speech in an audio file, as text, with the same retries as a completion (a 400, such as a format
        the model refuses, is final)."""
        started = time.monotonic()

        sdk = await self.sdk_client()

        async def once(seconds: float, attempts: int) -> Transcribed:
            raw = await sdk.audio.transcriptions.with_raw_response.create(
                model=model, file=(filename, data, mime_type), response_format="json", timeout=seconds
            )
            return _transcribed(json.loads(raw.content), attempts, started)

        return await self._retrying(model, once, adapt=False)

    async def _retrying(self, model: str, once: Callable[[float, int], Awaitable[T]], *, adapt: bool) -> T:
        """`once(attempt_timeout, attempts)` until it succeeds or a failure is final (UpstreamUnavailable)."""
        started = time.monotonic()
        deadline = started + self.total_budget
        attempts = 0
        adapted = not adapt
        while True:
            attempts += 1
            remaining = deadline - time.monotonic()
            attempt_timeout = min(self.attempt_timeout, remaining)
            try:
                # A hard deadline: the SDK's timeout is per read, so a server trickling bytes would outlive it.
                async with asyncio.timeout(attempt_timeout):
                    return await once(attempt_timeout, attempts)
            except Exception as exc:  # classified below; anything unknown is a bug and is re-raised
                error = exc
            failure = _classify(error)
            if failure is None:
                raise error
            self.metrics.openai_error(failure.code)
            if not adapted and self._adapt(model, error):
                adapted = True  # a parameter the model refuses: resend at once, without it
                attempts -= 1
                continue
            if failure.code == "context_length_exceeded":
                raise ContextLengthExceeded(failure.message, code=failure.code, temporary=False, attempts=attempts)
            delay = self._delay(failure, attempts)
            remaining = deadline - time.monotonic()
            give_up = not failure.retry or attempts >= self.max_attempts or delay + _MIN_ATTEMPT_SECONDS > remaining
            log.warning(
                "llm_attempt_failed",
                model=model,
                attempt=attempts,
                code=failure.code,
                retry=not give_up,
                delay=round(delay, 3),
                alert=failure.code in _BILLING_CODES,
            )
            if give_up:
                raise UpstreamUnavailable(
                    failure.message, code=failure.code, temporary=failure.temporary, attempts=attempts
                )
            await self.sleep(delay)

    async def _attempt(self, request: LLMRequest) -> tuple[object, Mapping[str, str]]:
        quirks = self._quirks.setdefault(request.model, _ModelQuirks())
        reasoning = is_reasoning_model(request.model)
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [m.to_wire() for m in request.messages],
        }
        if reasoning or quirks.completion_tokens_param:
            params["max_completion_tokens"] = request.max_reply_tokens
        else:
            # max_tokens is what every OpenAI-compatible server (vLLM, Ollama, proxies) understands.
            params["max_tokens"] = request.max_reply_tokens
        if request.temperature is not None and not reasoning and not quirks.no_temperature:
            params["temperature"] = request.temperature
        if request.tools:
            params |= {"tools": [tool.to_wire() for tool in request.tools], "tool_choice": "auto"}
        session = self._chat_session()
        # No timer of aiohttp's own: `_retrying` bounds the whole attempt (asyncio.timeout), connecting included.
        async with session.post(self._chat_url, json=params, timeout=_UNBOUNDED, proxy=self._proxy) as response:
            raw = await response.read()
            if response.status >= 400:
                raise ProviderError(response.status, _error_object(raw), response.headers)
            # Parse ourselves: a body that is not the documented shape is an upstream fault, not our crash.
            return json.loads(raw), response.headers

    def _adapt(self, model: str, exc: Exception) -> bool:
        status, error = _status_of(exc)
        if status != 400:
            return False
        quirks = self._quirks.setdefault(model, _ModelQuirks())
        param = error.get("param")
        code = error.get("code")
        if param == "temperature" and code in ("unsupported_value", "unsupported_parameter"):
            quirks.no_temperature = True
            return True
        if param == "max_tokens" and code == "unsupported_parameter":
            quirks.completion_tokens_param = True
            return True
        return False

    def _delay(self, failure: _Failure, attempts: int) -> float:
        if failure.retry_after is not None:
            return failure.retry_after
        backoff = min(_BACKOFF_BASE * 2.0 ** (attempts - 1), _BACKOFF_CAP)
        return backoff * (0.5 + self.rng.random() / 2)  # "equal jitter": spreads retries, keeps a floor


@dataclass(frozen=True, slots=True)
class Embedded:
    """What an /embeddings call gave back: one vector per text, in the texts' order."""

    vectors: list[list[float]]
    model: str
    prompt_tokens: int  # as the provider reported them
    attempts: int
    latency_ms: int


def _embedded(body: object, expected: int, attempts: int, started: float) -> Embedded:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise MalformedResponse("an embeddings answer without data")
    items = sorted(body["data"], key=lambda item: int(item["index"]))
    vectors = [[float(x) for x in item["embedding"]] for item in items]
    if len(vectors) != expected or [int(item["index"]) for item in items] != list(range(expected)):
        raise MalformedResponse(f"{len(vectors)} vectors for {expected} texts")
    if expected and (not vectors[0] or any(len(v) != len(vectors[0]) for v in vectors)):
        raise MalformedResponse("vectors of different lengths")
    usage = body.get("usage") or {}
    return Embedded(
        vectors=vectors,
        model=str(body.get("model") or ""),
        prompt_tokens=_count("prompt_tokens", usage.get("prompt_tokens", 0) if isinstance(usage, dict) else 0),
        attempts=attempts,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


@dataclass(frozen=True, slots=True)
class Transcribed:
    """What an /audio/transcriptions call gave back."""

    text: str
    input_tokens: int  # audio and prompt tokens, as the provider reported them (0: it reported none)
    output_tokens: int
    attempts: int
    latency_ms: int


def _transcribed(body: object, attempts: int, started: float) -> Transcribed:
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise MalformedResponse("a transcription answer without text")
    usage = body.get("usage")
    tokens = isinstance(usage, dict) and usage.get("type", "tokens") == "tokens"
    # A duration-billed model (whisper-1) reports seconds, not tokens: 0 here, and the caller charges its count.
    return Transcribed(
        text=clean_text(body["text"]),
        input_tokens=_count("input_tokens", usage.get("input_tokens", 0)) if tokens and isinstance(usage, dict) else 0,
        output_tokens=_count("output_tokens", usage.get("output_tokens", 0))
        if tokens and isinstance(usage, dict)
        else 0,
        attempts=attempts,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


class MalformedResponse(ValueError):
    """A 200 whose body is not a chat completion we can trust (wrong shape, impossible usage)."""


def connection_failed(exc: BaseException) -> bool:
    """True when the connection failed rather than timed out: refused, unresolvable, reset, dropped.

    The SDK's aiohttp transport reports every aiohttp connection error as a connect timeout (its exception map
    ranks them so); the aiohttp error it keeps as the cause says what happened."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain: SDK error <- httpx error <- aiohttp error <- OSError
        if seen is None:
            return False
        if isinstance(seen, aiohttp.ClientConnectionError) and not isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def env_proxy(url: yarl.URL) -> yarl.URL | None:
    """The proxy the environment names for `url`, by httpx's rules (what the SDK's client follows): the scheme's
    variable (HTTPS_PROXY for https), else ALL_PROXY; a proxy written without a scheme is http://; none for a host
    NO_PROXY names. Credentials in the proxy's URL stay in it: aiohttp sends them to the proxy."""
    proxies = urllib.request.getproxies_environment()
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    named = proxies.get(url.scheme) or proxies.get("all")
    if not named:
        return None
    return yarl.URL(named if "://" in named else f"http://{named}")


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _error_object(raw: bytes) -> Mapping[str, Any]:
    """The `error` object of an error answer's body, as the SDK reads it ({} for a body that is not JSON)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    error = body.get("error", body) if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def custom_headers(variable: str | None) -> dict[str, str]:
    """OPENAI_CUSTOM_HEADERS as the SDK reads it: `Name: value` lines, each sent with every request. An
    Authorization among them is left out: the key is the credential."""
    parsed: dict[str, str] = {}
    for line in (variable or "").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip() and name.strip().lower() != "authorization":
            parsed[name.strip()] = value.strip()
    return parsed


def _version() -> str:
    try:
        return metadata.version("nexus-gateway")
    except metadata.PackageNotFoundError:
        return "dev"


def _sdk_errors() -> Any:
    """The SDK's module, for its exception classes, when it has been imported: until then no call can have raised
    one of them (the SDK is imported when first used, LLMClient.sdk)."""
    return sys.modules.get("openai")


def _status_of(exc: Exception) -> tuple[int | None, Mapping[str, Any]]:
    """An error answer's status and `error` object, whichever client raised it."""
    if isinstance(exc, ProviderError):
        return exc.status, exc.error
    openai = _sdk_errors()
    if openai is not None and isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return exc.status_code, {**body, "code": exc.code or body.get("code"), "param": getattr(exc, "param", None)}
    return None, {}


def _classify(exc: Exception) -> _Failure | None:
    openai = _sdk_errors()
    connection: tuple[type[Exception], ...] = (aiohttp.ClientError,)
    timeout: tuple[type[Exception], ...] = (TimeoutError,)
    malformed: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, IndexError, AttributeError)
    if openai is not None:
        connection += (openai.APIConnectionError,)
        timeout += (openai.APITimeoutError,)
        malformed += (openai.APIResponseValidationError,)
    if isinstance(exc, connection) and connection_failed(exc):
        return _Failure("connection_error", "could not reach the model provider", retry=True, temporary=True)
    if isinstance(exc, timeout):
        return _Failure("timeout", "the model provider did not answer in time", retry=True, temporary=True)
    if isinstance(exc, connection):  # a body cut short, a bad status line
        return _Failure("connection_error", "could not reach the model provider", retry=True, temporary=True)
    if isinstance(exc, ProviderError):
        return _status_failure(exc.status, exc.error, exc.headers)
    if openai is not None and isinstance(exc, openai.APIStatusError):
        status, error = _status_of(exc)
        assert status is not None
        return _status_failure(status, error, exc.response.headers)
    if isinstance(exc, malformed):
        return _Failure(
            "malformed_response", "the model provider sent an unreadable answer", retry=True, temporary=True
        )
    return None


def _status_failure(status: int, error: Mapping[str, Any], headers: Mapping[str, str]) -> _Failure:
    code = str(error.get("code") or error.get("type") or f"http_{status}")
    message = f"model provider answered {status}: {code}"
    if status == 429 and (code in _BILLING_CODES or error.get("type") in _BILLING_CODES):
        # Billing, not load: retrying burns time and changes nothing. The operator must act.
        return _Failure(code if code in _BILLING_CODES else "insufficient_quota", message, retry=False, temporary=True)
    if status in _RETRYABLE_STATUS or status >= 500:
        return _Failure(code, message, retry=True, temporary=True, retry_after=_retry_after(headers))
    return _Failure(code, message, retry=False, temporary=False)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP-date form; fall back to our own backoff
        if seconds >= 0:
            return seconds
    return None


def _completion(body: object, headers: Mapping[str, str], attempts: int, started: float) -> Completion:
    choice = _first_choice(body)
    assert isinstance(body, dict)  # _first_choice checked it
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponse("choices[0].message is not an object")
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise MalformedResponse("message content is not a string")
    usage = _usage(body.get("usage"))
    # JSON may spell a NUL or a lone surrogate ("\u0000", "\ud800"), which no database column or UTF-8 reply can
    # hold: replaced here, so a reply the customer paid for is stored and delivered instead of failing the turn.
    return Completion(
        text=clean_text(text),
        model=clean_text(str(body.get("model") or "")),
        usage=usage,
        finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        request_id=headers.get("x-request-id"),
        attempts=attempts,
        latency_ms=int((time.monotonic() - started) * 1000),
        tool_calls=_tool_calls(message.get("tool_calls")),
    )


def _tool_calls(value: object) -> tuple[ToolCall, ...]:
    """The functions the model called; entries that are not the documented shape are left out (a call we cannot
    read is no call: the turn goes on with the text)."""
    calls: list[ToolCall] = []
    for item in value if isinstance(value, list) else ():
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = function.get("arguments")
            calls.append(ToolCall(function["name"], clean_text(arguments) if isinstance(arguments, str) else ""))
    return tuple(calls)


def _first_choice(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise MalformedResponse("the body is not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("the body has no choices")
    return choices[0]


def _usage(usage: object) -> TokenUsage:
    """The provider's usage, checked: it is what we charge, so an impossible figure is a malformed answer."""
    if not isinstance(usage, dict):
        raise MalformedResponse("the body has no usage object")
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    if not isinstance(prompt_details, dict) or not isinstance(completion_details, dict):
        raise MalformedResponse("usage details are not objects")
    prompt = _count("prompt", usage.get("prompt_tokens"))
    completion = _count("completion", usage.get("completion_tokens"))
    cached = _count("cached", prompt_details.get("cached_tokens") or 0)
    reasoning = _count("reasoning", completion_details.get("reasoning_tokens") or 0)
    if cached > prompt or reasoning > completion:
        raise MalformedResponse("usage details exceed their totals")
    return TokenUsage(prompt, completion, cached, reasoning)


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedResponse(f"usage {name} tokens is not a non-negative whole number")
    return value
