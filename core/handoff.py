"""Handing a conversation to a person: the tool the model is offered, and what a handoff does.

A handoff happens when the model calls `hand_off_to_person` (the bot's `handoff_enabled`), when strict knowledge
mode finds nothing (`handoff_on_no_answer`), or when the account's tokens are used up (`handoff_on_quota`). The
customer gets the bot's `handoff_message` (stored as the bot's reply, sent as any reply); in the same commit:
  - a channel conversation is paused without end (reason `handoff`), so nothing the customer sends reaches the
    model until a person resumes it (POST /api/conversations/{contact_id}/resume); the activity feed says so;
  - a relay conversation has no channel to pause (the business's own app decides when to call the relay): the
    activity feed says so and the relay's answer carries `handoff`;
  - the account's endpoint, if it set one, gets a signed `conversation.handoff` notification (core/notifier.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.chat import Tool, ToolParameter
from core.clock import Clock
from core.models import Contact
from core.storage.activity import NewActivity, add_activity
from core.storage.conversation_state import INDEFINITE, ConversationStateStore
from core.storage.db import Transaction
from core.storage.notifications import NotificationStore

HANDOFF_TOOL = Tool(
    "hand_off_to_person",
    "Hand this conversation to a person on the business's team. Use it when the customer asks to speak to a person,"
    " or when you cannot help them with what they need.",
    (ToolParameter("reason", "string", "Why, in a few words, for the team member who takes over.", required=True),),
)
HANDOFF_EVENT = "conversation.handoff"


@dataclass(frozen=True, slots=True)
class Handoff:
    source: str  # model | no_answer | quota
    reason: str | None = None  # the model's words for the team (source model)


class Handoffs:
    def __init__(self, state: ConversationStateStore, notifications: NotificationStore, clock: Clock) -> None:
        self._state = state
        self._notifications = notifications
        self._clock = clock

    async def record(self, tx: Transaction, contact: Contact, channel_id: str | None, handoff: Handoff) -> None:
        """In the commit of the reply that tells the customer: the pause (or, for the relay, the feed entry) and
        the account's notification."""
        if channel_id is not None:
            await self._state.pause_in(
                tx, channel_id, contact.external_id, INDEFINITE, reason="handoff", source=handoff.source
            )
        else:
            entry = NewActivity(
                contact.account_id,
                "handoff",
                f"The bot handed a relay API conversation to a person ({handoff.source})",
                bot_id=contact.bot_id,
                contact_id=contact.id,
                detail={"platform": "relay", "source": handoff.source},
            )
            await add_activity(tx, entry, self._clock.now_ms())
        payload = {
            "bot_id": contact.bot_id,
            "contact_id": contact.id,
            "platform": contact.platform,
            "source": handoff.source,
            "reason": handoff.reason,
            "paused": channel_id is not None,
        }
        await self._notifications.enqueue(tx, contact.account_id, HANDOFF_EVENT, payload)
