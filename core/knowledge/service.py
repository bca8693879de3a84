"""A bot's knowledge base as its owner and its turns use it: add, list, delete, search, and the turn's excerpts.

Adding cuts the text into chunks with the bot's tokenizer (the turn's budget is then exact) and indexes their
terms; reading a file (a PDF page by page, say) and chunking run on a thread, never on the event loop. Searching
ranks chunks by BM25 (core/storage/knowledge.py) and keeps those that pass the relevance floor: a chunk is
relevant when it holds at least RELEVANCE_FLOOR of the question's content words, in some form (stem, accent,
case). BM25 orders the chunks but its figures depend on the question's length and on the other documents, so it
cannot say "nothing relevant" by itself; the share of the question's words that a chunk answers can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.chat import ChatMessage
from core.knowledge.chunking import ChunkDraft, chunk_faq, chunk_text
from core.knowledge.extract import Extracted, extract
from core.knowledge.terms import index_terms, query_terms
from core.models import Bot, KnowledgeDocument
from core.storage.knowledge import FoundChunk, KnowledgeStore, NewChunk, NewDocument
from core.tokens import TokenCounter

T = TypeVar("T")

# A chunk is relevant when it holds at least half of the question's content words (stop words dropped).
# "Liefert ihr nach Potsdam?" finds a delivery text naming Potsdam (1 of 2), while a question sharing one incidental
# word of three with a chunk ("Wie wird das Wetter morgen in Hamburg?" and a bakery's "am nächsten Morgen") does
# not: at one in three, that question reached the model with the bakery's delivery terms (tests/api/relay).
RELEVANCE_FLOOR = 0.5
# Chunks looked at per search before the floor and the budget choose among them.
CANDIDATES = 20
# What the model is told about the excerpts that follow; the persona stays the first message, unchanged.
KNOWLEDGE_PREAMBLE = (
    "Excerpts from the business's own documents that may answer the customer's next message. Answer from them "
    "when they do; do not invent facts they do not state."
)


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: str
    title: str
    text: str
    tokens: int
    score: float  # BM25, higher is better
    relevance: float  # the share of the question's content words the chunk holds (0 to 1)

    @property
    def relevant(self) -> bool:
        return self.relevance >= RELEVANCE_FLOOR


@dataclass(frozen=True, slots=True)
class TurnKnowledge:
    """What a turn is shown: the excerpts as one message (None when nothing relevant was found)."""

    message: ChatMessage | None
    hits: tuple[Hit, ...]

    @property
    def found(self) -> bool:
        return self.message is not None


class KnowledgeService:
    def __init__(self, store: KnowledgeStore, tokens: TokenCounter) -> None:
        self._store = store
        self._tokens = tokens

    async def add_text(self, bot: Bot, model: str, title: str, text: str) -> KnowledgeDocument:
        chunks = await _off_loop(lambda: self._chunks(model, chunk_text(title, text, self._counter(model))))
        return await self._store.add(NewDocument(bot.account_id, bot.id, title, "text", None), chunks)

    async def add_faq(self, bot: Bot, model: str, title: str | None, question: str, answer: str) -> KnowledgeDocument:
        chunks = self._chunks(model, [chunk_faq(question, answer, self._counter(model))])
        return await self._store.add(NewDocument(bot.account_id, bot.id, title or question, "faq", None), chunks)

    async def add_file(
        self, bot: Bot, model: str, *, kind: str, data: bytes, filename: str | None, title: str | None
    ) -> KnowledgeDocument:
        """An uploaded file, read as `kind` (core/knowledge/extract.py); UnreadableDocument stores nothing."""

        def read() -> tuple[Extracted, list[NewChunk]]:
            extracted = extract(kind, data)
            name = title or extracted.title or filename or "Untitled"
            return extracted, self._chunks(model, chunk_text(name, extracted.text, self._counter(model)))

        extracted, chunks = await _off_loop(read)
        name = title or extracted.title or filename or "Untitled"
        return await self._store.add(NewDocument(bot.account_id, bot.id, name[:200], "file", filename), chunks)

    async def get(self, document_id: str, *, account_id: str | None) -> KnowledgeDocument:
        return await self._store.get(document_id, account_id=account_id)

    async def documents(self, bot: Bot) -> list[KnowledgeDocument]:
        return await self._store.of_bot(bot.id)

    async def delete(self, document: KnowledgeDocument) -> None:
        await self._store.delete(document.id)

    async def search(self, bot: Bot, question: str, limit: int) -> list[Hit]:
        """The bot's best chunks for a question, best first, each with its relevance."""
        terms = query_terms(question)
        found = await self._store.search(bot.id, terms.stems, max(limit, CANDIDATES))
        return [_hit(chunk, terms.coverage(chunk.terms)) for chunk in found][:limit]

    async def for_turn(self, bot: Bot, model: str, question: str) -> TurnKnowledge:
        """The relevant chunks that fit the bot's `knowledge_tokens`, best first, as one message."""
        if bot.knowledge_mode == "off" or bot.knowledge_tokens <= 0:
            return TurnKnowledge(None, ())
        hits = [hit for hit in await self.search(bot, question, CANDIDATES) if hit.relevant]
        kept: list[Hit] = []
        for hit in hits:
            if self.message_tokens(model, excerpts_message([*kept, hit])) > bot.knowledge_tokens:
                continue  # a smaller chunk further down may still fit
            kept.append(hit)
        if not kept:
            return TurnKnowledge(None, tuple(hits))
        return TurnKnowledge(excerpts_message(kept), tuple(kept))

    def message_tokens(self, model: str, message: ChatMessage) -> int:
        """What one more message adds to a prompt's count (the reply priming is counted once per prompt)."""
        return self._tokens.count_messages(model, [message]) - self._tokens.count_messages(model, [])

    def _counter(self, model: str) -> Callable[[str], int]:
        return lambda text: self._tokens.count_text(model, text)

    def _chunks(self, model: str, drafts: list[ChunkDraft]) -> list[NewChunk]:
        return [NewChunk(draft.text, draft.tokens, index_terms(draft.text)) for draft in drafts if draft.text.strip()]


async def _off_loop(work: Callable[[], T]) -> T:
    """CPU work (reading a PDF, tokenising a long text) on a thread: the event loop keeps serving."""
    return await asyncio.get_running_loop().run_in_executor(None, work)


def excerpts_message(hits: list[Hit]) -> ChatMessage:
    parts = [KNOWLEDGE_PREAMBLE]
    for number, hit in enumerate(hits, 1):
        parts.append(f"[{number}] {hit.text}")
    return ChatMessage(role="system", content="\n\n".join(parts))


def _hit(chunk: FoundChunk, relevance: float) -> Hit:
    return Hit(chunk.document_id, chunk.title, chunk.text, chunk.tokens, chunk.score, relevance)
