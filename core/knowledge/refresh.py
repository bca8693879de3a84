"""Indexing chunks again when the derivation of their terms changed (core/knowledge/terms.py's TERMS_VERSION).

The housekeeping leader runs it every second. A chunk records the version that made its terms; older chunks are
indexed again from their stored text, a batch per transaction, so a deployment that improves the terms improves
the documents added before it too, without their owners uploading them again. Until a chunk is reached it is
searched by its old terms, which still match as they did.
"""

from __future__ import annotations

import asyncio

import structlog

from core.knowledge.terms import TERMS_VERSION, index_terms
from core.storage.knowledge import IndexedChunk, KnowledgeStore

log = structlog.get_logger("core.knowledge.refresh")

BATCH = 200
# Batches per run at most: the housekeeping loop is not held for long by a large knowledge base.
MAX_BATCHES = 10


async def refresh_terms(store: KnowledgeStore, *, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Index again up to `max_batches` batches of chunks made by an older derivation; the number changed."""
    changed = 0
    for _ in range(max_batches):
        stale = await store.stale_terms(TERMS_VERSION, batch)
        if not stale:
            break
        terms = await asyncio.to_thread(_terms, stale)  # stemming is pure Python: off the event loop
        changed += await store.set_terms(TERMS_VERSION, list(zip(stale, terms, strict=True)))
        if len(stale) < batch:
            break
    if changed:
        log.info("knowledge_terms_refreshed", chunks=changed, version=TERMS_VERSION)
    return changed


def _terms(chunks: list[IndexedChunk]) -> list[str]:
    return [index_terms(chunk.text) for chunk in chunks]
