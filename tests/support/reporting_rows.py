"""Rows written straight into the service's database, for reports over past times the clock cannot reach.

Usage records, contacts, messages, feedback, inbox events and activity rows are written the way the engine, the
feedback API and the channel worker write them, at chosen instants, so dashboard figures can be compared with
hand-computed ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.settings import Settings
from tests.support import database

_SEQ = itertools.count(1)


def ms(iso: str) -> int:
    """Epoch milliseconds of an ISO-8601 UTC time such as 2025-03-01T00:00:00Z."""
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def insert(settings: Settings, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
    database.insert(settings, table, rows)


def usage_row(
    account_id: str,
    bot_id: str | None,
    at: int,
    *,
    model: str = "gpt-4o-mini",
    channel: str = "relay",
    prompt: int = 100,
    cached: int = 0,
    completion: int = 20,
    reasoning: int = 0,
    cost: int | None = 1000,
    latency: int | None = 100,
    outcome: str = "ok",
    attempts: int = 1,
) -> dict[str, Any]:
    return {
        "id": f"use_t{next(_SEQ)}",
        "account_id": account_id,
        "bot_id": bot_id,
        "channel": channel,
        "model": model,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
        "total_tokens": prompt + completion,
        "cost_nanousd": cost,
        "latency_ms": latency,
        "attempts": attempts,
        "outcome": outcome,
        "error_code": None if outcome == "ok" else outcome,
        "created_at": at,
    }


def failure_row(account_id: str, bot_id: str | None, at: int, outcome: str) -> dict[str, Any]:
    """A turn that failed: nothing charged (cost 0, as the engine records it), no latency. A quota refusal made no
    model call at all: the engine records it with 0 attempts."""
    attempts = 0 if outcome == "quota_exceeded" else 1
    return usage_row(
        account_id, bot_id, at, prompt=0, completion=0, cost=0, latency=None, outcome=outcome, attempts=attempts
    )


def dead_letter_row(account_id: str, bot_id: str, channel_id: str, at: int) -> dict[str, Any]:
    """The activity row the channel worker writes when it gives up on an event and sends the fallback message."""
    inbox_id = f"inb_t{next(_SEQ)}"
    return {
        "id": f"act_t{next(_SEQ)}",
        "account_id": account_id,
        "kind": "dead_letter",
        "bot_id": bot_id,
        "channel_id": channel_id,
        "summary": "A Messenger customer got the fallback message after 5 failed attempts",
        "detail": '{"platform":"messenger","attempts":5}',
        "dedupe_key": f"dead_letter:{inbox_id}",
        "created_at": at,
    }


def conversation(
    settings: Settings, account_id: str, bot_id: str, external_id: str, turns: Iterable[int], platform: str = "relay"
) -> str:
    """A contact with one customer message and one bot reply at each instant of `turns`; its id."""
    contact_id = f"con_t{next(_SEQ)}"
    instants = list(turns)
    insert(
        settings,
        "contacts",
        [
            {
                "id": contact_id,
                "account_id": account_id,
                "bot_id": bot_id,
                "platform": platform,
                "external_id": external_id,
                "message_count": 2 * len(instants),
                "created_at": instants[0],
                "last_message_at": instants[-1],
            }
        ],
    )
    messages = []
    for turn, at in enumerate(instants):
        for offset, role in enumerate(("user", "assistant")):
            messages.append(
                {
                    "id": f"msg_t{next(_SEQ)}",
                    "account_id": account_id,
                    "bot_id": bot_id,
                    "contact_id": contact_id,
                    "seq": 2 * turn + offset + 1,
                    "role": role,
                    "content": "hello" if role == "user" else "hi there",
                    "tokens": 2,
                    "created_at": at,
                }
            )
    insert(settings, "messages", messages)
    return contact_id


def feedback_row(account_id: str, bot_id: str, contact_id: str, rating: str, at: int) -> dict[str, Any]:
    return {
        "id": f"fbk_t{next(_SEQ)}",
        "account_id": account_id,
        "bot_id": bot_id,
        "contact_id": contact_id,
        "message_id": f"msg_rated{next(_SEQ)}",
        "rating": rating,
        "created_at": at,
        "updated_at": at,
    }


def inbox_row(channel_id: str, state: str, at: int) -> dict[str, Any]:
    """An inbox event finished in `state` at `at` (dead: retried to the end, the fallback message sent)."""
    return {
        "id": f"inb_t{next(_SEQ)}",
        "channel_id": channel_id,
        "event_key": f"mid.t{next(_SEQ)}",
        "kind": "message",
        "customer_id": "psid-1",
        "platform_ts": at,
        "arrival": at,
        "event": "{}",
        "state": state,
        "attempts": 5,
        "next_attempt_at": at,
        "received_at": at,
        "updated_at": at,
    }
