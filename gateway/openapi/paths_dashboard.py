"""OpenAPI paths of the dashboard figures (admin/dashboard.py, under /api/dashboard/) and of the caller's quota
(admin/user_quota.py, under /api/user/). Schema names are prefixed `Dashboard`."""

from __future__ import annotations

from typing import Any

from admin.dashboard_params import DEFAULT_TOP, MAX_CELLS, MAX_TOP
from gateway.openapi.common import (
    NULLABLE_TIMESTAMP,
    TIMESTAMP,
    USD,
    Schema,
    jwt_operation,
    obj,
    ok,
    query_param,
    ref,
)

_TAGS = ("dashboard",)
_COUNT: Schema = {"type": "integer", "minimum": 0}
_TOKENS: Schema = {"type": "integer"}  # a credit balance may be negative after an operator's adjustment
_NULLABLE_TEXT: Schema = {"type": ["string", "null"]}
_SCOPE = (
    "Owners and viewers see their own account (another account's `account_id` answers 404); an admin sees the "
    "account named by `account_id` (404 if unknown), or every account's totals without it."
)
_INSTANT = {"type": "string", "minLength": 1, "examples": ["2026-03-01T00:00:00Z", "1772323200000"]}
_FROM = query_param(
    "from", _INSTANT, "start (inclusive): epoch milliseconds or ISO-8601 (no offset means UTC); 400 if unreadable"
)
_TO = query_param("to", _INSTANT, "end (exclusive), same forms; default now. `from` must be earlier than `to`")
_ACCOUNT = query_param(
    "account_id",
    {"type": "string", "minLength": 1},
    "admin: one account (an unknown id is 404); owner or viewer: only their own (another account's id is 404)",
)
_BUCKET = query_param(
    "bucket",
    {"type": "string", "enum": ["hour", "day"], "default": "day"},
    "bucket size; buckets start on UTC hours or days; at most 9000 buckets per request (400 beyond)",
)
_GROUP_BY = query_param(
    "group_by",
    {"type": "string", "enum": ["model", "bot", "platform"]},
    "one series per model, bot or platform (relay, messenger, instagram, whatsapp), for the `top` groups by model "
    "calls, plus one `other` series summing the rest; without it one series",
)
_TOP = query_param(
    "top",
    {"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": DEFAULT_TOP},
    f"with group_by: how many groups get a series of their own (1 to {MAX_TOP}; 400 beyond); the others are summed "
    f"into one series with `other` true. Bounds a response to (top + 1) x buckets cells (at most {MAX_CELLS:,}).",
)
# What the message figures are made of: the conversation store keeps only the turns the model answered.
_TURNS = (
    "Counted from stored conversation turns, which exist only for messages the model answered (a reply, or the "
    "fallback message for an empty reply). Not counted: messages refused for quota or rate limit, given up on "
    "(dead letters), answered with the media notice, skipped while a human took over, and the turns of erased "
    "contacts."
)
_NOT_CALLS = "turns refused for quota before any model call (a usage row with 0 attempts); not in `requests`"

_QUOTA_FIELDS: dict[str, Schema] = {
    "limit_tokens": {**_COUNT, "description": "monthly_tokens + overage_band_tokens + credit_tokens"},
    "used_tokens": _COUNT,
    "reserved_tokens": {**_COUNT, "description": "held for calls in flight"},
    "remaining_tokens": _COUNT,
    "period_start": TIMESTAMP,
    "period_end": TIMESTAMP,
    "monthly_tokens": {**_COUNT, "description": "the plan's monthly allowance"},
    "overage_band_tokens": {**_COUNT, "description": "the plan's overage band (its overage_percent of monthly)"},
    "credit_tokens": {**_COUNT, "description": "credit tokens of this period: drawn so far plus still available"},
    "credit_balance_tokens": _TOKENS,
}
_COUNTS_ARRAY: Schema = {"type": "array", "items": _COUNT, "description": "one entry per bucket; 0 when empty"}
_SERIES_TOTALS = obj(
    {
        "requests": _COUNT,
        "quota_refusals": _COUNT,
        "prompt_tokens": _COUNT,
        "cached_tokens": _COUNT,
        "completion_tokens": _COUNT,
        "cost_usd": USD,
        "cost_known": {"type": "boolean", "description": "false when some call's model had no price"},
        "unpriced_requests": _COUNT,
    }
)

