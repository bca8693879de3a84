"""OpenAPI paths of the operations surface: usage exports (admin/exports.py), the status API (admin/status.py)
and the Prometheus scrape endpoint (gateway/metrics_route.py)."""

from __future__ import annotations

from typing import Any

from gateway.openapi.common import (
    NULLABLE_TIMESTAMP,
    PUBLIC,
    TIMESTAMP,
    Schema,
    errors,
    jwt_operation,
    nullable,
    obj,
    ok,
    query_param,
    ref,
)

_COUNT: Schema = {"type": "integer", "minimum": 0}
_CODE: Schema = {"type": "string", "minLength": 1, "maxLength": 64}
_ACCOUNT_QUERY = query_param(
    "account_id",
    {"type": "string", "minLength": 1},
    "admin: one account (an unknown id is 404); owner or viewer: only their own (another account's id is 404)",
)
_EXPORT_COLUMNS = (
    "id, created_at (RFC 3339 UTC with milliseconds), account_id, bot_id, contact_id, channel "
    "(relay|messenger|instagram|whatsapp), model, response_model, prompt_tokens, cached_tokens, completion_tokens, "
    "reasoning_tokens, total_tokens, cost_usd (USD decimal string; empty in CSV / null in NDJSON when no price is "
    "known), latency_ms, attempts, outcome, error_code, request_id"
)
_TIME = {"type": "string", "minLength": 1}

SCHEMAS: dict[str, Schema] = {
    "OpsProbeError": obj({"code": _CODE, "message": {"type": "string", "minLength": 1}, "at": TIMESTAMP}),
    "OpsOpenAIStatus": obj(
        {
            "configured": {"type": "boolean", "description": "false when OPENAI_API_KEY is unset"},
            "reachable": {"type": "boolean", "description": "GET {base}/models answered 2xx with our key"},
            "latency_ms": nullable(_COUNT),
            "checked_at": {**TIMESTAMP, "description": "when this probe ran (results are reused for 30 s)"},
            "cached": {"type": "boolean", "description": "true when served from an earlier probe within 30 s"},
            "http_status": nullable({"type": "integer", "minimum": 100, "maximum": 599}),
            "error": {"anyOf": [ref("OpsProbeError"), {"type": "null"}], "description": "this probe's failure"},
            "last_error": {
                "anyOf": [ref("OpsProbeError"), {"type": "null"}],
                "description": "the newest failure of any probe since the process started, kept after successes",
            },
            "last_call": {
                "anyOf": [
                    obj(
                        {
                            "outcome": {"type": "string"},
                            "error_code": nullable({"type": "string"}),
                            "model": {"type": "string"},
                            "at": TIMESTAMP,
                        }
                    ),
                    {"type": "null"},
                ],
                "description": "the newest model call the engine made (for owners and viewers: of their account)",
            },
        },
        {"base_url": {"type": "string", "description": "admin only: the configured OPENAI_BASE_URL"}},
    ),
    "OpsChannelHealth": obj(
        {
            "id": {"type": "string"},
            "account_id": {"type": "string"},
            "bot_id": {"type": "string"},
            "platform": {"enum": ["messenger", "instagram", "whatsapp"]},
            "external_id": {"type": "string"},
            "status": {"enum": ["active", "needs_reauth", "disabled"]},
            "status_reason": nullable({"type": "string"}),
            "needs_reauthorisation": {
                "type": "boolean",
                "description": "Graph refused the access token (error 190): sends have stopped until a new token",
            },
            "last_delivery_at": NULLABLE_TIMESTAMP,
            "last_error": nullable({"type": "string"}),
            "last_error_at": NULLABLE_TIMESTAMP,
            "inbox_pending": {**_COUNT, "description": "events received and not yet answered"},
            "dead_letters": {**_COUNT, "description": "events given up on, over the inbox's 10-day retention"},
            "dead_letters_24h": {**_COUNT, "description": "of which in the last 24 hours"},
        }
    ),
    "OpsWebhookStatus": obj({"channels": {"type": "array", "items": ref("OpsChannelHealth")}}),
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/admin/logs/export": {
        "get": jwt_operation(
            "exportUsage",
            "Download usage records as CSV or NDJSON",
            {
                "200": {
                    "description": (
                        "The records in (created_at, id) order, streamed. Columns, in this order: "
                        f"{_EXPORT_COLUMNS}. CSV has a header row, RFC 4180 quoting and CRLF line ends; a text cell "
                        "starting with = + - @ is prefixed with an apostrophe (spreadsheet formula injection). "
                        "NDJSON has one JSON object per line with the same keys."
                    ),
                    "headers": {
                        "Content-Disposition": {
                            "description": 'attachment; filename="usage_<account|all-accounts>_<from>_<to>.<ext>"',
                            "schema": {"type": "string"},
                        }
                    },
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                }
            },
            errors_=(400, 404, 429),
            parameters=[
                query_param("format", {"enum": ["csv", "ndjson"], "default": "csv"}, "the file format"),
                query_param(
                    "from",
                    _TIME,
                    "inclusive lower bound: epoch milliseconds, a date (2026-01-31, midnight UTC) or an ISO-8601 "
                    "time (no offset: UTC), from 1970 to the end of 9999 (else 400), as on the dashboard routes",
                ),
                query_param("to", _TIME, "exclusive upper bound, same forms; must be later than from"),
                _ACCOUNT_QUERY,
            ],
            description=(
                "Any role: an admin exports one account (account_id) or all of them; owners and viewers export "
                "their own account. A year of records streams without being held in memory. Unknown query "
                "parameters are a 400. At most two exports stream at once per server process: one more answers "
                "429 `rate_limited` with `Retry-After`."
            ),
            tags=("operations",),
        )
    },
    "/api/status/openai": {
        "get": jwt_operation(
            "getOpenAIStatus",
            "Is the model endpoint reachable?",
            {"200": ok(ref("OpsOpenAIStatus"))},
            errors_=(400,),
            description=(
                "Any role. A live probe of the configured OpenAI-compatible endpoint (GET {base}/models with the "
                "key, 5 s timeout), shared by concurrent callers and reused for 30 s. Never shows the key. "
                "Takes no query parameters (any is a 400)."
            ),
            tags=("operations",),
        )
    },
    "/api/status/webhooks": {
        "get": jwt_operation(
            "getWebhookStatus",
            "Health of each connected channel",
            {"200": ok(ref("OpsWebhookStatus"))},
            errors_=(400, 404),
            parameters=[_ACCOUNT_QUERY],
            description=(
                "Any role: owners and viewers see their account's channels; an admin sees every account's, or one "
                "account's with account_id. Last delivery, last error, inbox depth, dead letters, re-authorisation."
            ),
            tags=("operations",),
        )
    },
    "/metrics": {
        "get": {
            "operationId": "getMetrics",
            "summary": "Prometheus metrics",
            "description": (
                "The Prometheus text exposition format (0.0.4): webhook deliveries, inbox events and depth, event "
                "processing and model call latency histograms, tokens, cost, Graph and OpenAI errors by code, relay "
                "requests by status. With METRICS_TOKEN set, `Authorization: Bearer <METRICS_TOKEN>` is required "
                "(401 otherwise). Without it the route is open only when the service listens on a loopback address "
                "(HOST 127.0.0.1, ::1 or localhost); on any other address it answers 503 `not_configured`: set "
                "METRICS_TOKEN to expose /metrics on a non-loopback address."
            ),
            "security": PUBLIC,
            "tags": ["operations"],
            "responses": {
                "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                **errors(401, 503),
            },
        }
    },
}
