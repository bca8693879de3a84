"""Building the service graph (database, stores, quota, LLM client, engine) and tearing it down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import structlog

from adapters.graph_client import GraphClient
from core.channel_worker import ChannelWorker, WorkerDeps
from core.channels import ChannelDirectory
from core.clock import Clock
from core.engine import ConversationEngine, EngineDeps
from core.errors import NotConfigured
from core.inbox import InboxWriter
from core.llm import LLMClient
from core.metrics import Metrics
from core.openai_probe import OpenAIProbe
from core.pricing import PriceTable
from core.queue import InboxQueue
from core.quota import QuotaService
from core.ratelimit import RateLimiter
from core.secrets import SecretBox
from core.storage.accounts import AccountStore
from core.storage.activity import ActivityStore
from core.storage.api_keys import ApiKeyStore
from core.storage.audit import AuditStore
from core.storage.bots import BotStore
from core.storage.channels import ChannelStore
from core.storage.contacts_view import ConversationView
from core.storage.conversation_state import ConversationStateStore
from core.storage.conversations import ConversationStore
from core.storage.credits import CreditLedger
from core.storage.db import Database
from core.storage.erasure import Eraser
from core.storage.export_rows import ExportReader
from core.storage.feedback import FeedbackStore
from core.storage.migrations import apply_migrations
from core.storage.plans import PlanStore
from core.storage.reports import ReportStore
from core.storage.reports_bots import BotReportStore
from core.storage.reports_usage import UsageSeriesStore
from core.storage.status_reads import StatusReader
from core.storage.usage import UsageStore
from core.tokens import TokenCounter
from core.worker_pool import WorkerPool
from gateway.read_slots import ReadSlots
from gateway.settings import Settings

log = structlog.get_logger("gateway.services")


@dataclass(frozen=True, slots=True)
class Services:
    db: Database
    plans: PlanStore
    accounts: AccountStore
    api_keys: ApiKeyStore
    credits: CreditLedger
    bots: BotStore
    conversations: ConversationStore
    usage: UsageStore
    quota: QuotaService
    tokens: TokenCounter
    prices: PriceTable
    channels: ChannelStore
    directory: ChannelDirectory
    inbox_writer: InboxWriter
    queue: InboxQueue
    workers: WorkerPool
    eraser: Eraser
    graph: GraphClient  # Graph reads made on behalf of the admin API (channel ownership checks)
    engine: ConversationEngine | None  # None when no OpenAI key is configured
    metrics: Metrics  # this app's Prometheus registry and instruments (GET /metrics)
    openai_probe: OpenAIProbe
    status_reads: StatusReader
    exports: ExportReader
    state: ConversationStateStore  # human takeover pauses (conversations API; the worker has its own handle)
    conversation_view: ConversationView
    feedback: FeedbackStore
    activity: ActivityStore
    audit: AuditStore
    reports: ReportStore  # dashboard figures
    usage_series: UsageSeriesStore
    bot_reports: BotReportStore
    export_slots: ReadSlots  # at most two exports streaming at once in this process (else 429)
    search_slots: ReadSlots  # at most two conversation searches (`q`) at once in this process (else 429)

    def require_engine(self) -> ConversationEngine:
        if self.engine is None:
            raise NotConfigured("OPENAI_API_KEY is not set, so the bot cannot answer; ask the operator to set it")
        return self.engine


async def open_database(settings: Settings) -> Database:
    db = await Database.open(settings.database_url, base_dir=None)
    try:
        applied = await apply_migrations(db)
    except BaseException:
        await db.close()
        raise
    if applied:
        log.info("migrations_applied", versions=applied)
    return db


@asynccontextmanager
async def build_services(settings: Settings, clock: Clock, tokens: TokenCounter) -> AsyncIterator[Services]:
    db = await open_database(settings)
    llm: LLMClient | None = None
    metrics = Metrics.create()
    # The one HTTP session of the process for Graph API calls (connection pooling, keep-alive).
    graph_session = aiohttp.ClientSession()
    reports_db: Database | None = None
    try:
        # Dashboard reports may scan a year of usage (about a second on SQLite), exports stream a year of records
        # and a conversation search may scan every message of an account: they get connections of their own, so
        # the relay's and the webhooks' reads never queue behind one (bench/dashboard.py measures it).
        reports_db = await Database.open(settings.database_url, base_dir=None)
        # Loading the encodings takes about a second; do it now, off the event loop, not on the first message.
        await asyncio.get_running_loop().run_in_executor(None, tokens.preload)
        prices = PriceTable.load(settings.data_dir / "prices.json")
        plans = PlanStore(db, clock)
        conversations = ConversationStore(db, clock)
        usage = UsageStore(db)
        quota = QuotaService(db, clock, reservation_ttl_ms=settings.reservation_ttl_seconds * 1000)
        channels = ChannelStore(db, clock, SecretBox(settings.secrets_key))
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
            engine = ConversationEngine(
                EngineDeps(db, clock, plans, conversations, quota, usage, tokens, prices, llm, RateLimiter(), metrics)
            )
        else:
            log.warning("openai_not_configured", hint="set OPENAI_API_KEY; relay calls answer 503 until then")
        accounts = AccountStore(db, clock)
        bots = BotStore(db, clock)
        queue = InboxQueue(db, clock, lease_ms=settings.inbox_lease_seconds * 1000)
        graph = GraphClient(
            graph_session,
            base_url=settings.graph_api_base_url,
            version=settings.graph_api_version,
            on_failure=metrics.graph_failure,
        )
        worker = ChannelWorker(
            WorkerDeps(
                queue=queue,
                channels=channels,
                bots=bots,
                accounts=accounts,
                state=ConversationStateStore(db, clock),
                engine=engine,
                graph=graph,
                clock=clock,
                lease_seconds=settings.inbox_lease_seconds,
            )
        )
        yield Services(
            db=db,
            plans=plans,
            accounts=accounts,
            api_keys=ApiKeyStore(db, clock),
            credits=CreditLedger(db, clock),
            bots=bots,
            conversations=conversations,
            usage=usage,
            quota=quota,
            tokens=tokens,
            prices=prices,
            channels=channels,
            directory=ChannelDirectory(
                channels,
                default_app_secret=settings.meta_app_secret,
                default_verify_token=settings.meta_verify_token,
            ),
            inbox_writer=InboxWriter(db, clock),
            queue=queue,
            workers=WorkerPool(
                queue,
                worker,
                concurrency=settings.workers,
                ack_target_ms=settings.worker_ack_target_ms,
                metrics=metrics,
            ),
            eraser=Eraser(db, clock),
            graph=graph,
            engine=engine,
            metrics=metrics,
            openai_probe=OpenAIProbe(None if llm is None else llm.sdk, clock),
            status_reads=StatusReader(db),
            exports=ExportReader(reports_db),  # a year of records: off the relay's and webhooks' read connection
            state=ConversationStateStore(db, clock),
            conversation_view=ConversationView(db, reports_db),
            feedback=FeedbackStore(db, clock),
            activity=ActivityStore(db, clock),
            audit=AuditStore(db, clock),
            reports=ReportStore(reports_db),
            usage_series=UsageSeriesStore(reports_db),
            bot_reports=BotReportStore(reports_db),
            export_slots=ReadSlots("exports", retry_after_seconds=5),
            search_slots=ReadSlots("searches"),
        )
    finally:
        await graph_session.close()
        if llm is not None:
            await llm.close()
        if reports_db is not None:
            await reports_db.close()
        await db.close()
