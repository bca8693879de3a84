"""Erasing an end customer's data: what a data deletion request (Meta's callback, or an operator) removes.

Removed: the contact rows, their conversation messages with the photos kept with them (by the foreign key's
cascade), ratings of the bot's replies to them, people's reply keys (cascade), per-conversation state,
notifications about them (a handoff's may summarise what they wanted), and unrouted deliveries that mention the id
(activity feed rows, which hold no personal data, lose their link to the contact). Inbox rows are scrubbed rather
than deleted: their event key (the platform message id, not a personal datum) stays so that a late retry of an old
delivery is still recognised as a duplicate and never answered again. Usage records keep their token and cost
figures for billing but lose the link to the contact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.clock import Clock
from core.storage.db import Database, Transaction
from core.storage.rollups import forget_messages


@dataclass(frozen=True, slots=True)
class ErasureReport:
    contacts: int
    messages: int
    inbox_events: int
    unrouted: int

    @property
    def total(self) -> int:
        return self.contacts + self.messages + self.inbox_events + self.unrouted


class Eraser:
    def __init__(self, db: Database, clock: Clock, *, forget: Callable[[Sequence[str]], None] | None = None) -> None:
        self._db = db
        self._clock = clock
        # Told the erased contacts' ids once the erasure is committed: what this process remembers of their
        # conversations goes too (ConversationStore.forget).
        self._forget = forget

    async def erase_customer(
        self,
        external_id: str,
        *,
        account_id: str | None = None,
        platform: str | None = None,
        meta_only: bool = False,
    ) -> ErasureReport:
        """Everything stored about the customer `external_id` (PSID, IGSID, wa_id or relay user id).

        With `account_id`, only within that account (an owner erasing one of their customers); with `platform`
        too, only on that platform: the same id on another platform is another person (a relay user id may
        equal a WhatsApp number), whose contacts, pauses and inbox events stay.
        """
        async with self._db.transaction() as tx:
            contact_ids = await _contacts(tx, external_id, account_id, platform, meta_only)
            messages = 0
            for contact_id in contact_ids:
                await forget_messages(tx, contact_id)  # out of the hourly rollups first, in the same commit
                messages += await tx.execute("DELETE FROM messages WHERE contact_id = ?", (contact_id,))
                await tx.execute("UPDATE usage_records SET contact_id = NULL WHERE contact_id = ?", (contact_id,))
                # Ratings may carry the customer's own words; feed rows only lose their link to the person.
                await tx.execute("DELETE FROM feedback WHERE contact_id = ?", (contact_id,))
                await tx.execute("UPDATE activity SET contact_id = NULL WHERE contact_id = ?", (contact_id,))
                # A handoff's notification may carry the model's summary of what the customer wanted.
                await tx.execute(
                    "DELETE FROM notifications WHERE body LIKE ? ESCAPE '!'",
                    (f'%"contact_id":"{_like_literal(contact_id)}"%',),
                )
                await tx.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))
            channel_filter, params = _channels(account_id, platform)
            inbox = await tx.execute(
                "UPDATE inbox SET event = '{}', customer_id = NULL, reply_text = NULL, last_error = NULL,"
                f" state = CASE WHEN state = 'pending' THEN 'erased' ELSE state END, updated_at = ?"
                f" WHERE customer_id = ?{channel_filter}",
                (self._clock.now_ms(), external_id, *params),
            )
            await tx.execute(
                f"DELETE FROM conversation_state WHERE customer_id = ?{channel_filter}", (external_id, *params)
            )
            unrouted = 0
            if account_id is None:  # unrouted deliveries belong to no account: only a platform-wide erasure
                unrouted = await tx.execute(
                    "DELETE FROM webhook_unrouted WHERE event LIKE ? ESCAPE '!'",
                    # As a whole JSON string value only: "1" must not match every event containing a 1.
                    (f'%"{_like_literal(external_id)}"%',),
                )
        if self._forget is not None:
            self._forget(contact_ids)
        return ErasureReport(len(contact_ids), messages, inbox, unrouted)


async def _contacts(
    tx: Transaction, external_id: str, account_id: str | None, platform: str | None, meta_only: bool
) -> list[str]:
    clauses, params = ["external_id = ?"], [external_id]
    if meta_only:
        # A Meta user id says nothing about a business's own relay user ids, which merely could look the same.
        clauses.append("platform IN ('messenger', 'instagram', 'whatsapp')")
    scope, scope_params = _scope(account_id, platform)
    # Locked for deletion first: a turn appending to one of these conversations waits for the erasure (and then
    # finds the conversation gone) instead of adding a message the erasure's DELETE would trip over.
    sql = f"SELECT id FROM contacts WHERE {' AND '.join(clauses + scope)}" + tx.dialect.locked("delete")
    rows = await tx.fetch_all(sql, (*params, *scope_params))
    return [row["id"] for row in rows]


def _channels(account_id: str | None, platform: str | None) -> tuple[str, tuple[str, ...]]:
    """Which channels' inbox events and pauses go: the account's (on `platform` only, when given), or all."""
    scope, params = _scope(account_id, platform)
    if not scope:
        return "", ()
    return f" AND channel_id IN (SELECT id FROM channels WHERE {' AND '.join(scope)})", params


def _scope(account_id: str | None, platform: str | None) -> tuple[list[str], tuple[str, ...]]:
    given = [(name, value) for name, value in (("account_id", account_id), ("platform", platform)) if value is not None]
    return [f"{name} = ?" for name, _ in given], tuple(value for _, value in given)


def _like_literal(value: str) -> str:
    """`value` matched literally by LIKE ... ESCAPE '!' (both SQLite and PostgreSQL)."""
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")
