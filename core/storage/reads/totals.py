"""Dashboard figures of one account (or of all accounts) over a time range, computed by the database.

Each figure is one aggregate query over an index range (account, time); nothing loads rows to count them in
Python. The p95 latency is the nearest-rank percentile: count the samples, then read the one at that rank with
ORDER BY ... LIMIT 1 OFFSET n, which both SQLite and PostgreSQL run without shipping the other rows. It is read
from the top (descending, offset n - rank): a sort with LIMIT keeps only LIMIT + OFFSET rows, so counting down
holds 5% of the samples instead of 95% (on a year of 1M calls: 0.4 s instead of 2 s on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.storage import rollups
from core.storage.db import Database, Params
from core.storage.rollups import message_source, usage_source

# Nearest-rank percentile reported as p95.
P95 = 95
# Meta lets a business answer freely for 24 hours after the customer's last message: contacts inside that
# window at the end of the range are the "active" ones.
ACTIVE_WINDOW_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class ReportScope:
    """One account's rows (or every account's when `account_id` is None) with start <= created_at < end."""

    account_id: str | None
    start: int
    end: int

    def where(self, time_column: str = "created_at", account_column: str = "account_id") -> tuple[str, Params]:
        """The WHERE condition selecting the scope's rows, and its parameters (column names are ours, never input)."""
        condition = f"{time_column} >= ? AND {time_column} < ?"
        if self.account_id is None:
            return condition, (self.start, self.end)
        return f"{account_column} = ? AND {condition}", (self.account_id, self.start, self.end)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int  # model calls attempted (usage rows with attempts > 0), failed ones included
    quota_refusals: int  # turns refused for quota before any call (attempts = 0): not requests, not errors
    empty_replies: int  # calls that returned no text: the customer got the bot's fallback message
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_nanousd: int
    unpriced_requests: int  # served calls whose model had no price: their cost is not in cost_nanousd
    errors_by_outcome: dict[str, int]
    latency_samples: int
    latency_sum_ms: int
    latency_p95_ms: int | None

    @property
    def errors(self) -> int:
        return sum(self.errors_by_outcome.values())

    @property
    def latency_avg_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency_samples if self.latency_samples else None


@dataclass(frozen=True, slots=True)
class MessageTotals:
    """From the messages table, which holds only turns the model answered (a reply, or the fallback for an empty
    one): refused, dead-lettered, media-noticed and human-handled messages are not in it, nor erased contacts'."""

    inbound: int
    outbound: int
    conversations: int  # distinct contacts with an answered turn in the range
    active_contacts: int  # distinct contacts with an answered turn in the 24 hours before the range's end


@dataclass(frozen=True, slots=True)
class FeedbackTotals:
    up: int
    down: int


# The engine writes a usage row with attempts = 0 for a turn refused for quota before any model call: those are
# counted apart (quota_refusals), never as calls, errors or latency samples. Usage is summed from the hourly rollups
# and the raw rows around them (core/storage/rollups.py: `u` has the figures of a call, or of a rolled-up group).
_USAGE = """SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(refusals), 0) AS refusals,
    COALESCE(SUM(CASE WHEN outcome = 'empty_reply' THEN requests ELSE 0 END), 0) AS empty_replies,
    COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, COALESCE(SUM(cached_tokens), 0) AS cached_tokens,
    COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(reasoning_tokens), 0) AS reasoning_tokens,
    COALESCE(SUM(cost), 0) AS cost, COALESCE(SUM(unpriced), 0) AS unpriced, COALESCE(SUM(samples), 0) AS samples,
    COALESCE(SUM(latency_sum), 0) AS latency_sum
    FROM {source}"""
_ERRORS = """SELECT outcome, SUM(requests) AS n FROM {source} WHERE outcome <> 'ok'
    GROUP BY outcome HAVING SUM(requests) > 0"""
_P95 = """SELECT latency_ms FROM usage_records
    WHERE {where} AND outcome = 'ok' AND attempts > 0 AND latency_ms IS NOT NULL
    ORDER BY latency_ms DESC LIMIT 1 OFFSET ?"""
_MESSAGES = """SELECT COALESCE(SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END), 0) AS inbound,
    COALESCE(SUM(CASE WHEN role = 'assistant' THEN 1 ELSE 0 END), 0) AS outbound,
    COUNT(DISTINCT contact_id) AS conversations FROM messages WHERE {where}"""
