"""Component schemas of the admin API: request bodies as admin/*.py validate them, answers as admin/render.py and
admin/channels.py render them. Names are prefixed `Admin`."""

from __future__ import annotations

from gateway.openapi.common import NULLABLE_TIMESTAMP, TIMESTAMP, Schema, credential, nullable, obj, ref, text

_ID = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
_STAMPS = {"created_at": TIMESTAMP, "updated_at": TIMESTAMP}
_MODELS = {
    "type": "array",
    "minItems": 1,
    "items": text(200),
    "description": "model names the plan allows; duplicates are dropped, at most 100",
}
PLATFORMS = ["messenger", "instagram", "whatsapp"]
CREDIT_KINDS = ["purchase", "grant", "refund", "adjustment"]

_PLAN_FIELDS: dict[str, Schema] = {
    "name": text(100, description="unique"),
    "monthly_token_limit": {"type": "integer", "minimum": 0, "maximum": 10**12},
    "models": _MODELS,
    "default_model": text(100, description="one of models"),
}
_PLAN_OPTIONAL: dict[str, Schema] = {
    "overage_percent": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
    "messages_per_minute": {"type": ["integer", "null"], "minimum": 1, "maximum": 100_000},
}
_BOT_FIELDS: dict[str, Schema] = {"name": text(100), "persona": text(20_000, description="the system prompt")}
_BOT_OPTIONAL: dict[str, Schema] = {
    "model": nullable(text(100, description="one of the plan's models; null: the plan's default")),
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "max_reply_tokens": {"type": "integer", "minimum": 1, "maximum": 32_768, "default": 300},
    "memory_tokens": {"type": "integer", "minimum": 64, "maximum": 1_000_000, "default": 2000},
    "fallback_message": text(1000, description="sent when the model cannot answer"),
    "media_reply": nullable(text(1000, description="the answer to media the bot cannot read; null: built in")),
    "handover_pause_minutes": {"type": "integer", "minimum": 0, "maximum": 7 * 24 * 60, "default": 30},
}
_SECRETS: dict[str, Schema] = {
    "access_token": credential(4096, description="write-only: never returned"),
    "app_secret": nullable(credential(256, description="write-only: this channel's own Meta app secret")),
    "verify_token": nullable(credential(256, description="write-only: this channel's own verify token")),
}
_ACCOUNT_FIELDS: dict[str, Schema] = {
    "id": _ID,
    "name": {"type": "string"},
    "email": {"type": ["string", "null"]},
    "plan_id": _ID,
    "locked": {"type": "boolean"},
    **_STAMPS,
}
_API_KEY_FIELDS: dict[str, Schema] = {
    "id": _ID,
    "name": {"type": ["string", "null"]},
    "prefix": {"type": "string", "description": "the first characters of the key, to recognise it"},
    "created_at": TIMESTAMP,
    "last_used_at": NULLABLE_TIMESTAMP,
    "revoked_at": NULLABLE_TIMESTAMP,
}


def _partial(fields: dict[str, Schema]) -> Schema:
    """A PATCH body: any of `fields`, at least one."""
    return obj({}, fields, minProperties=1)


