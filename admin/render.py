"""JSON shapes of the admin API. Secrets and hashes never appear here."""

from __future__ import annotations

from typing import Any

from core.clock import iso_utc
from core.models import Account, ApiKey, Bot, CreditEntry, Plan


def _ts(value: int | None) -> str | None:
    return None if value is None else iso_utc(value)


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "monthly_token_limit": plan.monthly_token_limit,
        "models": list(plan.models),
        "default_model": plan.default_model,
        "overage_percent": plan.overage_percent,
        "messages_per_minute": plan.messages_per_minute,
        "created_at": _ts(plan.created_at),
        "updated_at": _ts(plan.updated_at),
    }


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "email": account.email,
        "plan_id": account.plan_id,
        "locked": account.locked,
        "created_at": _ts(account.created_at),
        "updated_at": _ts(account.updated_at),
    }


def api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": _ts(key.created_at),
        "last_used_at": _ts(key.last_used_at),
        "revoked_at": _ts(key.revoked_at),
    }


def credit_json(entry: CreditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "account_id": entry.account_id,
        "kind": entry.kind,
        "tokens": entry.tokens,
        "note": entry.note,
        "created_by": entry.created_by,
        "created_at": _ts(entry.created_at),
    }


def bot_json(bot: Bot) -> dict[str, Any]:
    return {
        "id": bot.id,
        "account_id": bot.account_id,
        "name": bot.name,
        "persona": bot.persona,
        "model": bot.model,
        "temperature": bot.temperature,
        "max_reply_tokens": bot.max_reply_tokens,
        "memory_tokens": bot.memory_tokens,
        "fallback_message": bot.fallback_message,
        "media_reply": bot.media_reply,
        "handover_pause_minutes": bot.handover_pause_minutes,
        "created_at": _ts(bot.created_at),
        "updated_at": _ts(bot.updated_at),
    }