_CONTACTS = "SELECT COUNT(DISTINCT contact_id) AS n FROM messages WHERE {where}"
_COUNTS = """SELECT COALESCE(SUM(inbound), 0) AS inbound, COALESCE(SUM(outbound), 0) AS outbound FROM {source}"""
# A contact's last_message_at is its newest message's time (core/storage/conversations.py), and an erasure deletes
# the contact with its messages: for a range that runs to now, the contacts with a message in it are those whose
# newest message is in it.
_RECENT_CONTACTS = "SELECT COUNT(*) AS n FROM contacts WHERE {where}"
# Dead letters: events given up on after their retries, the customer sent the bot's fallback message. Counted from
# the activity row written when it happened: inbox rows are purged after days, and erasure rewrites them.
_DEAD_LETTERS = "SELECT COUNT(*) AS n FROM activity WHERE kind = 'dead_letter' AND {where}"
_FEEDBACK = "SELECT rating, COUNT(*) AS n FROM feedback WHERE {where} GROUP BY rating"


class TotalsReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def usage(self, scope: ReportScope, *, percentile: bool = True) -> UsageTotals:
        """The range's usage; without `percentile`, no p95 latency (the one figure read call by call: a month of
        500,000 calls takes about 250 ms on SQLite)."""
        source, values = usage_source(scope.account_id, scope.start, scope.end, await rollups.through(self._db))
        row = await self._db.fetch_one(_USAGE.format(source=source), values)
        assert row is not None  # an aggregate without GROUP BY always answers one row
        errors = await self._db.fetch_all(_ERRORS.format(source=source), values)
        where, params = scope.where()
        samples = int(row["samples"])
        p95 = None
        if samples and percentile:
            rank = -(-samples * P95 // 100)  # nearest rank: ceil(0.95 n), 1-based
            found = await self._db.fetch_one(_P95.format(where=where), (*params, samples - rank))
            p95 = None if found is None else int(found["latency_ms"])
        return UsageTotals(
            requests=int(row["requests"]),
            quota_refusals=int(row["refusals"]),
            empty_replies=int(row["empty_replies"]),
            prompt_tokens=int(row["prompt_tokens"]),
            cached_tokens=int(row["cached_tokens"]),
            completion_tokens=int(row["completion_tokens"]),
            reasoning_tokens=int(row["reasoning_tokens"]),
            cost_nanousd=int(row["cost"]),
            unpriced_requests=int(row["unpriced"]),
            errors_by_outcome={r["outcome"]: int(r["n"]) for r in errors},
            latency_samples=samples,
            latency_sum_ms=int(row["latency_sum"]),
            latency_p95_ms=p95,
        )

    async def messages(self, scope: ReportScope, *, now_ms: int | None = None) -> MessageTotals:
        """The range's messages; when it runs to `now_ms` (or later), from the hourly rollups and the contacts'
        newest messages, else counted message by message."""
        if now_ms is not None and scope.end >= now_ms:
            return await self._recent_messages(scope)
        where, params = scope.where()
        row = await self._db.fetch_one(_MESSAGES.format(where=where), params)
        assert row is not None
        window = ReportScope(scope.account_id, max(scope.start, scope.end - ACTIVE_WINDOW_MS), scope.end)
        where, params = window.where()
        active = await self._db.fetch_one(_CONTACTS.format(where=where), params)
        assert active is not None
        return MessageTotals(int(row["inbound"]), int(row["outbound"]), int(row["conversations"]), int(active["n"]))

    async def _recent_messages(self, scope: ReportScope) -> MessageTotals:
        source, values = message_source(scope.account_id, scope.start, scope.end, await rollups.through(self._db))
        counts = await self._db.fetch_one(_COUNTS.format(source=source), values)
        assert counts is not None
        # The range's end is now: a contact whose newest message came since (after the end) had one in the range too,
        # or is new this instant; counted either way.
        mine = "" if scope.account_id is None else "account_id = ? AND "
        account: Params = () if scope.account_id is None else (scope.account_id,)
        contacts = []
        for since in (scope.start, max(scope.start, scope.end - ACTIVE_WINDOW_MS)):
            row = await self._db.fetch_one(
                _RECENT_CONTACTS.format(where=f"{mine}last_message_at >= ?"), (*account, since)
            )
            contacts.append(int(row["n"]) if row else 0)
        return MessageTotals(int(counts["inbound"]), int(counts["outbound"]), contacts[0], contacts[1])

    async def dead_letters(self, scope: ReportScope) -> int:
        """Channel events given up on in the range and answered with the bot's fallback message."""
        where, params = scope.where()
        row = await self._db.fetch_one(_DEAD_LETTERS.format(where=where), params)
        return int(row["n"]) if row else 0

    async def feedback(self, scope: ReportScope) -> FeedbackTotals:
        where, params = scope.where()
        counts = {r["rating"]: int(r["n"]) for r in await self._db.fetch_all(_FEEDBACK.format(where=where), params)}
        return FeedbackTotals(up=counts.get("up", 0), down=counts.get("down", 0))
