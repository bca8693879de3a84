"""Knowledge documents and their chunks, and the lexical search over them, on both backends.

A document is stored with all its chunks in one transaction, so a search never sees half a document, and a
deleted document's chunks go in the same commit as its row. The account's row is locked while its limits are
checked, so two uploads at once (two processes) cannot both pass the last free place.

Search ranks a bot's chunks by BM25 over the terms of core/knowledge/terms.py (k1 = 1.2, b = 0.75):
  - SQLite: FTS5's own `bm25()`, one MATCH restricted to the bot's chunks (its statistics are the whole index's);
  - PostgreSQL: the same formula computed in SQL from the bot's chunks (document frequencies through the GIN
    index on the terms, term frequencies from the matching chunks' vectors).
Higher is better on both. Only `ready` documents are searched.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from core.clock import Clock
from core.errors import LimitReached, NotFound
from core.ids import new_id
from core.models import KnowledgeDocument
from core.storage.db import Database, Row, Transaction
from core.storage.records import columns, from_row

_COLUMNS = ", ".join(columns(KnowledgeDocument))


@dataclass(frozen=True, slots=True)
class NewChunk:
    text: str
    tokens: int
    terms: str  # space-separated index terms (core/knowledge/terms.py)


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

    async def add(self, new: NewDocument, chunks: Sequence[NewChunk]) -> KnowledgeDocument:
        """A ready document with its chunks, in one commit; LimitReached if the account's limits would be passed."""
        now = self._clock.now_ms()
        tokens = sum(chunk.tokens for chunk in chunks)
        document_id = new_id("doc")
        async with self._db.transaction() as tx:
            await self._check_limits(tx, new.account_id, tokens)
            row = await tx.fetch_one(
                "INSERT INTO knowledge_documents (id, account_id, bot_id, title, kind, source, status, error, chunks,"
                f" tokens, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', NULL, ?, ?, ?, ?)"
                f" RETURNING {_COLUMNS}",
                (
                    document_id,
                    new.account_id,
                    new.bot_id,
                    new.title,
                    new.kind,
                    new.source,
                    len(chunks),
                    tokens,
                    now,
                    now,
                ),
            )
            await _insert_chunks(tx, document_id, new.bot_id, chunks)
        assert row is not None
        return _document(row)

    async def replace(self, document_id: str, new: NewDocument, chunks: Sequence[NewChunk]) -> KnowledgeDocument:
        """The document's content replaced in one commit (same id): a search sees the old chunks or the new."""
        now = self._clock.now_ms()
        tokens = sum(chunk.tokens for chunk in chunks)
        async with self._db.transaction() as tx:
            await self._check_limits(tx, new.account_id, tokens, replacing=document_id)
            row = await tx.fetch_one(
                "UPDATE knowledge_documents SET title = ?, kind = ?, source = ?, status = 'ready', error = NULL,"
                f" chunks = ?, tokens = ?, updated_at = ? WHERE id = ? AND bot_id = ? RETURNING {_COLUMNS}",
                (new.title, new.kind, new.source, len(chunks), tokens, now, document_id, new.bot_id),
            )
            if row is None:
                raise NotFound("document")
            await tx.execute("DELETE FROM knowledge_chunks WHERE document_id = ?", (document_id,))
            await _insert_chunks(tx, document_id, new.bot_id, chunks)
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
            await tx.execute("DELETE FROM knowledge_chunks WHERE document_id = ?", (document_id,))
            if not await tx.execute("DELETE FROM knowledge_documents WHERE id = ?", (document_id,)):
                raise NotFound("document")

    async def search(self, bot_id: str, stems: Sequence[str], limit: int) -> list[FoundChunk]:
        """The bot's best chunks for the stems, best first (at most `limit`); none when there are no stems."""
        if not stems or limit < 1:
            return []
        if self._db.dialect.name == "postgresql":
            rows = await self._db.fetch_all(_BM25_POSTGRES, (list(stems), bot_id, bot_id, bot_id, limit))
        else:
            match = f"bot_id : {_quoted(bot_id)} AND terms : ({' OR '.join(_quoted(s) for s in stems)})"
            rows = await self._db.fetch_all(_BM25_SQLITE, (match, limit))
        return [_found(row) for row in rows]

    async def _check_limits(
        self, tx: Transaction, account_id: str, tokens: int, *, replacing: str | None = None
    ) -> None:
        limits = self._limits
        # Locked: two uploads of one account at once (two processes) must not both take the last free place.
        if not await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?" + tx.dialect.locked(), (account_id,)):
            raise NotFound("account")
        row = await tx.fetch_one(
            "SELECT COUNT(*) AS documents, COALESCE(SUM(tokens), 0) AS tokens FROM knowledge_documents"
            " WHERE account_id = ? AND id <> ?",
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
    await tx.execute_many(
        "INSERT INTO knowledge_chunks (id, document_id, bot_id, seq, text, tokens, terms, term_count)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            # 62 random bits: unique in practice, and the primary key refuses the one-in-a-quintillion repeat.
            (
                secrets.randbits(62),
                document_id,
                bot_id,
                seq,
                chunk.text,
                chunk.tokens,
                chunk.terms,
                len(chunk.terms.split()),
            )
            for seq, chunk in enumerate(chunks)
        ],
    )


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


