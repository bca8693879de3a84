"""The service groups of a process, each opened and closed by its own context: storage, upstreams, worker, web.

- `Storage`: the database connections and every store on them (both roles need them).
- `Upstreams`: the clients of the services we call: the model provider (and the engine that uses it) and Graph.
- `Worker`: the inbox workers that answer customers (not started here: housekeeping starts and drains them).
- `Web`: what the HTTP surfaces share beyond storage: the channel directory, the inbox writer, read slots.

Handlers never see a group: the app factory builds each surface's handler objects from the groups with exactly
the dependencies their constructors ask for (gateway/surfaces.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import structlog

from adapters.graph_client import GraphClient
from api.read_slots import ReadSlots
from core.agent_replies import AgentReplies, AgentReplyDeps
from core.channel_directory import ChannelDirectory
from core.channel_worker import ChannelWorker, WorkerDeps
from core.clock import Clock
from core.engine import ConversationEngine, EngineDeps
from core.handoff import Handoffs
from core.knowledge.embedder import ChargedEmbedder
from core.knowledge.fetch import AddressPolicy, PageFetcher, parse_networks
from core.knowledge.indexer import KnowledgeIndexer
from core.knowledge.service import KnowledgeService, Semantic
from core.knowledge.vectors import VectorIndex
from core.llm import LLMClient
from core.media.customer_media import CustomerMedia
from core.media.download import MediaFetcher
from core.media.transcriber import ChargedTranscriber
from core.metrics import Metrics
from core.notifier import Notifier
from core.openai_probe import OpenAIProbe
from core.paid_calls import PaidCalls
from core.pricing import PriceTable
from core.secrets import SecretBox
from core.storage.accounts import AccountStore
from core.storage.activity import ActivityStore
from core.storage.api_keys import ApiKeyStore
from core.storage.audit import AuditStore
from core.storage.backends import connect_database
from core.storage.bots import BotStore
from core.storage.channels import ChannelStore
from core.storage.conversation_state import ConversationStateStore
from core.storage.conversations import ConversationStore
from core.storage.credits import CreditLedger
from core.storage.data_deletion import DataDeletionStore
from core.storage.db import Database
from core.storage.doorbell import CHANNELS, INBOX, SETTINGS
from core.storage.erasure import Eraser
from core.storage.feedback import FeedbackStore
from core.storage.inbox import InboxWriter
from core.storage.inbox_queue import InboxQueue
from core.storage.knowledge import KnowledgeLimits, KnowledgeStore
from core.storage.migrations import apply_migrations
from core.storage.notifications import NotificationStore
from core.storage.people import PeopleStore
from core.storage.plans import PlanStore
from core.storage.quota import QuotaService
from core.storage.rate_limits import RateLimitStore
from core.storage.reads.bots import BotReportReader
from core.storage.reads.conversations import ConversationReader
from core.storage.reads.status import StatusReader
from core.storage.reads.totals import TotalsReader
from core.storage.reads.usage_export import ExportReader
from core.storage.reads.usage_series import UsageSeriesReader
from core.storage.reply_keys import ReplyKeys
from core.storage.rollups import Rollups
from core.storage.usage import UsageStore
from core.storage.web_sessions import SessionStore
from core.tokenizer_warmup import TokenizerWarmup
from core.tokens import TokenCounter
from core.worker_pool import WorkerPool
from gateway.settings import Settings

# PostgreSQL connections of the reports and exports handle (two of each may stream at once: ReadSlots).
REPORT_CONNECTIONS = 4

log = structlog.get_logger("gateway.services")


@dataclass(frozen=True, slots=True)
class Storage:
    db: Database
    # Dashboard reports may scan a year of usage (about a second on SQLite), exports stream a year of records and
    # a conversation search may scan every message of an account: they get connections of their own, so the
    # relay's and the webhooks' reads never queue behind one (bench/dashboard.py measures it).
    reports_db: Database
    plans: PlanStore
    accounts: AccountStore
    api_keys: ApiKeyStore
    credits: CreditLedger
    bots: BotStore
    channels: ChannelStore
    conversations: ConversationStore
    usage: UsageStore
    quota: QuotaService
    rate_limits: RateLimitStore  # per-minute limits, shared by every process
    queue: InboxQueue
    state: ConversationStateStore  # human takeover pauses
    feedback: FeedbackStore
    activity: ActivityStore
    audit: AuditStore
    eraser: Eraser
    deletion_requests: DataDeletionStore
    status_reader: StatusReader
    conversation_reader: ConversationReader
    export_reader: ExportReader
    totals_reader: TotalsReader
    usage_series_reader: UsageSeriesReader
    bot_report_reader: BotReportReader
    knowledge: KnowledgeStore
    notifications: NotificationStore  # what accounts are told (an outbox), sent by core/notifier.py
    handoffs: Handoffs  # conversations handed to a person: the pause and the account's notification
    people: PeopleStore  # who signs in to the web dashboard
    web_sessions: SessionStore  # their sessions
    rollups: Rollups  # hourly rollups of usage and messages, for the reports (the housekeeping leader advances them)


@dataclass(frozen=True, slots=True)
class Upstreams:
    graph: GraphClient
    engine: ConversationEngine | None  # None when no OpenAI key is configured
    openai_probe: OpenAIProbe
    prices: PriceTable
    knowledge: KnowledgeService  # a bot's documents: added and searched by the API, shown to the model in turns
    knowledge_indexer: KnowledgeIndexer | None  # embeds new documents (EMBEDDINGS_MODEL set), in housekeeping
    agent_replies: AgentReplies  # a person's replies to customers, sent through the channels
    notifier: Notifier  # sends accounts their notifications (the housekeeping leader runs it)
    media: MediaFetcher  # customers' media, from Meta's allowed hosts
    transcriber: ChargedTranscriber | None  # voice notes to text (TRANSCRIPTION_MODEL, with a model configured)


@dataclass(frozen=True, slots=True)
class Worker:
    pool: WorkerPool


@dataclass(frozen=True, slots=True)
class Web:
    directory: ChannelDirectory
    inbox_writer: InboxWriter
    export_slots: ReadSlots  # at most two exports streaming at once in this process (else 429)
    search_slots: ReadSlots  # at most two conversation searches (`q`) at once in this process (else 429)


async def open_database(settings: Settings) -> Database:
    """The database of DATABASE_URL, migrated to the latest schema."""
    db = await connect_database(settings.database_url, pool_size=settings.database_pool_size)
    try:
        applied = await apply_migrations(db)
    except BaseException:
        await db.close()
        raise
    if applied:
        log.info("migrations_applied", versions=applied)
    return db


@asynccontextmanager
async def open_storage(settings: Settings, clock: Clock) -> AsyncIterator[Storage]:
    db = await open_database(settings)
    try:
        # Reports and exports read on connections of their own (at most REPORT_CONNECTIONS on PostgreSQL), so a
        # long export never waits for, nor holds up, the message path's connections.
        reports_db = await connect_database(settings.database_url, pool_size=REPORT_CONNECTIONS, idle=True)
    except BaseException:
        await db.close()
        raise
    state = ConversationStateStore(db, clock)
    notifications = NotificationStore(db, clock, SecretBox(settings.secrets_key))
    try:
        conversations = ConversationStore(db, clock)
        yield Storage(
            db=db,
            reports_db=reports_db,
            plans=PlanStore(db, clock),
            accounts=AccountStore(db, clock),
            api_keys=ApiKeyStore(db, clock),
            credits=CreditLedger(db, clock),
            bots=BotStore(db, clock),
            channels=ChannelStore(db, clock, SecretBox(settings.secrets_key)),
            conversations=conversations,
            usage=UsageStore(db),
            quota=QuotaService(db, clock, reservation_ttl_ms=settings.reservation_ttl_seconds * 1000),
            rate_limits=RateLimitStore(db, clock),
            queue=InboxQueue(db, clock, lease_ms=settings.inbox_lease_seconds * 1000),
            state=state,
            feedback=FeedbackStore(db, clock),
            activity=ActivityStore(db, clock),
            audit=AuditStore(db, clock),
            eraser=Eraser(db, clock, forget=conversations.forget),
            deletion_requests=DataDeletionStore(db, clock),
            status_reader=StatusReader(db),
            conversation_reader=ConversationReader(db, reports_db),
            export_reader=ExportReader(reports_db),
            totals_reader=TotalsReader(reports_db),
            usage_series_reader=UsageSeriesReader(reports_db),
            bot_report_reader=BotReportReader(reports_db),
            knowledge=KnowledgeStore(
                db,
                clock,
                KnowledgeLimits(
                    max_documents=settings.knowledge_max_documents,
                    max_account_tokens=settings.knowledge_max_account_tokens,
                ),
            ),
            notifications=notifications,
            handoffs=Handoffs(state, notifications, clock),
            people=PeopleStore(db, clock),
            web_sessions=SessionStore(db, clock, lifetime_ms=settings.session_hours * 3_600_000),
            rollups=Rollups(db),
        )
    finally:
        await reports_db.close()
        await db.close()


@asynccontextmanager
async def open_upstreams(
    settings: Settings, clock: Clock, tokens: TokenCounter, storage: Storage, metrics: Metrics
) -> AsyncIterator[Upstreams]:
    # The tokenizer files are loaded when a model first needs one (core/tokens.py): a missing one fails start-up.
    tokens.check_files()
    prices = PriceTable.load(settings.data_dir / "prices.json")
    # The one HTTP session of the process for Graph API calls (connection pooling, keep-alive).
    graph_session = aiohttp.ClientSession()
    warmup = TokenizerWarmup(storage.plans, tokens)
    llm: LLMClient | None = None
    fetcher = PageFetcher(
        AddressPolicy(settings.knowledge_fetch_allow_private, parse_networks(settings.knowledge_fetch_allow_networks)),
        max_bytes=settings.knowledge_max_upload_bytes,
        timeout_seconds=settings.knowledge_fetch_timeout_seconds,
    )
    knowledge = KnowledgeService(storage.knowledge, tokens, fetcher)
    notifier = Notifier(
        storage.notifications,
        AddressPolicy(settings.notify_allow_private, parse_networks(settings.notify_allow_networks)),
        timeout_seconds=settings.notify_timeout_seconds,
    )
    indexer: KnowledgeIndexer | None = None
    media = MediaFetcher(
        graph_base_url=settings.graph_api_base_url,
        graph_version=settings.graph_api_version,
        allowed_hosts=settings.media_allowed_hosts,
        max_bytes=settings.media_max_bytes,
        timeout_seconds=settings.media_timeout_seconds,
    )
    transcriber: ChargedTranscriber | None = None
    try:
        engine = None
        if settings.openai_api_key:
            llm = LLMClient.create(
                api_key=settings.openai_api_key,
                base_url=settings.openai_base_url,
                attempt_timeout=settings.llm_attempt_timeout,
                max_attempts=settings.llm_max_attempts,
                total_budget=settings.llm_total_budget,
                metrics=metrics,
            )
            # Embeddings and transcriptions are charged like turns, outside them.
            paid = PaidCalls(llm, storage.db, storage.quota, storage.usage, prices, clock)
            if settings.embeddings_model:
                embedder = ChargedEmbedder(model=settings.embeddings_model, paid=paid, tokens=tokens)
                semantic = Semantic(
                    embedder,
                    VectorIndex(storage.knowledge, settings.embeddings_model),
                    settings.knowledge_min_similarity,
                )
                knowledge = KnowledgeService(storage.knowledge, tokens, fetcher, semantic)
                indexer = KnowledgeIndexer(storage.knowledge, embedder, clock)
            if settings.transcription_model:
                transcriber = ChargedTranscriber(
                    model=settings.transcription_model, paid=paid, max_seconds=settings.media_max_audio_seconds
                )
            engine = ConversationEngine(
                EngineDeps(
                    storage.db,
                    clock,
                    storage.plans,
                    storage.conversations,
                    storage.quota,
                    storage.usage,
                    tokens,
                    prices,
                    llm,
                    storage.rate_limits,
                    metrics,
                    knowledge,
                )
            )
        else:
            log.warning("openai_not_configured", hint="set OPENAI_API_KEY; relay calls answer 503 until then")
        graph = GraphClient(
            graph_session,
            base_url=settings.graph_api_base_url,
            version=settings.graph_api_version,
            on_failure=metrics.graph_failure,
        )
        if engine is not None:
            await warmup.load_offered()
            warmup.start()
            storage.db.doorbell.subscribe(SETTINGS, warmup.wake)  # a plan made or changed, in any process
        yield Upstreams(
            graph=graph,
            engine=engine,
            openai_probe=OpenAIProbe(None if llm is None else llm.sdk_client, clock),
            prices=prices,
            knowledge=knowledge,
            knowledge_indexer=indexer,
            agent_replies=AgentReplies(
                AgentReplyDeps(
                    db=storage.db,
                    clock=clock,
                    channels=storage.channels,
                    state=storage.state,
                    conversations=storage.conversations,
                    accounts=storage.accounts,
                    bots=storage.bots,
                    plans=storage.plans,
                    tokens=tokens,
                    graph=graph,
                    keys=ReplyKeys(storage.db, clock),
                )
            ),
            notifier=notifier,
            media=media,
            transcriber=transcriber,
        )
    finally:
        await warmup.close()
        await fetcher.close()
        await notifier.close()
        await media.close()
        await graph_session.close()
        if llm is not None:
            await llm.close()


@asynccontextmanager
async def open_worker(
    settings: Settings, clock: Clock, storage: Storage, upstreams: Upstreams, metrics: Metrics
) -> AsyncIterator[Worker]:
    worker = ChannelWorker(
        WorkerDeps(
            queue=storage.queue,
            channels=storage.channels,
            bots=storage.bots,
            accounts=storage.accounts,
            state=storage.state,
            quota=storage.quota,
            engine=upstreams.engine,
            graph=upstreams.graph,
            clock=clock,
            lease_seconds=settings.inbox_lease_seconds,
            handoffs=storage.handoffs,
            media=CustomerMedia(upstreams.media, upstreams.transcriber),
        )
    )
    pool = WorkerPool(
        storage.queue,
        worker,
        concurrency=settings.workers,
        ack_target_ms=settings.worker_ack_target_ms,
        settle_seconds=settings.inbox_settle_ms / 1000,
        poll_seconds=settings.inbox_poll_seconds,
        metrics=metrics,
    )
    storage.db.doorbell.subscribe(INBOX, pool.wake)  # events stored or made due, by any process
    # SQLite: the workers give way when they slow down the webhooks' commits (one writer for all).
    storage.db.watch_urgent_commits(pool.acknowledged)
    try:
        yield Worker(pool)
    finally:
        await pool.stop()  # drain what is in flight before the database goes (a no-op if never started)


@asynccontextmanager
async def open_web(settings: Settings, clock: Clock, storage: Storage) -> AsyncIterator[Web]:
    directory = ChannelDirectory(
        storage.channels,
        default_app_secret=settings.meta_app_secret,
        default_verify_token=settings.meta_verify_token,
    )
    storage.db.doorbell.subscribe(CHANNELS, directory.invalidate)  # a change in any process reloads it here
    yield Web(
        directory=directory,
        inbox_writer=InboxWriter(storage.db, clock, settle_ms=settings.inbox_settle_ms),
        export_slots=ReadSlots("exports", retry_after_seconds=5),
        search_slots=ReadSlots("searches"),
    )
