"""Answers of the dashboard and user APIs. Money is a decimal USD string, times are RFC 3339 UTC."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.pagination import PageQuery
from api.query import AccountId
from api.shapes import ApiModel, QuotaDetail, Usd
from core.fields import EpochMs
from core.storage.activity import ActivityEntry, ActivityKind

MESSAGES_COUNTED = (
    "Counted from stored conversation turns, which exist only for messages the model answered (a reply, or the "
    "fallback message for an empty reply). Not counted: messages refused for quota or rate limit, given up on "
    "(dead letters), answered with the media notice, skipped while a human took over, and the turns of erased "
    "contacts."
)
NOT_CALLS = "turns refused for quota before any model call (a usage row with 0 attempts); not in `requests`"


class MessageCounts(ApiModel):
    inbound: int = Field(description="customer messages the model answered")
    outbound: int = Field(description="the replies to them")


class TokenCounts(ApiModel):
    prompt: int
    cached: int
    completion: int
    reasoning: int
    total: int


class Latency(ApiModel):
    average: float | None
    p95: int | None = Field(description="nearest-rank percentile")
    samples: int = Field(description="successful calls (outcome ok) with a measured latency")


class FallbackCauses(ApiModel):
    dead_letter: int = Field(description="activity rows of kind dead_letter in the range")
    empty_reply: int = Field(description="model calls with outcome empty_reply in the range")


class FeedbackCounts(ApiModel):
    up: int
    down: int


class DashboardMetrics(ApiModel):
    account_id: str | None
    from_: EpochMs = Field(alias="from")
    to: EpochMs
    messages: MessageCounts = Field(description="Turns answered by the model in the range. " + MESSAGES_COUNTED)
    conversations: int = Field(
        description="distinct contacts with a turn answered by the model in the range (same source as `messages`)"
    )
    active_contacts: int = Field(
        description="distinct contacts with a turn answered by the model in the 24 hours before `to` (Meta's reply "
        "window; same source as `messages`)"
    )
    requests: int = Field(
        description="model calls attempted (one per turn that reached the model, retries inside it included), "
        "failed ones included; quota refusals are not calls"
    )
    quota_refusals: int = Field(description=NOT_CALLS)
    tokens: TokenCounts
    cost_usd: Usd
    cost_known: bool = Field(description="false when some call's model had no price")
    unpriced_requests: int
    latency_ms: Latency
    errors: int = Field(
        description="model calls whose outcome was not ok (upstream_error, empty_reply, ...); quota refusals are "
        "not calls and are not counted here"
    )
    errors_by_outcome: dict[str, int]
    fallbacks: int = Field(
        description="times a customer got the bot's fallback message: channel events given up on after their "
        "retries (dead letters) plus model calls that returned an empty reply; the sum of `fallbacks_by_cause`"
    )
    fallbacks_by_cause: FallbackCauses
    feedback: FeedbackCounts
    quota: QuotaDetail | None = Field(description="null in an admin's all-accounts view")


class SeriesTotals(ApiModel):
    requests: int
    quota_refusals: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: Usd
    cost_known: bool = Field(description="false when some call's model had no price")
    unpriced_requests: int


class UsageSeries(ApiModel):
    key: str | None = Field(
        description="model, bot id or platform; null for the ungrouped series, the `other` series, and calls of no bot"
    )
    label: str = Field(
        description="the bot's name for group_by=bot; `all` ungrouped, `other` for the other series, `unknown` for "
        "a null key"
    )
    other: bool = Field(description="true for the one series summing the groups beyond `top`")
    requests: list[int] = Field(description="model calls attempted, one entry per bucket")
    quota_refusals: list[int] = Field(description=NOT_CALLS)
    prompt_tokens: list[int] = Field(description="one entry per bucket; 0 when empty")
    cached_tokens: list[int] = Field(description="one entry per bucket; 0 when empty")
    completion_tokens: list[int] = Field(description="one entry per bucket; 0 when empty")
    cost_usd: list[Usd]
    totals: SeriesTotals


class UsageReport(ApiModel):
    account_id: str | None
    from_: EpochMs = Field(alias="from")
    to: EpochMs
    bucket: Literal["hour", "day"]
    bucket_seconds: Literal[3600, 86400]
    group_by: Literal["model", "bot", "platform"] | None
    top: int | None = Field(description="the `top` applied; null without group_by")
    groups: int | None = Field(
        description="distinct models, bots or platforms with usage in the range (more than `top`: the rest are in "
        "the `other` series); null without group_by"
    )
    buckets: list[EpochMs] = Field(description="start of each bucket, every one listed")
    series: list[UsageSeries] = Field(description="most model calls first, the `other` series (if any) last")


class BotChannel(ApiModel):
    id: str
    platform: str
    external_id: str
    status: str = Field(description="active, needs_reauth (Graph error 190) or disabled")
    status_reason: str | None
    last_delivery_at: EpochMs | None
    last_error: str | None
    last_error_at: EpochMs | None


class DashboardBot(ApiModel):
    id: str
    account_id: str
    name: str
    model: str | None
    created_at: EpochMs
    channels: list[BotChannel]
    last_activity_at: EpochMs | None = Field(description="the newest message with any of its contacts")
    contacts: int = Field(
        description="contacts with a turn answered by the model: in the range when one is given, over the bot's "
        "life otherwise (contacts whose turns all failed or were refused are not counted)"
    )
    messages: int = Field(
        description="messages of turns answered by the model (customer and bot), in the range or lifetime"
    )
    requests: int = Field(description="model calls attempted; quota refusals are not calls")
    quota_refusals: int = Field(description=NOT_CALLS)
    cost_usd: Usd
    cost_known: bool


class DashboardBots(ApiModel):
    account_id: str | None
    from_: EpochMs | None = Field(alias="from")
    to: EpochMs | None
    bots: list[DashboardBot]


class ActivityQuery(PageQuery):
    kind: ActivityKind | None = Field(default=None, description="only this kind")
    account_id: AccountId | None = Field(
        default=None,
        description="admin: one account (404 if unknown), default every account; owner or viewer: only their own "
        "(another is 404)",
    )


class ActivityPage(ApiModel):
    activity: list[ActivityEntry] = Field(description="newest first")
    next_cursor: str | None = Field(description="the cursor of the next page; null on the last page")


class UserQuota(QuotaDetail):
    account_id: str
