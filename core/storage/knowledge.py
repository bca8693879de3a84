"""Knowledge documents and their chunks, and the lexical search over them, on both backends.

A document is stored with all its chunks in one transaction, so a search never sees half a document, and a
deleted document's chunks go in the same commit as its row. The account's row is locked while its limits are
checked, so two uploads at once (two processes) cannot both pass the last free place.

Search ranks a bot's chunks by BM25 over the terms of core/knowledge/terms.py (k1 = 1.2, b = 0.75):
  - SQLite: an FTS5 index whose terms are scoped to their bot, so a search reads only its bot's postings; FTS5's
    own ranking picks the best candidates, which are scored again with the bot's statistics (FTS5 takes the count
    and average length of chunks from the whole index; knowledge_stats has the bot's);
  - PostgreSQL: the same formula computed in SQL, all of its statistics the bot's (document frequencies through the
    GIN index on the bot-scoped terms, counts from knowledge_stats, term frequencies from the chunks' vectors).
Higher is better on both. Only `ready` documents are searched.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from core.errors import LimitReached, NotFound
from core.ids import new_id
from core.models import KnowledgeDocument
from core.storage.db import Database, Row, Transaction
from core.storage.doorbell import SETTINGS
from core.storage.recent import Recent
from core.storage.records import columns, from_row

_COLUMNS = ", ".join(columns(KnowledgeDocument))
# Ranked before the documents' status is looked at: a few more than asked for, in case some are not ready.
_SLACK = 10


@dataclass(frozen=True, slots=True)
class NewChunk:
    text: str
    tokens: int
    terms: str  # space-separated index terms (core/knowledge/terms.py)
    terms_version: int  # the derivation that made them (core/knowledge/terms.py's TERMS_VERSION)


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """A chunk as it is indexed: what the terms were made from, and the terms."""

    chunk_id: int
    bot_id: str
    text: str
    terms: str


@dataclass(frozen=True, slots=True)
class FoundChunk:
    chunk_id: int
    document_id: str
    title: str
    text: str
    tokens: int
    terms: str
    score: float  # BM25: higher is better, comparable only within one search


@dataclass(frozen=True, slots=True)
class PendingChunk:
    chunk_id: int
    document_id: str
    bot_id: str
    account_id: str
    text: str


@dataclass(frozen=True, slots=True)
class KnowledgeLimits:
    max_documents: int  # per account
    max_account_tokens: int  # every document of the account together


@dataclass(frozen=True, slots=True)
class NewDocument:
    account_id: str
    bot_id: str
    title: str
    kind: str
    source: str | None


class KnowledgeStore:
    def __init__(self, db: Database, clock: Clock, limits: KnowledgeLimits) -> None:
        self._db = db
        self._clock = clock
        self._limits = limits
        self._with_chunks: Recent[str, bool] = Recent(db.doorbell, SETTINGS)

    async def has_chunks(self, bot_id: str) -> bool:
        """Whether the bot has any knowledge at all, for a turn: most bots have none, and their turns then skip
        the search (the question's stemming and two reads). Kept like the bot itself (core/storage/recent.py):
        adding, replacing or deleting a document rings, so the next turn asks again."""
        return await self._with_chunks.get(bot_id, self._count_chunks)

    async def _count_chunks(self, bot_id: str) -> bool:
        row = await self._db.fetch_one("SELECT chunks FROM knowledge_stats WHERE bot_id = ?", (bot_id,))
        return row is not None and int(row["chunks"]) > 0

    async def add(self, new: NewDocument, chunks: Sequence[NewChunk], *, status: str = "ready") -> KnowledgeDocument:
        """A document with its chunks, in one commit; LimitReached if the account's limits would be passed.
        `processing`: its chunks wait to be embedded (searched once it is ready)."""
        now = self._clock.now_ms()
        tokens = sum(chunk.tokens for chunk in chunks)
        document_id = new_id("doc")
        async with self._db.transaction() as tx:
            await self._check_limits(tx, new.account_id, tokens)
            row = await tx.fetch_one(
                "INSERT INTO knowledge_documents (id, account_id, bot_id, title, kind, source, status, error, chunks,"
                f" tokens, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)"
                f" RETURNING {_COLUMNS}",
                (
                    document_id,
                    new.account_id,
                    new.bot_id,
                    new.title,
                    new.kind,
                    new.source,
                    status,
                    len(chunks),
                    tokens,
                    now,
                    now,
                ),
            )
            await _insert_chunks(tx, document_id, new.bot_id, chunks)
        assert row is not None
        await self._db.doorbell.ring(SETTINGS)  # the bot's turns search its knowledge from now on (has_chunks)
        return _document(row)

    async def replace(
        self, document_id: str, new: NewDocument, chunks: Sequence[NewChunk], *, status: str = "ready"
    ) -> KnowledgeDocument:
        """The document's content replaced in one commit (same id): a search sees the old chunks or the new."""
        now = self._clock.now_ms()
        tokens = sum(chunk.tokens for chunk in chunks)
        async with self._db.transaction() as tx:
            await self._check_limits(tx, new.account_id, tokens, replacing=document_id)
            row = await tx.fetch_one(
                "UPDATE knowledge_documents SET title = ?, kind = ?, source = ?, status = ?, error = NULL,"
                f" chunks = ?, tokens = ?, updated_at = ? WHERE id = ? AND bot_id = ? RETURNING {_COLUMNS}",
                (new.title, new.kind, new.source, status, len(chunks), tokens, now, document_id, new.bot_id),
            )
            if row is None:
                raise NotFound("document")
            await _delete_chunks(tx, document_id)
            await _insert_chunks(tx, document_id, new.bot_id, chunks)
        await self._db.doorbell.ring(SETTINGS)
        return _document(row)

    async def get(self, document_id: str, *, account_id: str | None = None) -> KnowledgeDocument:
        """A document of a live bot; with `account_id`, only that account's (another's is NotFound, like a bad id)."""
        sql = (
            f"SELECT {', '.join('d.' + c for c in columns(KnowledgeDocument))} FROM knowledge_documents d"
            " JOIN bots b ON b.id = d.bot_id WHERE d.id = ? AND b.deleted_at IS NULL"
        )
        params: tuple[str, ...] = (document_id,)
        if account_id is not None:
            sql += " AND d.account_id = ?"
            params += (account_id,)
        row = await self._db.fetch_one(sql, params)
        if row is None:
            raise NotFound("document")
        return _document(row)

    async def of_bot(self, bot_id: str) -> list[KnowledgeDocument]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM knowledge_documents WHERE bot_id = ? ORDER BY created_at, id", (bot_id,)
        )
        return [_document(row) for row in rows]

    async def delete(self, document_id: str) -> None:
        """The document and its chunks, in one commit: no search after it returns can show them."""
        async with self._db.transaction() as tx:
            # The account's row first, as add and replace take it: one order of locks, so a delete and a replace
            # of one document wait for each other instead of deadlocking, and the per-bot counts stay exact.
            owner = await tx.fetch_one("SELECT account_id FROM knowledge_documents WHERE id = ?", (document_id,))
            if owner is None:
                raise NotFound("document")
            await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?" + tx.dialect.locked(), (owner["account_id"],))
            await _delete_chunks(tx, document_id)
            if not await tx.execute("DELETE FROM knowledge_documents WHERE id = ?", (document_id,)):
                raise NotFound("document")
        await self._db.doorbell.ring(SETTINGS)

    async def search(self, bot_id: str, stems: Sequence[str], limit: int) -> list[FoundChunk]:
        """The bot's best chunks for the stems, best first (at most `limit`); none when there are no stems."""
        if not stems or limit < 1:
            return []
        if self._db.dialect.name == "postgresql":
            key = _bot_key(bot_id)
            scoped = list(dict.fromkeys(key + stem for stem in stems))
            # The query is built here, once (terms are letters and digits only, quoted all the same).
            tsquery = " | ".join(f"'{term}'" for term in scoped)
            rows = await self._db.fetch_all(_BM25_POSTGRES, (scoped, bot_id, tsquery, limit + _SLACK, bot_id))
        else:
            rows = await self._search_sqlite(bot_id, stems, limit)
        return [_found(row) for row in rows][:limit]

    async def _search_sqlite(self, bot_id: str, stems: Sequence[str], limit: int) -> list[Row]:
        """FTS5 finds and orders the candidates; they are scored again with the bot's own statistics (its chunk
        count and average length, which FTS5 takes from the whole index), so that both backends rank alike."""
        key = _bot_key(bot_id)
        scoped = list(dict.fromkeys(key + stem for stem in stems))
        match = " OR ".join(_quoted(term) for term in scoped)
        candidates = await self._db.fetch_all(_CANDIDATES_SQLITE, (match, max(_RESCORED, limit + _SLACK), bot_id))
        if not candidates:
            return []
        marks = ", ".join("?" * len(scoped))
        frequencies = await self._db.fetch_all(
            f"SELECT term, doc FROM knowledge_fts_vocab WHERE term IN ({marks})", tuple(scoped)
        )
        stats = await self._db.fetch_one("SELECT chunks, terms FROM knowledge_stats WHERE bot_id = ?", (bot_id,))
        n = max(int(stats["chunks"]), 1) if stats else 1
        average = max(int(stats["terms"]) / n, 1.0) if stats else 1.0
        idf = {
            str(row["term"])[len(key) :]: max(math.log((n - int(row["doc"]) + 0.5) / (int(row["doc"]) + 0.5)), 1e-6)
            for row in frequencies
        }
        scored: list[dict[str, Any]] = [
            {**{name: row[name] for name in _CANDIDATE_COLUMNS}, "score": _bm25(str(row["terms"]), idf, average)}
            for row in candidates
        ]
        scored.sort(key=lambda row: (-row["score"], row["id"]))
        return list(scored)

    # ---- index terms made by an earlier derivation (core/knowledge/refresh.py) ------------------------------

    async def stale_terms(self, version: int, limit: int) -> list[IndexedChunk]:
        """Chunks indexed by a derivation older than `version`, any bot's, in a stable order."""
        rows = await self._db.fetch_all(
            "SELECT id, bot_id, text, terms FROM knowledge_chunks WHERE terms_version < ? ORDER BY id LIMIT ?",
            (version, limit),
        )
        return [IndexedChunk(int(r["id"]), str(r["bot_id"]), str(r["text"]), str(r["terms"])) for r in rows]

    async def set_terms(self, version: int, chunks: Sequence[tuple[IndexedChunk, str]]) -> int:
        """Each chunk indexed by its new terms, in one commit; a chunk deleted or indexed again meanwhile (its terms
        no longer those read) is left alone. The number of chunks changed."""
        changed = 0
        async with self._db.transaction() as tx:
            for chunk, terms in chunks:
                if not await tx.execute(
                    "UPDATE knowledge_chunks SET terms = ?, term_count = ?, terms_version = ?"
                    " WHERE id = ? AND terms = ? AND terms_version < ?",
                    (terms, len(terms.split()), version, chunk.chunk_id, chunk.terms, version),
                ):
                    continue
                if tx.dialect.name == "sqlite":
                    await tx.execute(
                        "INSERT INTO knowledge_fts (knowledge_fts, rowid, terms) VALUES ('delete', ?, ?)",
                        (chunk.chunk_id, _scoped(chunk.bot_id, chunk.terms)),
                    )
                    await tx.execute(
                        "INSERT INTO knowledge_fts (rowid, terms) VALUES (?, ?)",
                        (chunk.chunk_id, _scoped(chunk.bot_id, terms)),
                    )
                await _count(tx, chunk.bot_id, 0, len(terms.split()) - len(chunk.terms.split()))
                changed += 1
        return changed

    # ---- embeddings (core/knowledge/indexer.py, core/knowledge/vectors.py) -------------------------------------

    async def unembedded(self, model: str, limit: int, *, skip: Sequence[str] = ()) -> list[PendingChunk]:
        """Chunks of live bots still without a vector of `model`: of documents being processed first, oldest
        first, then of ready ones (EMBEDDINGS_MODEL changed); a failed document's wait until it is replaced. The
        bots in `skip` are left out (the indexer's back-off after a refusal)."""
        skipped = f" AND d.bot_id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        rows = await self._db.fetch_all(
            "SELECT c.id, c.document_id, c.bot_id, d.account_id, c.text FROM knowledge_chunks c"
            " JOIN knowledge_documents d ON d.id = c.document_id JOIN bots b ON b.id = d.bot_id"
            " WHERE d.status IN ('processing', 'ready') AND (c.embedding_model IS NULL OR c.embedding_model <> ?)"
            f" AND b.deleted_at IS NULL{skipped}"
            " ORDER BY CASE WHEN d.status = 'processing' THEN 0 ELSE 1 END, d.created_at, c.document_id, c.seq"
            " LIMIT ?",
            (model, *skip, limit),
        )
        return [
            PendingChunk(int(r["id"]), str(r["document_id"]), str(r["bot_id"]), str(r["account_id"]), str(r["text"]))
            for r in rows
        ]

    async def set_embeddings(self, model: str, vectors: Sequence[tuple[int, str]], document_ids: Sequence[str]) -> None:
        """The chunks' vectors; their documents' `updated_at` moves, so every process's vector cache of their bots
        reloads (a ready document's chunks embedded again by a new model change no status)."""
        async with self._db.transaction() as tx:
            await tx.execute_many(
                "UPDATE knowledge_chunks SET embedding = ?, embedding_model = ? WHERE id = ?",
                [(encoded, model, chunk_id) for chunk_id, encoded in vectors],
            )
            marks = ", ".join("?" * len(document_ids))
            await tx.execute(
                f"UPDATE knowledge_documents SET updated_at = ? WHERE id IN ({marks})",
                (self._clock.now_ms(), *document_ids),
            )

    async def finish_embedded(self, model: str) -> list[str]:
        """Documents being processed whose every chunk has its vector become ready; their bots' ids."""
        rows = await self._db.execute_returning(
            "UPDATE knowledge_documents SET status = 'ready', updated_at = ? WHERE status = 'processing'"
            " AND NOT EXISTS (SELECT 1 FROM knowledge_chunks c WHERE c.document_id = knowledge_documents.id"
            " AND (c.embedding_model IS NULL OR c.embedding_model <> ?)) RETURNING bot_id",
            (self._clock.now_ms(), model),
        )
        return sorted({str(row["bot_id"]) for row in rows})

    async def ready_without_embeddings(self) -> int:
        """EMBEDDINGS_MODEL is unset: documents left waiting for their vectors are searched lexically at once."""
        return await self._db.execute(
            "UPDATE knowledge_documents SET status = 'ready', updated_at = ? WHERE status = 'processing'",
            (self._clock.now_ms(),),
        )

    async def fail(self, document_ids: Sequence[str], error: str) -> int:
        """Documents being processed become `failed` with the reason; how many did (ready ones stay ready)."""
        if not document_ids:
            return 0
        marks = ", ".join("?" * len(document_ids))
        return await self._db.execute(
            f"UPDATE knowledge_documents SET status = 'failed', error = ?, updated_at = ? WHERE id IN ({marks})"
            " AND status = 'processing'",
            (error[:500], self._clock.now_ms(), *document_ids),
        )

    async def ready_version(self, bot_id: str) -> tuple[int, int]:
        """What changes whenever the bot's ready documents do: (their count, their latest update)."""
        row = await self._db.fetch_one(
            "SELECT COUNT(*) AS n, COALESCE(MAX(updated_at), 0) AS latest FROM knowledge_documents"
            " WHERE bot_id = ? AND status = 'ready'",
            (bot_id,),
        )
        assert row is not None
        return int(row["n"]), int(row["latest"])

    async def vectors(self, bot_id: str, model: str) -> list[tuple[int, str]]:
        rows = await self._db.fetch_all(
            "SELECT c.id, c.embedding FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id"
            " WHERE c.bot_id = ? AND d.status = 'ready' AND c.embedding_model = ? ORDER BY c.id",
            (bot_id, model),
        )
        return [(int(row["id"]), str(row["embedding"])) for row in rows]

    async def chunks(self, bot_id: str, chunk_ids: Sequence[int]) -> list[FoundChunk]:
        """The bot's ready chunks of these ids (score 0: the caller ranks them)."""
        if not chunk_ids:
            return []
        marks = ", ".join("?" * len(chunk_ids))
        rows = await self._db.fetch_all(
            "SELECT c.id, c.document_id, d.title, c.text, c.tokens, c.terms, 0.0 AS score FROM knowledge_chunks c"
            f" JOIN knowledge_documents d ON d.id = c.document_id WHERE c.id IN ({marks}) AND c.bot_id = ?"
            " AND d.status = 'ready'",
            (*chunk_ids, bot_id),
        )
        return [_found(row) for row in rows]

    async def _check_limits(
        self, tx: Transaction, account_id: str, tokens: int, *, replacing: str | None = None
    ) -> None:
        limits = self._limits
        # Locked: two uploads of one account at once (two processes) must not both take the last free place.
        if not await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?" + tx.dialect.locked(), (account_id,)):
            raise NotFound("account")
        row = await tx.fetch_one(
            "SELECT COUNT(*) AS documents, COALESCE(SUM(d.tokens), 0) AS tokens FROM knowledge_documents d"
            " JOIN bots b ON b.id = d.bot_id WHERE d.account_id = ? AND d.id <> ? AND b.deleted_at IS NULL",
            (account_id, replacing or ""),
        )
        assert row is not None
        if int(row["documents"]) + 1 > limits.max_documents:
            raise LimitReached(
                f"the account already has {limits.max_documents} knowledge documents, the most it may have;"
                " delete one first"
            )
        if int(row["tokens"]) + tokens > limits.max_account_tokens:
            raise LimitReached(
                f"this document ({tokens} tokens) would take the account's knowledge past its limit of"
                f" {limits.max_account_tokens} tokens ({int(row['tokens'])} used); delete documents first"
            )