# FTS5's bm25() is lower-is-better; the bot column weighs nothing, so only the terms rank.
_BM25_SQLITE = """
SELECT c.id, c.document_id, d.title, c.text, c.tokens, c.terms, -bm25(knowledge_fts, 0.0, 1.0) AS score
FROM knowledge_fts
JOIN knowledge_chunks c ON c.id = knowledge_fts.rowid
JOIN knowledge_documents d ON d.id = c.document_id
WHERE knowledge_fts MATCH ? AND d.status = 'ready'
ORDER BY bm25(knowledge_fts, 0.0, 1.0), c.id
LIMIT ?
"""

# The same BM25 as FTS5 (its IDF, floored at 1e-6; k1 = 1.2, b = 0.75), over the bot's chunks alone.
_BM25_POSTGRES = """
WITH q AS (SELECT DISTINCT unnest(?::text[]) AS term),
stats AS (
    SELECT COUNT(*)::float8 AS n, COALESCE(AVG(term_count), 1)::float8 AS avglen
    FROM knowledge_chunks WHERE bot_id = ?
),
idf AS (
    SELECT q.term, GREATEST(LN((s.n - f.df + 0.5) / (f.df + 0.5)), 1e-6) AS idf
    FROM q CROSS JOIN stats s CROSS JOIN LATERAL (
        SELECT COUNT(*)::float8 AS df FROM knowledge_chunks c
        WHERE c.bot_id = ? AND to_tsvector('simple', c.terms) @@ to_tsquery('simple', quote_literal(q.term))
    ) f
),
hits AS (
    SELECT c.id, c.document_id, c.text, c.tokens, c.terms, c.term_count, to_tsvector('simple', c.terms) AS v
    FROM knowledge_chunks c
    WHERE c.bot_id = ?
      AND to_tsvector('simple', c.terms) @@ (SELECT to_tsquery('simple', string_agg(quote_literal(term), ' | ')) FROM q)
)
SELECT h.id, h.document_id, d.title, h.text, h.tokens, h.terms,
       SUM(i.idf * (CARDINALITY(u.positions) * 2.2)
           / (CARDINALITY(u.positions) + 1.2 * (0.25 + 0.75 * h.term_count / s.avglen))) AS score
FROM hits h
JOIN knowledge_documents d ON d.id = h.document_id AND d.status = 'ready'
CROSS JOIN LATERAL unnest(h.v) AS u
JOIN idf i ON i.term = u.lexeme
CROSS JOIN stats s
GROUP BY h.id, h.document_id, d.title, h.text, h.tokens, h.terms
ORDER BY score DESC, h.id
LIMIT ?
"""
