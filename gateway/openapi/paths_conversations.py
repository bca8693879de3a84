"""OpenAPI paths of the conversations API (admin/conversations.py, under /api/conversations/), reply feedback
(admin/feedback.py, POST /api/ai/feedback), the activity feed (admin/activity.py, /api/dashboard/activity) and
the audit trail (admin/audit.py, /api/admin/audit). Schema names are prefixed `Conversations`."""

from __future__ import annotations

from typing import Any

from gateway.openapi.common import (
    API_KEY,
    JWT,
    NULLABLE_TIMESTAMP,
    TIMESTAMP,
    Schema,
    errors,
    json_body,
    jwt_operation,
    nullable,
    obj,
    ok,
    path_param,
    query_param,
    ref,
    text,
)

_COUNT: Schema = {"type": "integer", "minimum": 0}
_STRING: Schema = {"type": "string"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_CURSOR_NOTE = "opaque; pass back `next_cursor` of the previous page (400 if it is not one)"
_LIMIT = query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "page size")
_CURSOR = query_param("cursor", {"type": "string", "maxLength": 512}, _CURSOR_NOTE)
_ACCOUNT = query_param(
    "account_id",
    {"type": "string", "minLength": 1},
    "admin: one account (404 if unknown), default every account; owner or viewer: only their own (another is 404)",
)
_CONTACT = path_param(
    "contact_id", "a contact id (a conversation); another account's answers 404 to an owner or viewer"
)
_NEXT = {**_NULLABLE_STRING, "description": "the cursor of the next page; null on the last page"}
_KINDS = ["conversation_started", "quota_warning", "channel_error", "human_takeover", "admin_action", "dead_letter"]
_PLATFORMS = ["messenger", "instagram", "whatsapp", "relay"]
_PAUSE = (
    "A pause applies to the contact's conversation on every connected channel of its bot on its platform; the channel "
    "worker does not answer while it lasts (a person answers from the Page/WhatsApp inbox). A relay conversation "
    "has no channel: the business's own app decides when to call the relay API, so pause and resume answer 409 "
    "conflict; so do they when the bot has no connected channel on that platform any more."
)
_SCOPE = "Owners and viewers see their own account; an admin sees every account, or one with `account_id`."
_WRITERS = "Admin, or the account's owner (viewers: 403). Another account's contact is 404 first."

