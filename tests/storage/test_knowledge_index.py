"""Knowledge's index keys: every term of a chunk is indexed whole under its bot's key, on both backends, whatever the
bot id. A key of hex digits alone once read as a number on PostgreSQL ("123e45..." is scientific notation to its
text parser), which split it off the term and left some bots' searches finding nothing, at random."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

from core.clock import SystemClock
from core.knowledge.refresh import refresh_terms
from core.knowledge.terms import TERMS_VERSION, query_terms
from core.storage.db import Database
from core.storage.knowledge import KnowledgeLimits, KnowledgeStore, NewChunk, NewDocument
from core.storage.migrations import apply_migrations
from tests.support.database import open_database, scratch_url, seed_bot


def _bot_id_with_numeric_key() -> str:
    """A bot id whose MD5 begins like a number in scientific notation (digits, 'e', digits)."""
    for n in itertools.count():
        bot_id = f"bot_{n:020x}"
        if re.match(r"^[0-9]+e[0-9]", hashlib.md5(bot_id.encode(), usedforsecurity=False).hexdigest()):
            return bot_id
    raise AssertionError("unreachable")


async def _bot(db: Database, bot_id: str) -> KnowledgeStore:
    """A migrated database with one bot; its knowledge store."""
    await apply_migrations(db)
    await seed_bot(db, bot_id)
    return KnowledgeStore(db, SystemClock(), KnowledgeLimits(max_documents=10, max_account_tokens=10**6))


async def test_a_bot_whose_key_looks_like_a_number_finds_its_chunks(tmp_path: Path) -> None:
    bot_id = _bot_id_with_numeric_key()
    async with open_database(scratch_url(tmp_path, "k.db")) as db:
        store = await _bot(db, bot_id)
        await store.add(
            NewDocument("acc_1", bot_id, "Preise", "text", None),
            [NewChunk("Roggenbrot 4,20", 5, "roggenbrot 4 20", 1), NewChunk("Schrippe 0,50", 5, "schripp 0 50", 1)],
        )
        [found] = await store.search(bot_id, ["roggenbrot"], 5)
        assert found.text == "Roggenbrot 4,20"
        assert sorted(c.text for c in await store.search(bot_id, ["20", "50"], 5)) == [
            "Roggenbrot 4,20",
            "Schrippe 0,50",
        ]


async def test_chunks_indexed_by_an_earlier_derivation_are_indexed_again(tmp_path: Path) -> None:
    """Documents added before compounds were split (terms version 1) find "Brezeln" in "Laugenbrezel" once the
    housekeeping job has indexed them again, with the bot's statistics kept; deleted chunks are left alone."""
    async with open_database(scratch_url(tmp_path, "refresh.db")) as db:
        store = await _bot(db, "bot_1")
        old = NewChunk("Laugenbrezel 1,20 €", 6, "laugenbrezel 1 20", 1)  # what version 1 made of it
        kept = await store.add(NewDocument("acc_1", "bot_1", "Preise", "text", None), [old])
        gone = await store.add(
            NewDocument("acc_1", "bot_1", "Alt", "text", None), [NewChunk("Dinkelbrot", 3, "dinkelbrot", 1)]
        )
        question = query_terms("Was kosten die Brezeln?").stems
        assert await store.search("bot_1", question, 5) == []
        await store.delete(gone.id)

        assert await refresh_terms(store, batch=1) == 1
        [found] = await store.search("bot_1", question, 5)
        assert (found.document_id, found.text) == (kept.id, "Laugenbrezel 1,20 €")
        assert "brezel" in found.terms.split()
        stats = await db.fetch_one("SELECT chunks, terms FROM knowledge_stats WHERE bot_id = 'bot_1'")
        assert stats is not None and (stats["chunks"], stats["terms"]) == (1, len(found.terms.split()))
        assert await store.stale_terms(TERMS_VERSION, 10) == []
        assert await refresh_terms(store) == 0
