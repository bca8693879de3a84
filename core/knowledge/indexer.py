"""Embedding what was added to knowledge bases, in the background (the housekeeping leader runs it).

A document added while EMBEDDINGS_MODEL is set is stored with its chunks as `processing` and answered at once
(201); this job embeds its chunks in batches, each batch charged to its account (core/knowledge/embedder.py), and
the document becomes `ready` when its last chunk has its vector. Chunks embedded by another model (the setting
changed) are embedded again the same way, their documents staying ready meanwhile. When the provider is down the
job stops and tries again on its next run; when the account's tokens are used up, or the provider refuses the
text for good, the document is `failed` with the reason (replacing it tries again).
"""

from __future__ import annotations

import structlog

from core.clock import Clock
from core.errors import AccountLocked, QuotaExceeded, UpstreamUnavailable
from core.knowledge.embedder import BATCH, ChargedEmbedder
from core.knowledge.vectors import encode_vector
from core.paid_calls import Payer
from core.storage.knowledge import KnowledgeStore

log = structlog.get_logger("core.knowledge.indexer")

# Batches per run at most, so that one large upload does not hold the housekeeping loop for long.
MAX_BATCHES = 50
# How long a bot whose chunks were refused is left out before they are tried again.
REST_MS = 5 * 60 * 1000


class KnowledgeIndexer:
    def __init__(self, store: KnowledgeStore, embedder: ChargedEmbedder, clock: Clock) -> None:
        self._store = store
        self._embedder = embedder
        self._clock = clock
        # Bots whose chunks were refused (tokens used up, account locked, text refused), and until when they are
        # left out: a ready document's chunks to embed again stay pending, and must not hold up every other bot.
        self._resting: dict[str, int] = {}

    async def run_once(self) -> int:
        """Embed what waits, up to MAX_BATCHES batches; the number of chunks embedded."""
        model = self._embedder.model
        embedded = 0
        now = self._clock.now_ms()
        self._resting = {bot: until for bot, until in self._resting.items() if until > now}
        for _ in range(MAX_BATCHES):
            pending = await self._store.unembedded(model, BATCH, skip=sorted(self._resting))
            if not pending:
                break
            first = pending[0]
            batch = [p for p in pending if (p.account_id, p.bot_id) == (first.account_id, first.bot_id)]
            documents = sorted({p.document_id for p in batch})
            try:
                vectors = await self._embedder.embed(
                    [p.text for p in batch], Payer(first.account_id, first.bot_id, "knowledge")
                )
            except (QuotaExceeded, AccountLocked) as exc:
                self._refused(first.bot_id, documents, await self._store.fail(documents, f"not embedded: {exc}"), now)
                continue
            except UpstreamUnavailable as exc:
                log.warning("knowledge_embedding_failed", code=exc.code, temporary=exc.temporary, chunks=len(batch))
                if exc.temporary:
                    break  # the provider is down or busy: the next run tries again
                failed = await self._store.fail(documents, f"the embeddings model refused the text ({exc.code})")
                self._refused(first.bot_id, documents, failed, now)
                continue
            await self._store.set_embeddings(
                model, [(p.chunk_id, encode_vector(v)) for p, v in zip(batch, vectors, strict=True)], documents
            )
            embedded += len(batch)
        ready = await self._store.finish_embedded(model)
        if embedded or ready:
            log.info("knowledge_embedded", chunks=embedded, bots_ready=len(ready))
        return embedded

    def _refused(self, bot_id: str, documents: list[str], failed: int, now: int) -> None:
        """Documents being processed are failed and wait for their owner; chunks of ready documents (to embed again
        with a new model) stay pending, so their bot rests a while rather than being refused every second."""
        if failed < len(documents):
            self._resting[bot_id] = now + REST_MS