SCHEMAS: dict[str, Schema] = {
    "ConversationsSummary": obj(
        {
            "id": _STRING,
            "account_id": _STRING,
            "bot_id": _STRING,
            "bot_name": _STRING,
            "platform": {"type": "string", "enum": _PLATFORMS},
            "external_id": {**_STRING, "description": "the customer's id on the platform (PSID, IGSID, wa_id, relay)"},
            "message_count": _COUNT,
            "created_at": TIMESTAMP,
            "last_message_at": NULLABLE_TIMESTAMP,
            "last_message": nullable(
                obj(
                    {
                        "role": {"type": "string", "enum": ["user", "assistant"]},
                        "preview": {**_STRING, "maxLength": 140, "description": "the start of the text"},
                        "created_at": NULLABLE_TIMESTAMP,
                    }
                )
            ),
            "paused": {"type": "boolean", "description": "true while a human takeover pause runs"},
            "paused_until": {**NULLABLE_TIMESTAMP, "description": "end of the running pause; null when not paused"},
        }
    ),
    "ConversationsList": obj(
        {
            "conversations": {
                "type": "array",
                "items": ref("ConversationsSummary"),
                "description": "most recent conversation first; contacts without any stored message are left out",
            },
            "next_cursor": _NEXT,
        }
    ),
    "ConversationsMessage": obj(
        {
            "id": _STRING,
            "seq": {"type": "integer", "minimum": 1},
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": _STRING,
            "tokens": _COUNT,
            "created_at": TIMESTAMP,
            "rating": {"type": ["string", "null"], "enum": ["up", "down", None], "description": "feedback on a reply"},
        }
    ),
    "ConversationsDetail": obj(
        {
            "conversation": ref("ConversationsSummary"),
            "pausable": {"type": "boolean", "description": "false for relay conversations and without a channel"},
            "messages": {"type": "array", "items": ref("ConversationsMessage"), "description": "oldest first"},
            "next_cursor": _NEXT,
        }
    ),
    "ConversationsPause": obj({}, {"minutes": {"type": "integer", "minimum": 1, "maximum": 10080}}),
    "ConversationsErasure": obj({"erased": obj({"contacts": _COUNT, "messages": _COUNT, "inbox_events": _COUNT})}),
    "ConversationsFeedbackRequest": obj(
        {"message_id": text(64), "rating": {"type": "string", "enum": ["up", "down"]}},
        {"comment": nullable(text(2000))},
    ),
    "ConversationsFeedback": obj(
        {
            "id": _STRING,
            "message_id": _STRING,
            "account_id": _STRING,
            "bot_id": _STRING,
            "contact_id": _STRING,
            "rating": {"type": "string", "enum": ["up", "down"]},
            "comment": _NULLABLE_STRING,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        }
    ),
    "ConversationsActivityEntry": obj(
        {
            "id": _STRING,
            "account_id": _STRING,
            "kind": {"type": "string", "enum": _KINDS},
            "summary": {**_STRING, "description": "one sentence; never a customer's id or words"},
            "bot_id": _NULLABLE_STRING,
            "channel_id": _NULLABLE_STRING,
            "contact_id": _NULLABLE_STRING,
            "detail": {"type": ["object", "null"], "description": "kind-specific figures (threshold, status, ...)"},
            "created_at": TIMESTAMP,
        }
    ),
    "ConversationsActivity": obj(
        {
            "activity": {"type": "array", "items": ref("ConversationsActivityEntry"), "description": "newest first"},
            "next_cursor": _NEXT,
        }
    ),
    "ConversationsAuditEntry": obj(
        {
            "id": _STRING,
            "actor": {**_STRING, "description": "the token's subject"},
            "actor_role": {"type": "string", "enum": ["admin", "owner", "viewer"]},
            "account_id": {**_NULLABLE_STRING, "description": "the account touched; null for platform-wide changes"},
            "action": {**_STRING, "description": "the operation, e.g. update_bot"},
            "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
            "path": {**_STRING, "description": "the route pattern, e.g. /api/admin/bots/{bot_id}"},
            "target_type": _NULLABLE_STRING,
            "target_id": _NULLABLE_STRING,
            "status": {
                "type": "integer",
                "minimum": 200,
                "maximum": 599,
                "description": "the answer's status; 5xx attempts are recorded too (they may have committed)",
            },
            "request_id": _NULLABLE_STRING,
            "detail": {
                "type": ["object", "null"],
                "description": "`fields`: the names (never the values) of the body fields sent; `outcome`: "
                '"error" when the answer was a 5xx',
            },
            "created_at": TIMESTAMP,
        }
    ),
    "ConversationsAudit": obj(
        {
            "entries": {"type": "array", "items": ref("ConversationsAuditEntry"), "description": "newest first"},
            "next_cursor": _NEXT,
        }
    ),
}


def _op(
    operation_id: str,
    summary: str,
    description: str,
    response: str,
    *,
    errors_: tuple[int, ...] = (),
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    tag: str = "conversations",
) -> Schema:
    return jwt_operation(
        operation_id,
        summary,
        {"200": ok(ref(response))},
        errors_=errors_,
        parameters=parameters,
        body=body,
        description=description,
        tags=(tag,),
    )


