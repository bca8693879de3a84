"""JSON shapes of the dashboard and user APIs. Money is a decimal USD string, times are RFC 3339 UTC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from admin.dashboard_params import Buckets
from core.clock import iso_utc
from core.models import QuotaSnapshot
from core.pricing import format_usd
from core.storage.reports import FeedbackTotals, MessageTotals, ReportScope, UsageTotals
from core.storage.reports_bots import BotReport, ChannelHealth
from core.storage.reports_usage import Series, SeriesSet
from gateway.errors import quota_json

_ZERO_USD = format_usd(0)  # most hourly buckets of a quiet bot are empty


def _ts(value: int | None) -> str | None:
    return None if value is None else iso_utc(value)


def quota_detail_json(snapshot: QuotaSnapshot) -> dict[str, Any]:
    """The relay's quota block plus what makes up the allowance and what is held for calls in flight."""
    return {
        **quota_json(snapshot),
        "reserved_tokens": snapshot.reserved_tokens,
        "period_start": iso_utc(snapshot.period_start),
        "monthly_tokens": snapshot.monthly_tokens,
        "overage_band_tokens": snapshot.overage_band_tokens,
        "credit_tokens": snapshot.credit_tokens,
        "credit_balance_tokens": snapshot.credit_balance,
    }


def metrics_json(
    scope: ReportScope,
    *,
    usage: UsageTotals,
    messages: MessageTotals,
    dead_letters: int,
    feedback: FeedbackTotals,
    quota: QuotaSnapshot | None,
) -> dict[str, Any]:
    average = usage.latency_avg_ms
    return {
        "account_id": scope.account_id,
        "from": iso_utc(scope.start),
        "to": iso_utc(scope.end),
        "messages": {"inbound": messages.inbound, "outbound": messages.outbound},
        "conversations": messages.conversations,
        "active_contacts": messages.active_contacts,
        "requests": usage.requests,
        "quota_refusals": usage.quota_refusals,
        "tokens": {
            "prompt": usage.prompt_tokens,
            "cached": usage.cached_tokens,
            "completion": usage.completion_tokens,
            "reasoning": usage.reasoning_tokens,
            "total": usage.prompt_tokens + usage.completion_tokens,
        },
        "cost_usd": format_usd(usage.cost_nanousd),
        "cost_known": usage.unpriced_requests == 0,
        "unpriced_requests": usage.unpriced_requests,
        "latency_ms": {
            "average": None if average is None else round(average, 1),
            "p95": usage.latency_p95_ms,
            "samples": usage.latency_samples,
        },
        "errors": usage.errors,
        "errors_by_outcome": dict(sorted(usage.errors_by_outcome.items())),
        # The customer got the bot's fallback message: after a dead letter, or for an empty model reply.
        "fallbacks": dead_letters + usage.empty_replies,
        "fallbacks_by_cause": {"dead_letter": dead_letters, "empty_reply": usage.empty_replies},
        "feedback": {"up": feedback.up, "down": feedback.down},
        "quota": None if quota is None else quota_detail_json(quota),
    }


def series_json(
    scope: ReportScope,
    buckets: Buckets,
    group_by: str | None,
    top: int,
    found: SeriesSet,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Columnar: one array per figure, one entry per bucket, zeros in empty buckets. At most top + 1 series, so a
    year of hours stays a few MB whatever the number of bots or models."""
    return {
        "account_id": scope.account_id,
        "from": iso_utc(scope.start),
        "to": iso_utc(scope.end),
        "bucket": buckets.name,
        "bucket_seconds": buckets.size_ms // 1000,
        "group_by": group_by,
        "top": None if group_by is None else top,
        "groups": found.groups,
        "buckets": [iso_utc(start) for start in buckets.starts()],
        "series": [_series(s, group_by, labels) for s in found.series],
    }


def _series(series: Series, group_by: str | None, labels: Mapping[str, str]) -> dict[str, Any]:
    if group_by is None:
        label = "all"
    elif series.other:
        label = "other"
    elif series.key is None:
        label = "unknown"
    else:
        label = labels.get(series.key, series.key)
    unpriced = sum(series.unpriced_requests)
    return {
        "key": series.key,
        "label": label,
        "other": series.other,
        "requests": series.requests,
        "quota_refusals": series.quota_refusals,
        "prompt_tokens": series.prompt_tokens,
        "cached_tokens": series.cached_tokens,
        "completion_tokens": series.completion_tokens,
        "cost_usd": [format_usd(value) if value else _ZERO_USD for value in series.cost_nanousd],
        "totals": {
            "requests": sum(series.requests),
            "quota_refusals": sum(series.quota_refusals),
            "prompt_tokens": sum(series.prompt_tokens),
            "cached_tokens": sum(series.cached_tokens),
            "completion_tokens": sum(series.completion_tokens),
            "cost_usd": format_usd(sum(series.cost_nanousd)),
            "cost_known": unpriced == 0,
            "unpriced_requests": unpriced,
        },
    }


def bot_json(report: BotReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "account_id": report.account_id,
        "name": report.name,
        "model": report.model,
        "created_at": iso_utc(report.created_at),
        "channels": [_channel(c) for c in report.channels],
        "last_activity_at": _ts(report.last_activity_at),
        "contacts": report.contacts,
        "messages": report.messages,
        "requests": report.requests,
        "quota_refusals": report.quota_refusals,
        "cost_usd": format_usd(report.cost_nanousd),
        "cost_known": report.unpriced_requests == 0,
    }


def _channel(channel: ChannelHealth) -> dict[str, Any]:
    return {
        "id": channel.id,
        "platform": channel.platform,
        "external_id": channel.external_id,
        "status": channel.status,
        "status_reason": channel.status_reason,
        "last_delivery_at": _ts(channel.last_delivery_at),
        "last_error": channel.last_error,
        "last_error_at": _ts(channel.last_error_at),
    }