SCHEMAS: dict[str, Schema] = {
    "DashboardQuota": obj(_QUOTA_FIELDS, description="the account's standing in the current calendar month (UTC)"),
    "DashboardUserQuota": obj({"account_id": {"type": "string"}, **_QUOTA_FIELDS}),
    "DashboardMetrics": obj(
        {
            "account_id": _NULLABLE_TEXT,
            "from": TIMESTAMP,
            "to": TIMESTAMP,
            "messages": obj(
                {
                    "inbound": {**_COUNT, "description": "customer messages the model answered"},
                    "outbound": {**_COUNT, "description": "the replies to them"},
                },
                description=f"Turns answered by the model in the range. {_TURNS}",
            ),
            "conversations": {
                **_COUNT,
                "description": "distinct contacts with a turn answered by the model in the range (same source as "
                "`messages`)",
            },
            "active_contacts": {
                **_COUNT,
                "description": "distinct contacts with a turn answered by the model in the 24 hours before `to` "
                "(Meta's reply window; same source as `messages`)",
            },
            "requests": {
                **_COUNT,
                "description": "model calls attempted (one per turn that reached the model, retries inside it "
                "included), failed ones included; quota refusals are not calls",
            },
            "quota_refusals": {**_COUNT, "description": _NOT_CALLS},
            "tokens": obj(
                {"prompt": _COUNT, "cached": _COUNT, "completion": _COUNT, "reasoning": _COUNT, "total": _COUNT}
            ),
            "cost_usd": USD,
            "cost_known": {"type": "boolean", "description": "false when some call's model had no price"},
            "unpriced_requests": _COUNT,
            "latency_ms": obj(
                {
                    "average": {"type": ["number", "null"], "minimum": 0},
                    "p95": {"type": ["integer", "null"], "minimum": 0, "description": "nearest-rank percentile"},
                    "samples": {**_COUNT, "description": "successful calls (outcome ok) with a measured latency"},
                }
            ),
            "errors": {
                **_COUNT,
                "description": "model calls whose outcome was not ok (upstream_error, empty_reply, ...); quota "
                "refusals are not calls and are not counted here",
            },
            "errors_by_outcome": {"type": "object", "additionalProperties": _COUNT},
            "fallbacks": {
                **_COUNT,
                "description": "times a customer got the bot's fallback message: channel events given up on after "
                "their retries (dead letters, recorded in the activity feed when they happen, so purging the inbox "
                "does not change past figures) plus model calls that returned an empty reply (relay or channel); "
                "the sum of `fallbacks_by_cause`",
            },
            "fallbacks_by_cause": obj(
                {
                    "dead_letter": {**_COUNT, "description": "activity rows of kind dead_letter in the range"},
                    "empty_reply": {**_COUNT, "description": "model calls with outcome empty_reply in the range"},
                }
            ),
            "feedback": obj({"up": _COUNT, "down": _COUNT}),
            "quota": {
                "anyOf": [ref("DashboardQuota"), {"type": "null"}],
                "description": "null in an admin's all-accounts view",
            },
        }
    ),
    "DashboardUsageSeries": obj(
        {
            "key": {
                **_NULLABLE_TEXT,
                "description": "model, bot id or platform; null for the ungrouped series, the `other` series, and "
                "calls of no bot",
            },
            "label": {
                "type": "string",
                "description": "the bot's name for group_by=bot; `all` ungrouped, `other` for the other series, "
                "`unknown` for a null key",
            },
            "other": {"type": "boolean", "description": "true for the one series summing the groups beyond `top`"},
            "requests": {**_COUNTS_ARRAY, "description": "model calls attempted, one entry per bucket"},
            "quota_refusals": {**_COUNTS_ARRAY, "description": _NOT_CALLS},
            "prompt_tokens": _COUNTS_ARRAY,
            "cached_tokens": _COUNTS_ARRAY,
            "completion_tokens": _COUNTS_ARRAY,
            "cost_usd": {"type": "array", "items": USD},
            "totals": _SERIES_TOTALS,
        }
    ),
    "DashboardUsage": obj(
        {
            "account_id": _NULLABLE_TEXT,
            "from": TIMESTAMP,
            "to": TIMESTAMP,
            "bucket": {"type": "string", "enum": ["hour", "day"]},
            "bucket_seconds": {"type": "integer", "enum": [3600, 86400]},
            "group_by": {"type": ["string", "null"], "enum": ["model", "bot", "platform", None]},
            "top": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_TOP,
                "description": "the `top` applied; null without group_by",
            },
            "groups": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "distinct models, bots or platforms with usage in the range (more than `top`: the "
                "rest are in the `other` series); null without group_by",
            },
            "buckets": {"type": "array", "items": TIMESTAMP, "description": "start of each bucket, every one listed"},
            "series": {
                "type": "array",
                "items": ref("DashboardUsageSeries"),
                "maxItems": MAX_TOP + 1,
                "description": "most model calls first, the `other` series (if any) last",
            },
        }
    ),
    "DashboardChannelHealth": obj(
        {
            "id": {"type": "string"},
            "platform": {"type": "string"},
            "external_id": {"type": "string"},
            "status": {"type": "string", "description": "active, needs_reauth (Graph error 190) or disabled"},
            "status_reason": _NULLABLE_TEXT,
            "last_delivery_at": NULLABLE_TIMESTAMP,
            "last_error": _NULLABLE_TEXT,
            "last_error_at": NULLABLE_TIMESTAMP,
        }
    ),
    "DashboardBot": obj(
        {
            "id": {"type": "string"},
            "account_id": {"type": "string"},
            "name": {"type": "string"},
            "model": _NULLABLE_TEXT,
            "created_at": TIMESTAMP,
            "channels": {"type": "array", "items": ref("DashboardChannelHealth")},
            "last_activity_at": {**NULLABLE_TIMESTAMP, "description": "the newest message with any of its contacts"},
            "contacts": {
                **_COUNT,
                "description": "contacts with a turn answered by the model: in the range when one is given, over "
                "the bot's life otherwise (contacts whose turns all failed or were refused are not counted)",
            },
            "messages": {
                **_COUNT,
                "description": "messages of turns answered by the model (customer and bot), in the range or lifetime",
            },
            "requests": {**_COUNT, "description": "model calls attempted; quota refusals are not calls"},
            "quota_refusals": {**_COUNT, "description": _NOT_CALLS},
            "cost_usd": USD,
            "cost_known": {"type": "boolean"},
        }
    ),
    "DashboardBots": obj(
        {
            "account_id": _NULLABLE_TEXT,
            "from": NULLABLE_TIMESTAMP,
            "to": NULLABLE_TIMESTAMP,
            "bots": {"type": "array", "items": ref("DashboardBot")},
        }
    ),
}