_FEEDBACK: Schema = {
    "operationId": "rateReply",
    "summary": "Rate one bot reply up or down, with an optional comment",
    "description": (
        "With the account's API key (the business's app letting its customer rate a reply; the relay answer's "
        "`message_id` names it), or a dashboard JWT of an owner or admin (viewers: 403 on their own account's "
        "replies). A credential starting "
        "with `nxk_` is taken as an API key, anything else as a JWT. The first rating of a reply answers 201; a "
        "later one replaces it (rating and comment) and answers 200 with the same id. Another account's message, "
        "or one that does not exist, is 404; a customer's own message is 400 (only replies are rated). A locked "
        "account's key is 403 account_locked."
    ),
    "tags": ["feedback"],
    "security": [*JWT, *API_KEY],
    "requestBody": json_body(ref("ConversationsFeedbackRequest")),
    "responses": {
        "201": ok(ref("ConversationsFeedback"), "The reply's first rating"),
        "200": ok(ref("ConversationsFeedback"), "The reply's rating, replaced"),
        **errors(400, 401, 403, 404, 413, 503),
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/conversations": {
        "get": _op(
            "listConversations",
            "Conversations (contacts) with their last message and pause state, most recent first",
            f"{_SCOPE} `q` matches a substring of the customer's id or of any message, case-insensitively "
            "(Unicode case folding: `ÉMILE` finds `émile`). A search may read every message of the account, so at "
            "most two run at once per server process: one more answers 429 `rate_limited` with `Retry-After`. "
            "Any role may read.",
            "ConversationsList",
            errors_=(400, 404, 429),
            parameters=[
                query_param("q", {"type": "string", "maxLength": 200}, "search text"),
                query_param("platform", {"type": "string", "enum": _PLATFORMS}, "only this platform"),
                query_param("bot_id", {"type": "string"}, "only this bot's conversations"),
                _ACCOUNT,
                _CURSOR,
                _LIMIT,
            ],
        )
    },
    "/api/conversations/{contact_id}": {
        "get": _op(
            "readConversation",
            "One conversation: the contact, its pause state and its messages, oldest first, a page at a time",
            "Any role may read its account's conversations; an admin any.",
            "ConversationsDetail",
            errors_=(400, 404),
            parameters=[_CONTACT, _CURSOR, _LIMIT],
        ),
        "delete": _op(
            "eraseConversation",
            "Erase the customer behind this contact: contacts, messages, ratings, pauses and inbox events",
            f"{_WRITERS} Erases, within the contact's account and platform only, every contact with the same customer "
            "id (the same person on another bot of the account), and the pauses and inbox events of the account's "
            "channels on that platform. The same id on another platform is another person (a relay user id may "
            "equal a WhatsApp number) and is kept. Usage records keep their figures without the link.",
            "ConversationsErasure",
            errors_=(403, 404),
            parameters=[_CONTACT],
        ),
    },
    "/api/conversations/{contact_id}/pause": {
        "post": _op(
            "pauseConversation",
            "Human takeover: the bot stops answering this conversation for a while",
            f"{_WRITERS} Default length: the bot's handover_pause_minutes (30 if that is 0); at most a week. {_PAUSE}",
            "ConversationsSummary",
            errors_=(400, 403, 404, 409, 413),
            parameters=[_CONTACT],
            body=json_body(ref("ConversationsPause"), required=False),
        )
    },
    "/api/conversations/{contact_id}/resume": {
        "post": _op(
            "resumeConversation",
            "End a human takeover: the bot answers this conversation again",
            f"{_WRITERS} {_PAUSE}",
            "ConversationsSummary",
            errors_=(403, 404, 409),
            parameters=[_CONTACT],
        )
    },
    "/api/ai/feedback": {"post": _FEEDBACK},
    "/api/dashboard/activity": {
        "get": _op(
            "listActivity",
            "What happened to the account, newest first: conversations, quota warnings, channel errors, takeovers, "
            "admin actions",
            f"{_SCOPE} Any role may read. Quota warnings come once per month at 80% of the allowance and when it is "
            "used up; channel errors when a channel turns needs_reauth or disabled; dead letters when a channel "
            "event is given up on after its retries and the customer is sent the bot's fallback message (once per "
            "event; what `fallbacks` of /api/dashboard/metrics counts); admin actions for every "
            "successful mutation made through the JWT APIs on the account (an operator's action does not name the "
            "operator: `detail.actor` is only given for owners' and viewers' own actions).",
            "ConversationsActivity",
            errors_=(400, 404),
            parameters=[
                query_param("kind", {"type": "string", "enum": _KINDS}, "only this kind"),
                _ACCOUNT,
                _CURSOR,
                _LIMIT,
            ],
            tag="dashboard",
        )
    },
    "/api/admin/audit": {
        "get": _op(
            "listAudit",
            "The audit trail: every mutation of the JWT APIs, done (2xx), refused (4xx but 401) or failed (5xx), "
            "newest first",
            "Admin only (owners and viewers: 403; another account's `account_id` is 404 first). Owners' and "
            "viewers' attempts are recorded against their own "
            "account. Request bodies are never stored, only the names of the fields sent. A 5xx answer is recorded "
            'with `detail.outcome` = "error": the change may have been committed before the failure.',
            "ConversationsAudit",
            errors_=(400, 403, 404),
            parameters=[_ACCOUNT, _CURSOR, _LIMIT],
            tag="admin",
        )
    },
}
