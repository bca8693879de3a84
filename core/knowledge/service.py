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
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from core.chat import ChatMessage
from core.errors import UpstreamUnavailable
from core.knowledge.chunking import ChunkDraft, chunk_faq, chunk_text
from core.knowledge.embedder import ChargedEmbedder
from core.knowledge.extract import UnreadableDocument, extract
from core.knowledge.fetch import FetchFailed, PageFetcher
from core.knowledge.terms import TERMS_VERSION, index_terms, query_terms
from core.knowledge.vectors import VectorIndex
from core.models import Bot, KnowledgeDocument
from core.paid_calls import Payer
from core.storage.knowledge import FoundChunk, KnowledgeStore, NewChunk, NewDocument
from core.tokens import TokenCounter

T = TypeVar("T")
log = structlog.get_logger("core.knowledge")

# A chunk is relevant when it holds at least half of the question's content words (stop words dropped).
# "Liefert ihr nach Potsdam?" finds a delivery text naming Potsdam (1 of 2), while a question sharing one incidental
# word of three with a chunk ("Wie wird das Wetter morgen in Hamburg?" and a bakery's "am nächsten Morgen") does
# not: at one in three, that question reached the model with the bakery's delivery terms (tests/api/relay).
RELEVANCE_FLOOR = 0.5
# Chunks looked at per search before the floor and the budget choose among them.
CANDIDATES = 20
# Reciprocal rank fusion's constant (Cormack et al. 2009): a rank r counts 1 / (60 + r) in each ranking.
RRF_K = 60
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
    score: float  # BM25 (lexical alone) or the fused reciprocal rank (hybrid): higher is better
    relevance: float  # the share of the question's content words the chunk holds (0 to 1)
    similarity: float | None = None  # cosine similarity to the question (hybrid), None without embeddings
    min_similarity: float = 1.0  # KNOWLEDGE_MIN_SIMILARITY: as similar as this is relevant, whatever the words

    @property
    def relevant(self) -> bool:
        if self.similarity is not None and self.similarity >= self.min_similarity:
            return True
        return self.relevance >= RELEVANCE_FLOOR


@dataclass(frozen=True, slots=True)
class TurnKnowledge:
    """What a turn is shown: the excerpts as one message (None when nothing relevant was found)."""

    message: ChatMessage | None
    hits: tuple[Hit, ...]

    @property
    def found(self) -> bool:
        return self.message is not None


@dataclass(frozen=True, slots=True)
class TextSource:
    title: str
    text: str  # plain text or Markdown


@dataclass(frozen=True, slots=True)
class FaqSource:
    question: str
    answer: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class FileSource:
    kind: str  # core/knowledge/extract.py's reader
    data: bytes
    filename: str | None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class UrlSource:
    url: str
    title: str | None = None


Source = TextSource | FaqSource | FileSource | UrlSource


@dataclass(frozen=True, slots=True)
class Semantic:
    """Hybrid retrieval's parts (EMBEDDINGS_MODEL set): the embedder, the bots' vectors, the similarity floor."""

    embedder: ChargedEmbedder
    vectors: VectorIndex
    min_similarity: float


