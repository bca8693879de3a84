"""Prometheus instruments of one application, on that application's own registry (never the global one).

`Metrics.create()` builds the registry and every instrument; the service graph (gateway/services.py) makes one and
hands it to the parts that count. Hooks stay one call at the point where a thing happens. Labels are bounded by
construction: platforms, outcomes and results are small enums, models come from the operator's plans, and error
codes from upstreams pass through `BoundedLabel`, so a misbehaving provider cannot explode the series count.
No account id, phone number or customer id is ever a label.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.graph_errors import GraphFailure
from core.models import UsageRecord

_NANO_PER_USD = 1_000_000_000
# Seconds. Event processing covers a model call and Graph sends; LLM calls go up to the retry budget (30 s).
_EVENT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
OTHER = "other"


class BoundedLabel:
    """Passes label values through until `limit` distinct ones were seen; later new ones become "other"."""

    def __init__(self, limit: int = 64, max_chars: int = 64) -> None:
        self._limit = limit
        self._max_chars = max_chars
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the metrics may be touched from executor threads too

    def __call__(self, value: object) -> str:
        text = str(value)[: self._max_chars]
        if text in self._seen:
            return text
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(text)
        return text


def delivery_result(stored: int, duplicates: int, unrouted: int) -> str:
    """What a signed, accepted webhook delivery amounted to."""
    if stored:
        return "accepted"
    if duplicates:
        return "duplicate"
    if unrouted:
        return "unrouted"
    return "empty"  # nothing to store: a body without events


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    webhook_deliveries: Counter  # platform, result: accepted|duplicate|unrouted|empty|unsigned|too_large
    inbox_events: Counter  # platform, outcome: stored|duplicate|unrouted
    inbox_depth: Gauge  # state: pending|dead|undeliverable; set from the database at each scrape
    event_seconds: Histogram  # kind: message|postback|echo|unsupported
    llm_seconds: Histogram  # model
    llm_calls: Counter  # model, outcome: ok|empty_reply|upstream_error
    llm_tokens: Counter  # model, kind: prompt|cached|completion|reasoning
    llm_cost_usd: Counter  # model
    llm_usage_bounded: Counter  # model: calls whose reported usage was out of bounds and charged at the bound
    openai_errors: Counter  # code, per failed attempt (retried ones included)
    graph_errors: Counter  # code, action
    relay_requests: Counter  # status
    webhook_commit_seconds: Histogram  # a delivery's wait for its durable inbox commit, from the handler's side
    worker_limit: Gauge  # inbox events allowed to run at once now (fewer while acknowledgements are slowed)
    openai_codes: BoundedLabel = field(default_factory=BoundedLabel)
    graph_codes: BoundedLabel = field(default_factory=BoundedLabel)
    models: BoundedLabel = field(default_factory=lambda: BoundedLabel(limit=100))

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            webhook_deliveries=Counter(
                "nexus_webhook_deliveries", "Meta webhook POSTs by result", ("platform", "result"), registry=r
            ),
            inbox_events=Counter(
                "nexus_inbox_events",
                "Webhook events by what the inbox did with them",
                ("platform", "outcome"),
                registry=r,
            ),
            inbox_depth=Gauge(
                "nexus_inbox_depth",
                "Inbox events waiting (pending), given up (dead), or past the reply window (undeliverable)",
                ("state",),
                registry=r,
            ),
            event_seconds=Histogram(
                "nexus_inbox_event_processing_seconds",
                "Worker time per inbox event, sends included",
                ("kind",),
                buckets=_EVENT_BUCKETS,
                registry=r,
            ),
            llm_seconds=Histogram(
                "nexus_llm_call_seconds",
                "Model call latency, retries included",
                ("model",),
                buckets=_LLM_BUCKETS,
                registry=r,
            ),
            llm_calls=Counter("nexus_llm_calls", "Model calls by outcome", ("model", "outcome"), registry=r),
            llm_tokens=Counter("nexus_llm_tokens", "Tokens reported by the provider", ("model", "kind"), registry=r),
            llm_cost_usd=Counter(
                "nexus_llm_cost_usd", "Cost of model calls in USD (priced ones)", ("model",), registry=r
            ),
            llm_usage_bounded=Counter(
                "nexus_llm_usage_bounded",
                "Model calls whose reported usage exceeded what the request could cost (charged at the bound)",
                ("model",),
                registry=r,
            ),
            openai_errors=Counter(
                "nexus_openai_errors", "Failed model call attempts by error code", ("code",), registry=r
            ),
            graph_errors=Counter(
                "nexus_graph_errors", "Failed Graph API sends by error code", ("code", "action"), registry=r
            ),
            relay_requests=Counter(
                "nexus_relay_requests", "Relay API requests by HTTP status", ("status",), registry=r
            ),
            webhook_commit_seconds=Histogram(
                "nexus_webhook_commit_seconds",
                "Time a webhook delivery waited for its durable inbox commit before being acknowledged",
                buckets=_COMMIT_BUCKETS,
                registry=r,
            ),
            worker_limit=Gauge(
                "nexus_inbox_worker_limit",
                "Inbox events allowed to run at once (fewer while they slow webhook acknowledgements)",
                registry=r,
            ),
        )

    def delivery(self, platform: str, stored: int, duplicates: int, unrouted: int) -> None:
        self.webhook_deliveries.labels(platform, delivery_result(stored, duplicates, unrouted)).inc()
        for outcome, count in (("stored", stored), ("duplicate", duplicates), ("unrouted", unrouted)):
            if count:
                self.inbox_events.labels(platform, outcome).inc(count)

    def refused(self, platform: str, result: str) -> None:
        """A delivery answered with an error: unsigned (401), too_large (413) or too_slow (408)."""
        self.webhook_deliveries.labels(platform, result).inc()

    def llm_call(self, record: UsageRecord) -> None:
        """One usage record as the engine wrote it; records of turns that never reached the model are skipped."""
        if record.attempts <= 0:
            return
        model = self.models(record.model)
        self.llm_calls.labels(model, record.outcome).inc()
        if record.latency_ms is not None:
            self.llm_seconds.labels(model).observe(record.latency_ms / 1000)
        for kind, count in (
            ("prompt", record.prompt_tokens),
            ("cached", record.cached_tokens),
            ("completion", record.completion_tokens),
            ("reasoning", record.reasoning_tokens),
        ):
            if count:
                self.llm_tokens.labels(model, kind).inc(count)
        if record.cost_nanousd:
            self.llm_cost_usd.labels(model).inc(record.cost_nanousd / _NANO_PER_USD)
        if record.reported_usage is not None:
            self.llm_usage_bounded.labels(model).inc()

    def openai_error(self, code: str) -> None:
        self.openai_errors.labels(self.openai_codes(code)).inc()

    def graph_failure(self, failure: GraphFailure) -> None:
        code = "transport" if failure.code is None else failure.code
        self.graph_errors.labels(self.graph_codes(code), failure.action.value).inc()
