"""A live, cached probe of the configured OpenAI-compatible endpoint: `GET {base}/models` with the key.

Dashboards poll the status page; upstream must not see one request per poll. A result is reused for `ttl_ms`, and
concurrent callers share one probe (single flight: the first caller probes under a lock, the others find its fresh
result). The last failure is kept across probes, so "reachable now, but failed at 03:12 with 429" stays visible.
Messages are ours (status and code), never the upstream body: OpenAI's 401 echoes part of the key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.clock import Clock
from core.llm import connection_failed

if TYPE_CHECKING:
    import openai

DEFAULT_TTL_MS = 30_000
DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ProbeError:
    code: str
    message: str
    at: int  # epoch ms


@dataclass(frozen=True, slots=True)
class ProbeResult:
    configured: bool
    reachable: bool
    latency_ms: int | None
    checked_at: int  # epoch ms
    http_status: int | None
    error: ProbeError | None  # this probe's failure; None when it succeeded


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    result: ProbeResult
    last_error: ProbeError | None  # the newest failure of any probe so far, kept after later successes
    cached: bool  # served from an earlier probe within the TTL


class OpenAIProbe:
    def __init__(
        self,
        sdk: Callable[[], Awaitable[openai.AsyncOpenAI]] | None,
        clock: Clock,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        # The LLM client's own SDK client, made when first probed: same base URL, key, headers and connection pool.
        self._sdk = sdk
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._timeout = timeout_seconds
        self._lock = asyncio.Lock()
        self._result: ProbeResult | None = None
        self._last_error: ProbeError | None = None

    async def status(self) -> ProbeStatus:
        fresh = self._fresh()
        if fresh is not None:
            return ProbeStatus(fresh, self._last_error, cached=True)
        async with self._lock:
            fresh = self._fresh()  # another caller probed while we waited for the lock
            if fresh is not None:
                return ProbeStatus(fresh, self._last_error, cached=True)
            result = await self._probe()
            self._result = result
            if result.error is not None:
                self._last_error = result.error
            return ProbeStatus(result, self._last_error, cached=False)

    def _fresh(self) -> ProbeResult | None:
        result = self._result
        if result is None or self._clock.now_ms() - result.checked_at >= self._ttl_ms:
            return None
        return result

    async def _probe(self) -> ProbeResult:
        now = self._clock.now_ms()
        if self._sdk is None:
            unset = ProbeError("not_configured", "OPENAI_API_KEY is not set", now)
            return ProbeResult(False, False, None, now, None, unset)
        sdk = await self._sdk()  # the SDK imported, on a thread, when first needed (core/llm.py)
        import openai  # for its exception classes: imported by now

        started = time.monotonic()
        status: int | None = None
        error: ProbeError | None = None
        try:
            # A hard deadline around the SDK's own timeout, which only bounds each read.
            async with asyncio.timeout(self._timeout):
                raw = await sdk.models.with_raw_response.list(timeout=self._timeout)
            status = raw.status_code
        except openai.APIStatusError as exc:
            status = exc.status_code
            code = _status_code(exc)
            error = ProbeError(code, f"the endpoint answered HTTP {status} ({code})", now)
        except openai.APIConnectionError as exc:
            if connection_failed(exc) or not isinstance(exc, openai.APITimeoutError):
                error = ProbeError("connection_error", "could not connect to the endpoint", now)
            else:
                error = ProbeError("timeout", f"no answer within {self._timeout:g} s", now)
        except TimeoutError:
            error = ProbeError("timeout", f"no answer within {self._timeout:g} s", now)
        latency = int((time.monotonic() - started) * 1000)
        return ProbeResult(True, error is None, latency, now, status, error)


def _status_code(exc: openai.APIStatusError) -> str:
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error")
    nested: dict[str, Any] = inner if isinstance(inner, dict) else {}
    code = exc.code or body.get("code") or nested.get("code") or body.get("type") or f"http_{exc.status_code}"
    # A code is a short identifier; anything else (a proxy's prose) is replaced by the status.
    text = str(code)
    return text if len(text) <= 64 and text.replace("_", "").replace("-", "").isalnum() else f"http_{exc.status_code}"
