"""The tokenizers the plans offer, loaded before a turn needs one.

At start, before the gateway listens (`load_offered`), and then whenever a plan is made or changed, in every
process: the doorbell's `settings` ring wakes `run`, and it looks again every `poll_seconds` anyway (a ring lost
to a broken connection, or a plan made by `python -m gateway seed` beside a server on the same SQLite file, which
rings nobody). Without it the first turn on the new plan's model waits while its tokenizer loads (0.1-0.3 s of CPU,
measured for cl100k_base and o200k_base). A tokenizer no plan offers is still never loaded; one a plan offers is
loaded whether or not an account is on it, and kept (o200k_base 43-44 MB, cl100k_base about 30; loaded on a worker
thread while serving, 4-5 MB more: TokenCounter.load).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from core.storage.plans import PlanStore
from core.tokens import TokenCounter, encoding_name_for_model

log = structlog.get_logger("core.tokenizer_warmup")

POLL_SECONDS = 60.0


class TokenizerWarmup:
    def __init__(self, plans: PlanStore, tokens: TokenCounter, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._plans = plans
        self._tokens = tokens
        self._poll_seconds = poll_seconds
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._alerted: set[str] = set()  # the encodings whose failure the operator was told of

    async def offered(self) -> list[str]:
        """Every model a plan offers (its default among them), once each."""
        return sorted({model for plan in await self._plans.list() for model in (plan.default_model, *plan.models)})

    async def load_offered(self) -> None:
        """At start, on the event loop's thread, which serves nothing yet: a load on a worker thread left 4-5 MB
        more resident (TokenCounter.load). A failure is logged; a turn loads its tokenizer itself, and says so if it
        cannot."""
        try:
            models = await self.offered()
        except Exception:
            log.exception("tokenizer_warmup_failed", alert=True)
            return
        for model in models:
            try:
                self._tokens.load(model)
            except Exception:  # another model's tokenizer may still load
                self._failed(model)

    def wake(self) -> None:
        """A doorbell listener: a plan may have been made or changed (quick: the look happens on `run`'s task)."""
        self._wanted.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="tokenizer-warmup")

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=self._poll_seconds)
            self._wanted.clear()  # a ring during the look below makes another
            try:
                await self._load_missing()
            except Exception:
                log.exception("tokenizer_warmup_failed", alert=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _load_missing(self) -> None:
        for model in await self.offered():
            encoding = encoding_name_for_model(model)
            if encoding in self._tokens.loaded():
                continue
            started = time.monotonic()
            try:
                await self._tokens.ready(model)  # on a thread: the loop keeps serving
            except Exception:  # another model's tokenizer may still load
                self._failed(model)
                continue
            log.info("tokenizer_loaded", model=model, encoding=encoding, ms=round((time.monotonic() - started) * 1000))

    def _failed(self, model: str) -> None:
        """Logged at every look (each minute, each ring), the operator alerted once per tokenizer."""
        encoding = encoding_name_for_model(model)
        first = encoding not in self._alerted
        self._alerted.add(encoding)
        log.exception("tokenizer_warmup_failed", model=model, encoding=encoding, alert=first)
