"""OpenAPI paths of the public surface: health, the document itself, the relay API, Meta webhooks and the data
deletion callback (gateway/health.py, relay.py, webhooks.py, data_deletion.py, openapi_route.py)."""

from __future__ import annotations

from typing import Any

from gateway.openapi.common import (
    API_KEY,
    META_SIGNATURE,
    PUBLIC,
    USD,
    Schema,
    errors,
    json_body,
    obj,
    ok,
    path_param,
    query_param,
    ref,
    text,
)

# The same two handlers serve every product under the current paths and the original Nexus Flow ones.
_WEBHOOK_PATHS = {
    "/webhooks/messenger": ("Messenger", "messenger"),
    "/webhooks/instagram": ("Instagram", "instagram"),
    "/webhooks/whatsapp": ("WhatsApp", "whatsapp"),
    "/api/messaging/facebook": ("Messenger (original Nexus Flow path)", "legacyFacebook"),
    "/api/messaging/instagram": ("Instagram (original Nexus Flow path)", "legacyInstagram"),
    "/api/messaging/whatsapp": ("WhatsApp (original Nexus Flow path)", "legacyWhatsapp"),
}

_CHECK = {"type": "boolean"}
# Any signed body is answered 200 (an unusable one is kept aside, not refused), so the schema constrains nothing.
_ANY_PAYLOAD = {
    "description": "Meta's payload: an object whose `object` is page, instagram or whatsapp_business_account"
}
_ERROR_JSON = {"application/json": {"schema": ref("Error")}}
SCHEMAS: dict[str, Schema] = {
    "CoreHealth": obj({"status": {"const": "ok"}}),
    "CoreReadiness": obj(
        {
            "status": {"enum": ["ready", "not_ready"]},
            "checks": obj({"database": _CHECK, "migrations": _CHECK, "llm_configured": _CHECK}),
        }
    ),
    "CoreRelayRequest": obj(
        {"user_id": text(256, description="the business's own id for its end customer"), "message": text(4000)},
        {"bot_id": text(64, description="default: the account's first bot")},
    ),
    "CoreRelayReply": obj(
        {
            "reply": {"type": "string"},
            "bot_id": {"type": "string"},
            "model": {"type": "string"},
            "usage": obj(
                {
                    name: {"type": "integer", "minimum": 0}
                    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "total_tokens")
                }
            ),
            "cost_usd": {**USD, "description": 'what this turn cost; "0.000000" when the price is unknown'},
            "cost_known": {"type": "boolean", "description": "false when no price is known for the model"},
            "quota": ref("Quota"),
            "message_id": {
                "type": ["string", "null"],
                "description": "the stored reply's id: what POST /api/ai/feedback rates",
            },
        }
    ),
    "CoreWebhookReceipt": obj(
        {
            "stored": {"type": "integer", "minimum": 0, "description": "events committed to the inbox"},
            "duplicates": {"type": "integer", "minimum": 0, "description": "events seen before, dropped"},
            "unrouted": {"type": "integer", "minimum": 0, "description": "events kept aside: no channel, bad shape"},
        }
    ),
    "CoreDataDeletionRequest": obj({"signed_request": {"type": "string"}}),
    "CoreDataDeletionReceipt": obj(
        {"url": {"type": "string", "format": "uri"}, "confirmation_code": {"type": "string", "pattern": "^[0-9a-f]+$"}}
    ),
}


def _webhook_item(product: str, suffix: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": f"verifyWebhook_{suffix}",
            "summary": f"{product} webhook subscription handshake",
            "tags": ["webhooks"],
            "security": PUBLIC,
            "parameters": [
                query_param("hub.mode", {"type": "string"}, "must be subscribe"),
                query_param("hub.verify_token", {"type": "string"}, "META_VERIFY_TOKEN or a channel's own token"),
                query_param("hub.challenge", {"type": "string"}, "echoed back when the token matches"),
            ],
            "responses": {
                "200": {
                    "description": "The challenge, verbatim",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **errors(403),
            },
        },
        "post": {
            "operationId": f"receiveWebhook_{suffix}",
            "summary": f"{product} webhook delivery (signed)",
            "description": (
                "Verified against X-Hub-Signature-256, then every event is committed to the inbox before the 200; "
                "replies go out later through the Graph API. A signed body that cannot be used (bad JSON, unknown "
                "object, unknown page) is still a 200 and kept aside, so Meta does not retry it for days."
            ),
            "tags": ["webhooks"],
            "security": META_SIGNATURE,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ANY_PAYLOAD}},
            },
            "responses": {
                "200": ok(ref("CoreWebhookReceipt"), "Every event of the body is durably stored (or kept aside)"),
                **errors(401, 413),
            },
        },
    }


PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: the process is up",
            "tags": ["service"],
            "security": PUBLIC,
            "responses": {"200": ok(ref("CoreHealth"))},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: the database is reachable and migrated",
            "description": "llm_configured=false (no OPENAI_API_KEY) does not make the service unready.",
            "tags": ["service"],
            "security": PUBLIC,
            "responses": {
                "200": ok(ref("CoreReadiness"), "Ready"),
                "503": ok(ref("CoreReadiness"), "Not ready: the failing check is false"),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapiDocument",
            "summary": "This OpenAPI 3.1 document",
            "tags": ["service"],
            "security": PUBLIC,
            "responses": {
                "200": ok(
                    {
                        "type": "object",
                        "required": ["openapi", "info", "paths"],
                        "properties": {"openapi": {"const": "3.1.0"}},
                    }
                )
            },
        }
    },
    "/api/messages/relay": {
        "post": {
            "operationId": "relayMessage",
            "summary": "Send one end-customer message to the account's bot and get its reply",
            "tags": ["relay"],
            "security": API_KEY,
            "requestBody": json_body(ref("CoreRelayRequest")),
            "responses": {
                "200": ok(ref("CoreRelayReply"), "The bot's reply, what it cost and where the quota stands"),
                **errors(400, 401, 404, 413, 429, 502, 503),
                "403": {"description": "account_locked: the operator locked this account", "content": _ERROR_JSON},
            },
        }
    },
    **{path: _webhook_item(product, suffix) for path, (product, suffix) in _WEBHOOK_PATHS.items()},
    "/webhooks/meta/data-deletion": {
        "post": {
            "operationId": "requestDataDeletion",
            "summary": "Meta's data deletion callback: erase what is stored about a Meta user",
            "tags": ["webhooks"],
            "security": PUBLIC,
            "description": "Authenticated by the signed_request itself (HMAC-SHA256 with META_APP_SECRET).",
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": ref("CoreDataDeletionRequest")}},
            },
            "responses": {"200": ok(ref("CoreDataDeletionReceipt"), "Erased"), **errors(400, 413, 503)},
        }
    },
    "/webhooks/meta/data-deletion/{code}": {
        "get": {
            "operationId": "dataDeletionStatus",
            "summary": "The status page of a data deletion request, for the person who asked",
            "tags": ["webhooks"],
            "security": PUBLIC,
            "parameters": [path_param("code", "the confirmation code the callback answered")],
            "responses": {
                "200": {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                **errors(404),
            },
        }
    },
}