class KnowledgeService:
    def __init__(
        self,
        store: KnowledgeStore,
        tokens: TokenCounter,
        fetcher: PageFetcher | None = None,
        semantic: Semantic | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._fetcher = fetcher
        self._semantic = semantic
        # Embedded in the background (core/knowledge/indexer.py) before they are searched.
        self._new_status = "processing" if semantic is not None else "ready"

    async def add(self, bot: Bot, model: str, source: Source) -> KnowledgeDocument:
        """A new document from `source`, ready when this returns. UnreadableDocument (a file or page that cannot be
        read), FetchRefused (an address not allowed) and FetchFailed store nothing."""
        new, chunks = await self._prepare(bot, model, source)
        return await self._store.add(new, chunks, status=self._new_status)

    async def replace(self, document: KnowledgeDocument, bot: Bot, model: str, source: Source) -> KnowledgeDocument:
        """The document's content replaced by `source` (its id stays); on any refusal the old content stays."""
        new, chunks = await self._prepare(bot, model, source)
        return await self._store.replace(document.id, new, chunks, status=self._new_status)

    async def refetch(self, document: KnowledgeDocument, bot: Bot, model: str) -> KnowledgeDocument:
        """A page imported from a URL, fetched again; its title stays what the owner or the page gave."""
        if document.kind != "url" or document.source is None:
            raise ValueError("only a document imported from a URL can be fetched again")
        return await self.replace(document, bot, model, UrlSource(document.source, document.title))

    async def _prepare(self, bot: Bot, model: str, source: Source) -> tuple[NewDocument, list[NewChunk]]:
        count = self._counter(model)
        if isinstance(source, TextSource):
            chunks = await _off_loop(lambda: self._chunks(chunk_text(source.title, source.text, count)))
            return NewDocument(bot.account_id, bot.id, source.title, "text", None), chunks
        if isinstance(source, FaqSource):
            chunks = await _off_loop(lambda: self._chunks([chunk_faq(source.question, source.answer, count)]))
            return NewDocument(bot.account_id, bot.id, source.title or source.question[:200], "faq", None), chunks
        if isinstance(source, FileSource):
            title, chunks = await _off_loop(
                lambda: self._read(source.kind, source.data, source.title, source.filename, count)
            )
            return NewDocument(bot.account_id, bot.id, title, "file", source.filename), chunks
        if self._fetcher is None:
            raise FetchFailed("this gateway does not import pages")
        page = await self._fetcher.fetch(source.url)
        title, chunks = await _off_loop(lambda: self._read(page.kind, page.data, source.title, page.url, count))
        return NewDocument(bot.account_id, bot.id, title, "url", source.url), chunks

    def _read(
        self, kind: str, data: bytes, title: str | None, fallback: str | None, count: Callable[[str], int]
    ) -> tuple[str, list[NewChunk]]:
        extracted = extract(kind, data)
        name = (title or extracted.title or fallback or "Untitled")[:200]
        chunks = self._chunks(chunk_text(name, extracted.text, count))
        if not chunks:
            raise UnreadableDocument("the document holds no text")
        return name, chunks

    async def get(self, document_id: str, *, account_id: str | None) -> KnowledgeDocument:
        return await self._store.get(document_id, account_id=account_id)

    async def documents(self, bot: Bot) -> list[KnowledgeDocument]:
        return await self._store.of_bot(bot.id)

    async def delete(self, document: KnowledgeDocument) -> None:
        await self._store.delete(document.id)

    async def search(self, bot: Bot, question: str, limit: int, payer: Payer | None = None) -> list[Hit]:
        """The bot's best chunks for a question, best first, each with its relevance. With EMBEDDINGS_MODEL (and
        a `payer` for the question's embedding) the lexical ranking of the relevant chunks and the vector ranking
        are fused by reciprocal rank (RRF, k = 60); a provider that does not answer leaves the lexical ranking."""
        terms = query_terms(question)
        lexical = await self._store.search(bot.id, terms.stems, max(limit, CANDIDATES))
        semantic = self._semantic
        nearest = await self._nearest(bot, question, payer)
        coverage = {chunk.chunk_id: terms.coverage(chunk.terms) for chunk in lexical}
        if semantic is None or not nearest:
            return [_hit(chunk, coverage[chunk.chunk_id]) for chunk in lexical][:limit]
        similarity = dict(nearest)
        fused: dict[int, float] = {}
        # Lexical ranks count only for chunks past the relevance floor: below it a chunk shares an incidental word
        # with the question, and fusing those in pulled paraphrased questions' answers down (bench/knowledge.py:
        # recall@3 0.872 with every lexical rank, 0.904 with these alone, 0.917 for the vectors alone).
        words = [chunk.chunk_id for chunk in lexical if coverage[chunk.chunk_id] >= RELEVANCE_FLOOR]
        for ranking in (words, [chunk_id for chunk_id, _ in nearest]):
            for rank, chunk_id in enumerate(ranking, 1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        found = {chunk.chunk_id: chunk for chunk in lexical}
        missing = [chunk_id for chunk_id in fused if chunk_id not in found]
        for chunk in await self._store.chunks(bot.id, missing):
            found[chunk.chunk_id] = chunk
            coverage[chunk.chunk_id] = terms.coverage(chunk.terms)
        order = sorted((c for c in fused if c in found), key=lambda c: (-fused[c], c))
        return [
            replace(
                _hit(found[c], coverage[c], similarity.get(c), semantic.min_similarity),
                score=fused[c],
            )
            for c in order[:limit]
        ]

    async def searches(self, bot: Bot) -> bool:
        """Whether the bot's turns search its knowledge (it has some, and uses it); without, `for_turn` finds
        nothing at once. Kept like the bot itself: no read in the common case."""
        return bot.knowledge_mode != "off" and bot.knowledge_tokens > 0 and await self._store.has_chunks(bot.id)

    async def for_turn(self, bot: Bot, model: str, question: str, payer: Payer | None = None) -> TurnKnowledge:
        """The relevant chunks that fit the bot's `knowledge_tokens`, best first, as one message."""
        if not await self.searches(bot):
            return TurnKnowledge(None, ())
        hits = [hit for hit in await self.search(bot, question, CANDIDATES, payer) if hit.relevant]
        kept: list[Hit] = []
        for hit in hits:
            if self.message_tokens(model, excerpts_message([*kept, hit])) > bot.knowledge_tokens:
                continue  # a smaller chunk further down may still fit
            kept.append(hit)
        if not kept:
            return TurnKnowledge(None, tuple(hits))
        return TurnKnowledge(excerpts_message(kept), tuple(kept))

    async def _nearest(self, bot: Bot, question: str, payer: Payer | None) -> list[tuple[int, float]]:
        semantic = self._semantic
        if semantic is None or payer is None or not question.strip():
            return []
        if not await semantic.vectors.has_vectors(bot.id):
            return []  # no document of the bot is embedded: the question's embedding would find nothing
        try:
            [vector] = await semantic.embedder.embed([question], payer)
        except UpstreamUnavailable as exc:
            log.warning("knowledge_question_not_embedded", bot_id=bot.id, code=exc.code)
            return []
        return await semantic.vectors.nearest(bot.id, vector, CANDIDATES)

    def message_tokens(self, model: str, message: ChatMessage) -> int:
        """What one more message adds to a prompt's count (the reply priming is counted once per prompt)."""
        return self._tokens.count_messages(model, [message]) - self._tokens.count_messages(model, [])

    def _counter(self, model: str) -> Callable[[str], int]:
        return lambda text: self._tokens.count_text(model, text)

    def _chunks(self, drafts: list[ChunkDraft]) -> list[NewChunk]:
        return [
            NewChunk(draft.text, draft.tokens, index_terms(draft.text), TERMS_VERSION)
            for draft in drafts
            if draft.text.strip()
        ]


async def _off_loop(work: Callable[[], T]) -> T:
    """CPU work (reading a PDF, tokenising a long text) on a thread: the event loop keeps serving."""
    return await asyncio.get_running_loop().run_in_executor(None, work)


def excerpts_message(hits: list[Hit]) -> ChatMessage:
    parts = [KNOWLEDGE_PREAMBLE]
    for number, hit in enumerate(hits, 1):
        parts.append(f"[{number}] {hit.text}")
    return ChatMessage(role="system", content="\n\n".join(parts))


def _hit(chunk: FoundChunk, relevance: float, similarity: float | None = None, floor: float = 1.0) -> Hit:
    return Hit(chunk.document_id, chunk.title, chunk.text, chunk.tokens, chunk.score, relevance, similarity, floor)