async def _insert_chunks(tx: Transaction, document_id: str, bot_id: str, chunks: Sequence[NewChunk]) -> None:
    if not chunks:
        return
    # 62 random bits: unique in practice, and the primary key refuses the one-in-a-quintillion repeat.
    rows = [
        (
            secrets.randbits(62),
            document_id,
            bot_id,
            seq,
            chunk.text,
            chunk.tokens,
            chunk.terms,
            len(chunk.terms.split()),
            chunk.terms_version,
        )
        for seq, chunk in enumerate(chunks)
    ]
    await tx.execute_many(
        "INSERT INTO knowledge_chunks (id, document_id, bot_id, seq, text, tokens, terms, term_count, terms_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    if tx.dialect.name == "sqlite":
        await tx.execute_many(
            "INSERT INTO knowledge_fts (rowid, terms) VALUES (?, ?)",
            [(row[0], _scoped(bot_id, row[6])) for row in rows],
        )
    await _count(tx, bot_id, len(rows), sum(row[7] for row in rows))


async def _delete_chunks(tx: Transaction, document_id: str) -> None:
    indexed = await tx.fetch_all(
        "SELECT id, bot_id, terms, term_count FROM knowledge_chunks WHERE document_id = ?", (document_id,)
    )
    if not indexed:
        return
    if tx.dialect.name == "sqlite":
        # A contentless index forgets a row when told the values it was indexed with.
        await tx.execute_many(
            "INSERT INTO knowledge_fts (knowledge_fts, rowid, terms) VALUES ('delete', ?, ?)",
            [(row["id"], _scoped(str(row["bot_id"]), str(row["terms"]))) for row in indexed],
        )
    await tx.execute("DELETE FROM knowledge_chunks WHERE document_id = ?", (document_id,))
    await _count(tx, str(indexed[0]["bot_id"]), -len(indexed), -sum(int(row["term_count"]) for row in indexed))


async def _count(tx: Transaction, bot_id: str, chunks: int, terms: int) -> None:
    await tx.execute(
        "INSERT INTO knowledge_stats (bot_id, chunks, terms) VALUES (?, ?, ?) ON CONFLICT (bot_id) DO UPDATE"
        " SET chunks = knowledge_stats.chunks + excluded.chunks, terms = knowledge_stats.terms + excluded.terms",
        (bot_id, chunks, terms),
    )


def _bot_key(bot_id: str) -> str:
    """A short token of the bot's own, before each of its terms in both backends' indexes: letters and digits only,
    so SQLite's tokenizer keeps "k<key>x<term>" whole, and a letter first, so PostgreSQL's parser does not read a
    key such as "123e45..." as a number in scientific notation and split it off (its generated column computes the
    same key). Two bots sharing a key would only share statistics: rows are still matched to their bot by id."""
    return "k" + hashlib.md5(bot_id.encode(), usedforsecurity=False).hexdigest()[:12] + "x"


def _scoped(bot_id: str, terms: str) -> str:
    key = _bot_key(bot_id)
    return " ".join(key + term for term in terms.split())


def _bm25(terms: str, idf: dict[str, float], average: float) -> float:
    """BM25 of one chunk (its index terms) for the question's stems and their IDF: k1 = 1.2, b = 0.75."""
    words = terms.split()
    norm = 1.2 * (0.25 + 0.75 * len(words) / average)
    counts: dict[str, int] = {}
    for word in words:
        if word in idf:
            counts[word] = counts.get(word, 0) + 1
    return sum(idf[word] * tf * 2.2 / (tf + norm) for word, tf in counts.items())


def _quoted(term: str) -> str:
    """An FTS5 string: the term as one phrase, whatever characters it holds."""
    return '"' + term.replace('"', '""') + '"'


def _document(row: Row) -> KnowledgeDocument:
    return from_row(KnowledgeDocument, row)


def _found(row: Row) -> FoundChunk:
    return FoundChunk(
        chunk_id=int(row["id"]),
        document_id=str(row["document_id"]),
        title=str(row["title"]),
        text=str(row["text"]),
        tokens=int(row["tokens"]),
        terms=str(row["terms"]),
        score=float(row["score"]),
    )


# FTS5's rank (its bm25()) picks the candidates inside the index, before any chunk is read; they are scored again
# in Python with the bot's own statistics (_search_sqlite).
_CANDIDATES_SQLITE = """
SELECT c.id, c.document_id, d.title, c.text, c.tokens, c.terms
FROM (SELECT rowid, rank FROM knowledge_fts WHERE knowledge_fts MATCH ? ORDER BY rank LIMIT ?) f
JOIN knowledge_chunks c ON c.id = f.rowid
JOIN knowledge_documents d ON d.id = c.document_id
WHERE c.bot_id = ? AND d.status = 'ready'
"""
# Candidates scored again per search: enough that FTS5's ranking with the whole index's statistics does not
# leave out what the bot's own statistics put first.
_RESCORED = 50
_CANDIDATE_COLUMNS = ("id", "document_id", "title", "text", "tokens", "terms")

# The same BM25 as FTS5 (its IDF, floored at 1e-6; k1 = 1.2, b = 0.75), over the bot's chunks alone: the terms
# come scoped to the bot (its key before each), as its chunks' vectors hold them, so the GIN index finds the bot's
# chunks of each term and nothing else. A chunk's frequency of each question term comes from its vector cut down to
# those terms first (setweight marks them, ts_filter keeps them), so a long chunk costs no more than a short one.
_BM25_POSTGRES = """
WITH q AS (SELECT ?::text[] AS terms),
stats AS (
    SELECT GREATEST(chunks, 1)::float8 AS n, GREATEST(terms::float8 / GREATEST(chunks, 1), 1) AS avglen
    FROM knowledge_stats WHERE bot_id = ?
),
idf AS (
    SELECT t.term, GREATEST(LN((s.n - f.df + 0.5) / (f.df + 0.5)), 1e-6) AS idf
    FROM q CROSS JOIN unnest(q.terms) AS t(term) CROSS JOIN stats s CROSS JOIN LATERAL (
        SELECT COUNT(*)::float8 AS df FROM knowledge_chunks c
        WHERE c.terms_vector @@ to_tsquery('simple', quote_literal(t.term))
    ) f
),
scored AS (
    SELECT c.id, SUM(i.idf * (CARDINALITY(u.positions) * 2.2)
           / (CARDINALITY(u.positions) + 1.2 * (0.25 + 0.75 * c.term_count / s.avglen))) AS score
    FROM knowledge_chunks c
    CROSS JOIN q
    CROSS JOIN stats s
    CROSS JOIN LATERAL unnest(ts_filter(setweight(c.terms_vector, 'A', q.terms), '{a}')) AS u
    JOIN idf i ON i.term = u.lexeme
    WHERE c.terms_vector @@ to_tsquery('simple', ?)
    GROUP BY c.id
    ORDER BY score DESC, c.id
    LIMIT ?
)
SELECT c.id, c.document_id, d.title, c.text, c.tokens, c.terms, s.score
FROM scored s
JOIN knowledge_chunks c ON c.id = s.id
JOIN knowledge_documents d ON d.id = c.document_id
WHERE d.status = 'ready' AND c.bot_id = ?
ORDER BY s.score DESC, c.id
"""
