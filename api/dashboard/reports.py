"""`GET /api/dashboard/metrics`, `/usage` and `/bots`: what an account's bots did and cost, from the real data.

Owners and viewers see their own account; an admin sees one account with `account_id`, or every account's
totals without it. Figures come from the database (core/storage/reads/).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from api.bodies import Query
from api.dashboard.models import (
    MESSAGES_COUNTED,
    BotChannel,
    DashboardBot,
    DashboardBots,
    DashboardMetrics,
    FallbackCauses,
    FeedbackCounts,
    Latency,
    MessageCounts,
    SeriesTotals,
    TokenCounts,
    UsageReport,
    UsageSeries,
)
from api.dashboard.ranges import RangeQuery, UsageQuery
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.scopes import account_scope
from api.shapes import QuotaDetail
from core.clock import Clock
from core.storage.accounts import AccountStore
from core.storage.quota import QuotaService
from core.storage.reads.bots import BotReport, BotReportReader
from core.storage.reads.totals import ReportScope, TotalsReader
from core.storage.reads.usage_series import Series, UsageSeriesReader

SCOPE = (
    "Owners and viewers see their own account (another account's `account_id` answers 404); an admin sees the "
    "account named by `account_id` (404 if unknown), or every account's totals without it. Any role may read."
)


class Reports:
    def __init__(
        self,
        totals: TotalsReader,
        usage_series: UsageSeriesReader,
        bot_reports: BotReportReader,
        accounts: AccountStore,
        quota: QuotaService,
        clock: Clock,
    ) -> None:
        # The three readers run on the reports connection: a year of usage never queues the relay's reads.
        self._totals = totals
        self._usage_series = usage_series
        self._bot_reports = bot_reports
        self._accounts = accounts
        self._quota = quota
        self._clock = clock

    async def metrics(self, request: web.Request, query: Query[RangeQuery]) -> DashboardMetrics:
        return await self.figures(request, query)

    async def figures(
        self, request: web.Request, query: Query[RangeQuery], *, latency: bool = True
    ) -> DashboardMetrics:
        """The metrics; without `latency`, its p95 is left out (null), as pages that do not show it ask."""
        # The account first: another account's id is a 404 whatever else the query gets wrong.
        account_id = await account_scope(principal(request), query.parse_field("account_id"), self._accounts)
        asked = query.parse()
        now = self._clock.now_ms()
        span = asked.span(now)
        scope = ReportScope(account_id, span.start, span.end)
        usage = await self._totals.usage(scope, percentile=latency)
        messages = await self._totals.messages(scope, now_ms=now)
        dead_letters = await self._totals.dead_letters(scope)
        feedback = await self._totals.feedback(scope)
        # A quota belongs to one account: an admin's all-accounts view has none.
        quota = None if account_id is None else QuotaDetail.of(await self._quota.snapshot(account_id))
        average = usage.latency_avg_ms
        return DashboardMetrics(
            account_id=account_id,
            from_=scope.start,
            to=scope.end,
            messages=MessageCounts(inbound=messages.inbound, outbound=messages.outbound),
            conversations=messages.conversations,
            active_contacts=messages.active_contacts,
            requests=usage.requests,
            quota_refusals=usage.quota_refusals,
            tokens=TokenCounts(
                prompt=usage.prompt_tokens,
                cached=usage.cached_tokens,
                completion=usage.completion_tokens,
                reasoning=usage.reasoning_tokens,
                total=usage.prompt_tokens + usage.completion_tokens,
            ),
            cost_usd=usage.cost_nanousd,
            cost_known=usage.unpriced_requests == 0,
            unpriced_requests=usage.unpriced_requests,
            latency_ms=Latency(
                average=None if average is None else round(average, 1),
                p95=usage.latency_p95_ms,
                samples=usage.latency_samples,
            ),
            errors=usage.errors,
            errors_by_outcome=dict(sorted(usage.errors_by_outcome.items())),
            # The customer got the bot's fallback message: after a dead letter, or for an empty model reply.
            fallbacks=dead_letters + usage.empty_replies,
            fallbacks_by_cause=FallbackCauses(dead_letter=dead_letters, empty_reply=usage.empty_replies),
            feedback=FeedbackCounts(up=feedback.up, down=feedback.down),
            quota=quota,
        )

    async def usage(self, request: web.Request, query: Query[UsageQuery]) -> UsageReport:
        # The account first: another account's id is a 404 whatever else the query gets wrong.
        account_id = await account_scope(principal(request), query.parse_field("account_id"), self._accounts)
        asked = query.parse()
        span = asked.span(self._clock.now_ms())
        buckets = asked.buckets(span)
        scope = ReportScope(account_id, span.start, span.end)
        found = await self._usage_series.series(
            scope,
            origin=buckets.origin,
            size_ms=buckets.size_ms,
            count=buckets.count,
            group_by=asked.group_by,
            top=asked.top,
        )
        labels: dict[str, str] = {}
        if asked.group_by == "bot":
            labels = await self._usage_series.bot_names(s.key for s in found.series if s.key is not None)
        # Columnar: one array per figure, one entry per bucket, zeros in empty buckets. At most top + 1 series, so a
        # year of hours stays a few MB whatever the number of bots or models.
        return UsageReport(
            account_id=scope.account_id,
            from_=scope.start,
            to=scope.end,
            bucket=buckets.name,  # type: ignore[arg-type]
            bucket_seconds=buckets.size_ms // 1000,  # type: ignore[arg-type]
            group_by=asked.group_by,
            top=None if asked.group_by is None else asked.top,
            groups=found.groups,
            buckets=buckets.starts(),
            series=[_series(s, asked.group_by, labels) for s in found.series],
        )

    async def bots(self, request: web.Request, query: Query[RangeQuery]) -> DashboardBots:
        # The account first: another account's id is a 404 whatever else the query gets wrong.
        account_id = await account_scope(principal(request), query.parse_field("account_id"), self._accounts)
        asked = query.parse()
        span = asked.optional_span(self._clock.now_ms())  # no range: the bots' whole life
        scope = None if span is None else ReportScope(account_id, span.start, span.end)
        reports = await self._bot_reports.bots(account_id, scope)
        return DashboardBots(
            account_id=account_id,
            from_=None if scope is None else scope.start,
            to=None if scope is None else scope.end,
            bots=[_bot(r) for r in reports],
        )


def _series(series: Series, group_by: str | None, labels: Mapping[str, str]) -> UsageSeries:
    if group_by is None:
        label = "all"
    elif series.other:
        label = "other"
    elif series.key is None:
        label = "unknown"
    else:
        label = labels.get(series.key, series.key)
    unpriced = sum(series.unpriced_requests)
    return UsageSeries(
        key=series.key,
        label=label,
        other=series.other,
        requests=series.requests,
        quota_refusals=series.quota_refusals,
        prompt_tokens=series.prompt_tokens,
        cached_tokens=series.cached_tokens,
        completion_tokens=series.completion_tokens,
        cost_usd=series.cost_nanousd,
        totals=SeriesTotals(
            requests=sum(series.requests),
            quota_refusals=sum(series.quota_refusals),
            prompt_tokens=sum(series.prompt_tokens),
            cached_tokens=sum(series.cached_tokens),
            completion_tokens=sum(series.completion_tokens),
            cost_usd=sum(series.cost_nanousd),
            cost_known=unpriced == 0,
            unpriced_requests=unpriced,
        ),
    )


def _bot(report: BotReport) -> DashboardBot:
    return DashboardBot(
        id=report.id,
        account_id=report.account_id,
        name=report.name,
        model=report.model,
        created_at=report.created_at,
        channels=[BotChannel.model_validate(c, from_attributes=True) for c in report.channels],
        last_activity_at=report.last_activity_at,
        contacts=report.contacts,
        messages=report.messages,
        requests=report.requests,
        quota_refusals=report.quota_refusals,
        cost_usd=report.cost_nanousd,
        cost_known=report.unpriced_requests == 0,
    )


OPERATIONS = OperationTable(Reports, tag="dashboard", security=JWT)
OPERATIONS.get(
    "/metrics",
    Reports.metrics,
    summary="Messages, conversations, tokens, cost, latency, errors, feedback and quota over a time range",
    description="Default range: the current UTC month up to now. " + SCOPE + " Message, conversation and contact "
    "figures: " + MESSAGES_COUNTED,
    operation_id="getDashboardMetrics",
)
OPERATIONS.get(
    "/usage",
    Reports.usage,
    summary="Model calls, tokens and cost per hour or day, optionally per model, bot or platform",
    description="Columnar: `buckets` lists every bucket start, and each series has one entry per bucket in each "
    "array (zeros for empty buckets). Grouped, the `top` groups by model calls get a series each and the rest are "
    "summed into one `other` series, so the series always add up to the account's totals. Default range: the "
    "current UTC month up to now. " + SCOPE,
    operation_id="getDashboardUsage",
)
OPERATIONS.get(
    "/bots",
    Reports.bots,
    summary="Each bot with its channels' health, last activity, and message and cost totals",
    description="Totals over the bots' whole life, or within `from`/`to` when either is given (`from` then "
    "defaults to the start of the month of `to`). Deleted bots are left out. " + SCOPE,
    operation_id="listDashboardBots",
)