SCHEMAS: dict[str, Schema] = {
    "AdminPlanCreate": obj(_PLAN_FIELDS, _PLAN_OPTIONAL),
    "AdminPlanUpdate": _partial({**_PLAN_FIELDS, **_PLAN_OPTIONAL}),
    "AdminPlan": obj(
        {
            "id": _ID,
            "name": {"type": "string"},
            "monthly_token_limit": _COUNT,
            "models": {"type": "array", "items": {"type": "string"}},
            "default_model": {"type": "string"},
            "overage_percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "messages_per_minute": {"type": ["integer", "null"], "minimum": 1},
            **_STAMPS,
        }
    ),
    "AdminPlanList": obj({"plans": {"type": "array", "items": ref("AdminPlan")}}),
    "AdminAccountCreate": obj(
        {"name": text(200), "plan_id": text(64)}, {"email": nullable(text(320, description="a contact address"))}
    ),
    "AdminAccountUpdate": _partial(
        {
            "name": text(200),
            "plan_id": text(64, description="operator only"),
            "email": nullable(text(320)),
        }
    ),
    "AdminLock": obj({"locked": {"type": "boolean"}}),
    "AdminAccount": obj(_ACCOUNT_FIELDS),
    "AdminAccountDetail": obj(
        {
            **_ACCOUNT_FIELDS,
            "quota": obj(
                {
                    "limit_tokens": _COUNT,
                    "used_tokens": _COUNT,
                    "remaining_tokens": _COUNT,
                    "period_end": TIMESTAMP,
                    "credit_balance_tokens": {"type": "integer"},
                }
            ),
        }
    ),
    "AdminAccountList": obj({"accounts": {"type": "array", "items": ref("AdminAccount")}}),
    "AdminApiKeyCreate": obj({}, {"name": text(100)}),
    "AdminApiKey": obj(_API_KEY_FIELDS),
    "AdminIssuedApiKey": obj(
        {**_API_KEY_FIELDS, "key": {"type": "string", "description": "the key itself: shown this once, never again"}}
    ),
    "AdminApiKeyList": obj({"api_keys": {"type": "array", "items": ref("AdminApiKey")}}),
    "AdminCreditCreate": obj(
        {
            "tokens": {
                "type": "integer",
                "minimum": -(10**12),
                "maximum": 10**12,
                "not": {"const": 0},
                "description": "positive adds; purchase and grant must be positive",
            },
            "kind": {"enum": CREDIT_KINDS},
        },
        {"note": nullable(text(500))},
    ),
    "AdminCreditEntry": obj(
        {
            "id": _ID,
            "account_id": _ID,
            "kind": {"enum": [*CREDIT_KINDS, "overage", "usage"]},
            "tokens": {"type": "integer"},
            "note": {"type": ["string", "null"]},
            "created_by": {"type": ["string", "null"]},
            "created_at": TIMESTAMP,
        }
    ),
    "AdminCreditLedger": obj(
        {"balance_tokens": {"type": "integer"}, "entries": {"type": "array", "items": ref("AdminCreditEntry")}}
    ),
    "AdminBotCreate": obj(_BOT_FIELDS, _BOT_OPTIONAL),
    "AdminBotUpdate": _partial({**_BOT_FIELDS, **_BOT_OPTIONAL}),
    "AdminBot": obj(
        {
            "id": _ID,
            "account_id": _ID,
            "name": {"type": "string"},
            "persona": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "temperature": {"type": ["number", "null"]},
            "max_reply_tokens": {"type": "integer", "minimum": 1},
            "memory_tokens": {"type": "integer", "minimum": 1},
            "fallback_message": {"type": "string"},
            "media_reply": {"type": ["string", "null"]},
            "handover_pause_minutes": _COUNT,
            **_STAMPS,
        }
    ),
    "AdminBotList": obj({"bots": {"type": "array", "items": ref("AdminBot")}}),
    "AdminChannelCreate": obj(
        {
            "platform": {"enum": PLATFORMS},
            "external_id": text(64, pattern="^[0-9]+$", description="the numeric Page, Instagram or phone number id"),
            "access_token": _SECRETS["access_token"],
        },
        {"app_secret": _SECRETS["app_secret"], "verify_token": _SECRETS["verify_token"]},
    ),
    "AdminChannelUpdate": _partial({**_SECRETS, "status": {"enum": ["active", "disabled"]}}),
    "AdminChannel": obj(
        {
            "id": _ID,
            "account_id": _ID,
            "bot_id": _ID,
            "platform": {"enum": PLATFORMS},
            "external_id": {"type": "string"},
            "status": {"enum": ["active", "needs_reauth", "disabled"]},
            "status_reason": {"type": ["string", "null"]},
            "has_app_secret": {"type": "boolean"},
            "has_verify_token": {"type": "boolean"},
            **_STAMPS,
        }
    ),
    "AdminChannelList": obj({"channels": {"type": "array", "items": ref("AdminChannel")}}),
}