def _op(operation_id: str, summary: str, description: str, schema: str, parameters: list[Schema]) -> Schema:
    return jwt_operation(
        operation_id,
        summary,
        {"200": ok(ref(schema))},
        errors_=(400, 404),
        parameters=parameters,
        description=description,
        tags=_TAGS,
    )


PATHS: dict[str, dict[str, Any]] = {
    "/api/dashboard/metrics": {
        "get": _op(
            "getDashboardMetrics",
            "Messages, conversations, tokens, cost, latency, errors, feedback and quota over a time range",
            f"Default range: the current UTC month up to now. {_SCOPE} Any role may read. Message, conversation "
            f"and contact figures: {_TURNS}",
            "DashboardMetrics",
            [_FROM, _TO, _ACCOUNT],
        )
    },
    "/api/dashboard/usage": {
        "get": _op(
            "getDashboardUsage",
            "Model calls, tokens and cost per hour or day, optionally per model, bot or platform",
            "Columnar: `buckets` lists every bucket start, and each series has one entry per bucket in each array "
            "(zeros for empty buckets). Grouped, the `top` groups by model calls get a series each and the rest are "
            "summed into one `other` series, so the series always add up to the account's totals. Default range: "
            f"the current UTC month up to now. {_SCOPE} Any role may read.",
            "DashboardUsage",
            [_FROM, _TO, _BUCKET, _GROUP_BY, _TOP, _ACCOUNT],
        )
    },
    "/api/dashboard/bots": {
        "get": _op(
            "listDashboardBots",
            "Each bot with its channels' health, last activity, and message and cost totals",
            "Totals over the bots' whole life, or within `from`/`to` when either is given (`from` then defaults to "
            f"the start of the month of `to`). Deleted bots are left out. {_SCOPE} Any role may read.",
            "DashboardBots",
            [_FROM, _TO, _ACCOUNT],
        )
    },
    "/api/user/quota": {
        "get": _op(
            "getUserQuota",
            "The caller's token allowance this month: used, reserved, remaining, credits and period",
            "Owners and viewers read their own account (another account's `account_id` is 404); an admin must name "
            "the account with `account_id` (400 without it, 404 if unknown).",
            "DashboardUserQuota",
            [_ACCOUNT],
        )
    },
}
