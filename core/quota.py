"""Token quota: reserve before the LLM call, settle to the API's usage after, release on failure.

The allowance of a calendar month (UTC) is the plan's monthly tokens, plus the account's credit tokens, plus the
plan's overage band (a percentage of the monthly tokens). Tokens are consumed in that order: the monthly
allowance, then credits (drawn from the balance as a `usage` ledger entry), then the band (recorded as an
`overage` ledger entry for billing). A reservation is one conditional UPDATE on the account's single quota row:
it succeeds only if used + reserved + wanted stays within the allowance, so concurrent callers can never push
usage past the limit, whatever their interleaving.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock, month_bounds
from core.errors import AccountLocked, NotFound, QuotaExceeded
from core.ids import new_id
from core.models import QuotaSnapshot
from core.storage.credits import append_entry
from core.storage.db import Database, Row, Transaction

_ROLLOVER = """UPDATE quota_state
    SET period_start = ?, used_tokens = 0, credits_drawn = 0, overage_tokens = 0, updated_at = ?
    WHERE account_id = ? AND period_start < ?"""

_PLAN = """SELECT a.locked, p.monthly_token_limit, p.overage_percent
    FROM accounts a JOIN plans p ON p.id = a.plan_id WHERE a.id = ?"""

_STATE = """SELECT period_start, used_tokens, reserved_tokens, credits_drawn, credit_balance, overage_tokens
    FROM quota_state WHERE account_id = ?"""

# Positive credit balance only: an operator's negative adjustment must not eat into the monthly allowance.
_AVAILABLE_CREDITS = "credits_drawn + CASE WHEN credit_balance > 0 THEN credit_balance ELSE 0 END"

_RESERVE = f"""UPDATE quota_state SET reserved_tokens = reserved_tokens + ?, updated_at = ?
    WHERE account_id = ? AND used_tokens + reserved_tokens + ? <= ? + {_AVAILABLE_CREDITS}
    RETURNING period_start"""


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    account_id: str
    tokens: int


@dataclass(frozen=True, slots=True)
class _PlanTerms:
    locked: bool
    monthly: int
    band: int

    @property
    def ceiling(self) -> int:
        return self.monthly + self.band


class QuotaService:
    def __init__(self, db: Database, clock: Clock, *, reservation_ttl_ms: int) -> None:
        self._db = db
        self._clock = clock
        self._ttl_ms = reservation_ttl_ms

    async def snapshot(self, account_id: str) -> QuotaSnapshot:
        async with self._db.transaction() as tx:
            terms = await self._prepare(tx, account_id)
            return await _snapshot(tx, account_id, terms)

    async def reserve(self, account_id: str, tokens: int, *, request_id: str | None) -> Reservation:
        """Hold `tokens` of the allowance or raise QuotaExceeded / AccountLocked; never partially."""
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            terms = await self._prepare(tx, account_id)
            if terms.locked:
                raise AccountLocked(account_id)
            row = await tx.fetch_one(_RESERVE, (tokens, now, account_id, tokens, terms.ceiling))
            if row is None:
                raise QuotaExceeded(await _snapshot(tx, account_id, terms), tokens)
            reservation = Reservation(new_id("rsv"), account_id, tokens)
            await tx.execute(
                "INSERT INTO quota_reservations (id, account_id, tokens, request_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (reservation.id, account_id, tokens, request_id, now, now + self._ttl_ms),
            )
            return reservation

    async def settle(self, tx: Transaction, reservation: Reservation, used: int) -> QuotaSnapshot:
        """Charge `used` tokens (the API's figure) and drop the reservation, inside the caller's transaction."""
        now = self._clock.now_ms()
        await _drop_reservation(tx, reservation)
        terms = await self._prepare(tx, reservation.account_id)
        state = await _state(tx, reservation.account_id)
        before, after = int(state["used_tokens"]), int(state["used_tokens"]) + used
        beyond_monthly = max(0, after - terms.monthly) - max(0, before - terms.monthly)
        draw = min(beyond_monthly, max(0, int(state["credit_balance"])))
        overage = beyond_monthly - draw
        await tx.execute(
            """UPDATE quota_state SET used_tokens = used_tokens + ?,
                credits_drawn = credits_drawn + ?, credit_balance = credit_balance - ?,
                overage_tokens = overage_tokens + ?, updated_at = ? WHERE account_id = ?""",
            (used, draw, draw, overage, now, reservation.account_id),
        )
        for kind, tokens in (("usage", -draw), ("overage", overage)):
            if tokens:
                await append_entry(tx, reservation.account_id, kind, tokens, None, "quota", now)
        return await _snapshot(tx, reservation.account_id, terms)

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose call failed: nothing is charged."""
        async with self._db.transaction() as tx:
            await _drop_reservation(tx, reservation)

    async def sweep_expired(self) -> int:
        """Release reservations left by a process that died mid-call; returns how many."""
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            rows = await tx.fetch_all(
                "SELECT id, account_id, tokens FROM quota_reservations WHERE expires_at <= ?", (now,)
            )
            for row in rows:
                await _drop_reservation(tx, Reservation(row["id"], row["account_id"], int(row["tokens"])))
            return len(rows)

    async def _prepare(self, tx: Transaction, account_id: str) -> _PlanTerms:
        row = await tx.fetch_one(_PLAN, (account_id,))
        if row is None:
            raise NotFound("account")
        start, _ = month_bounds(self._clock.now_ms())
        await tx.execute(_ROLLOVER, (start, self._clock.now_ms(), account_id, start))
        monthly = int(row["monthly_token_limit"])
        return _PlanTerms(bool(row["locked"]), monthly, monthly * int(row["overage_percent"]) // 100)


async def _drop_reservation(tx: Transaction, reservation: Reservation) -> int:
    """Delete the reservation row and return the tokens it held (0 if the sweeper already took it)."""
    deleted = await tx.execute("DELETE FROM quota_reservations WHERE id = ?", (reservation.id,))
    if not deleted:
        return 0
    await tx.execute(
        "UPDATE quota_state SET reserved_tokens = reserved_tokens - ? WHERE account_id = ?",
        (reservation.tokens, reservation.account_id),
    )
    return reservation.tokens


async def _state(tx: Transaction, account_id: str) -> Row:
    row = await tx.fetch_one(_STATE, (account_id,))
    if row is None:
        raise NotFound("account")
    return row


async def _snapshot(tx: Transaction, account_id: str, terms: _PlanTerms) -> QuotaSnapshot:
    state = await _state(tx, account_id)
    start = int(state["period_start"])
    _, end = month_bounds(start)
    credits = int(state["credits_drawn"]) + max(0, int(state["credit_balance"]))
    return QuotaSnapshot(
        limit_tokens=terms.ceiling + credits,
        used_tokens=int(state["used_tokens"]),
        reserved_tokens=int(state["reserved_tokens"]),
        period_start=start,
        period_end=end,
        credit_balance=int(state["credit_balance"]),
    )
