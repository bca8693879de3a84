"""Token quota: reserve before the LLM call, settle to the API's usage after, release on failure.

The allowance of a calendar month (UTC) is the plan's monthly tokens, plus the account's credit tokens, plus the
plan's overage band (a percentage of the monthly tokens). Tokens are consumed in that order: the monthly
allowance, then credits (drawn from the balance as a `usage` ledger entry), then the band (recorded as an
`overage` ledger entry for billing). A reservation is one conditional UPDATE on the account's single quota row:
it succeeds only if used + reserved + wanted stays within the allowance, so concurrent callers can never push
usage past the limit, whatever their interleaving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.clock import Clock, month_bounds
from core.errors import AccountLocked, NotFound, QuotaExceeded
from core.ids import new_id
from core.models import QuotaSnapshot
from core.storage.activity import QUOTA_THRESHOLDS, record_quota_crossings, record_quota_warning
from core.storage.credits import append_entry
from core.storage.db import Database, Row, Transaction

_ROLLOVER = """UPDATE quota_state
    SET period_start = ?, used_tokens = 0, credits_drawn = 0, overage_tokens = 0, updated_at = ?
    WHERE account_id = ? AND period_start < ?"""

_STATE_COLUMNS = "period_start, used_tokens, reserved_tokens, credits_drawn, credit_balance"

_TERMS = f"""SELECT a.locked, p.monthly_token_limit, p.overage_percent, {_STATE_COLUMNS}{{held}}
    FROM accounts a JOIN plans p ON p.id = a.plan_id JOIN quota_state q ON q.account_id = a.id WHERE a.id = ?"""
# With the terms, the tokens a reservation holds (NULL once it is gone), its row locked for its delete.
_HELD = ", (SELECT r.tokens FROM quota_reservations r WHERE r.id = ?{lock}) AS held"

# Positive credit balance only: an operator's negative adjustment must not eat into the monthly allowance.
_AVAILABLE_CREDITS = "credits_drawn + CASE WHEN credit_balance > 0 THEN credit_balance ELSE 0 END"

_RESERVE = f"""UPDATE quota_state SET reserved_tokens = reserved_tokens + ?, updated_at = ?
    WHERE account_id = ? AND used_tokens + reserved_tokens + ? <= ? + {_AVAILABLE_CREDITS}
    RETURNING {_STATE_COLUMNS}"""

# The common case in one statement: the account unlocked, its quota in the current month, the tokens within its
# plan's ceiling (monthly limit and overage band, computed as _PlanTerms does) and its credits. Anything else
# (locked, a month to roll over, refused) is sorted out by the steps after it, in the same transaction.
_RESERVE_AT_ONCE = """UPDATE quota_state AS q SET reserved_tokens = q.reserved_tokens + ?, updated_at = ?
    FROM accounts a JOIN plans p ON p.id = a.plan_id
    WHERE q.account_id = ? AND a.id = q.account_id AND a.locked = 0 AND q.period_start >= ?
    AND q.used_tokens + q.reserved_tokens + ? <= p.monthly_token_limit
        + p.monthly_token_limit * p.overage_percent / 100 + q.credits_drawn
        + CASE WHEN q.credit_balance > 0 THEN q.credit_balance ELSE 0 END
    RETURNING reserved_tokens"""

_SETTLE = """UPDATE quota_state SET used_tokens = used_tokens + ?, reserved_tokens = reserved_tokens - ?,
    credits_drawn = credits_drawn + ?, credit_balance = credit_balance - ?, overage_tokens = overage_tokens + ?,
    updated_at = ? WHERE account_id = ?"""


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
        async def read(tx: Transaction) -> QuotaSnapshot:
            terms, state = await self._prepare(tx, account_id)
            return _snapshot(terms, state)

        return await self._db.run(read)

    async def reserve(
        self,
        account_id: str,
        tokens: int,
        *,
        request_id: str | None,
        reservation_id: str | None = None,
        first: Callable[[Transaction], Awaitable[None]] | None = None,
    ) -> Reservation:
        """Hold `tokens` of the allowance or raise QuotaExceeded / AccountLocked; never partially.

        A caller that may be cancelled passes its own `reservation_id`, so it can release the reservation even
        when the cancellation lands after the commit but before this method returns. `first`: the caller's work
        that commits with the reservation, before it (a turn's new contact, its conversation's rate); what it
        raises undoes both. It runs on the database's terms (`Database.run`): its transaction's statements only.
        """
        now = self._clock.now_ms()
        reservation = Reservation(reservation_id or new_id("rsv"), account_id, tokens)

        async def hold(tx: Transaction) -> QuotaSnapshot | None:
            """None once reserved; the snapshot that refused it otherwise."""
            if first is not None:
                await first(tx)
            held = await tx.fetch_one(_RESERVE_AT_ONCE, (tokens, now, account_id, month_bounds(now)[0], tokens))
            if held is None:  # locked, a new month, or refused: read the terms and say which
                terms, state = await self._prepare(tx, account_id)
                if terms.locked:
                    raise AccountLocked(account_id)
                if await tx.fetch_one(_RESERVE, (tokens, now, account_id, tokens, terms.ceiling)) is None:
                    # Not raised in here: the feed's "used up" warning must commit with the refusal (once a period).
                    refused = _snapshot(terms, state)
                    await _warn_refused(tx, account_id, refused, now)
                    return refused
            await tx.defer(  # with the commit
                "INSERT INTO quota_reservations (id, account_id, tokens, request_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (reservation.id, account_id, tokens, request_id, now, now + self._ttl_ms),
            )
            return None

        # Need not be durable (Database.run): a crash that loses this commit stops the turn before its charge, a
        # reservation that outlives a crash is only ever given back (the sweeper, release_abandoned), never
        # charged, and what `first` stored comes again with the next attempt. The charge's commit, which is
        # synced, makes it durable with itself. (On SQLite it is then not synced; on PostgreSQL it is.)
        refused = await self._db.run(hold, durable=False, small=True)
        if refused is not None:
            raise QuotaExceeded(refused, tokens)
        return reservation

    async def settle(self, tx: Transaction, reservation: Reservation, used: int) -> QuotaSnapshot:
        """Charge `used` tokens (the API's figure) and drop the reservation, inside the caller's transaction."""
        now = self._clock.now_ms()
        used = max(0, used)  # the LLM client refuses negative usage; this keeps the ledger safe regardless
        # Charged from what is read here: the account's quota row stays locked until the commit, so two settles of
        # one account (two processes) draw credits one after the other, never both from the same balance. The
        # reservation's row is read and locked in the same statement (one round trip): what it holds is given back
        # once, here or by the sweeper, whose delete waits for this commit. Zero when the sweeper already released
        # it: the tokens are then charged but nothing is given back twice.
        terms, state = await self._prepare(tx, reservation.account_id, lock=True, reservation_id=reservation.id)
        held = 0 if state["held"] is None else int(state["held"])
        if state["held"] is not None:
            await tx.defer("DELETE FROM quota_reservations WHERE id = ?", (reservation.id,))
        before, after = int(state["used_tokens"]), int(state["used_tokens"]) + used
        beyond_monthly = max(0, after - terms.monthly) - max(0, before - terms.monthly)
        draw = min(beyond_monthly, max(0, int(state["credit_balance"])))
        overage = beyond_monthly - draw
        # The row is ours since the read above, so what the update leaves is known without waiting for it: it
        # travels with the commit, and the row is locked for one round trip less.
        await tx.defer(_SETTLE, (used, held, draw, draw, overage, now, reservation.account_id))
        settled = {
            **state,
            "used_tokens": after,
            "reserved_tokens": int(state["reserved_tokens"]) - held,
            "credits_drawn": int(state["credits_drawn"]) + draw,
            "credit_balance": int(state["credit_balance"]) - draw,
        }
        for kind, tokens in (("usage", -draw), ("overage", overage)):
            if tokens:
                await append_entry(tx, reservation.account_id, kind, tokens, None, "quota", now)
        snapshot = _snapshot(terms, settled)
        await record_quota_crossings(
            tx, reservation.account_id, snapshot.period_start, before, after, snapshot.limit_tokens, now
        )
        return snapshot

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose call failed: nothing is charged."""
        await self._db.run(lambda tx: _drop_reservation(tx, reservation), small=True)

    async def release_abandoned(self, account_id: str, request_id: str) -> int:
        """Give back what an earlier attempt at `request_id` still holds: a worker that lost its lease (killed, or
        stalled past it) leaves its reservation behind, and the attempt taking over would otherwise count the turn
        twice until the sweeper frees it. Returns the tokens given back.

        The price of acting before the expiry: an attempt that was only stalled may still be calling the model,
        now without a reservation of its own. It cannot be charged (its reply is fenced off by the lease and its
        transaction rolls back), so the provider's bill for that one call is the gateway's, as it was before;
        what it cannot do is push the account past its limit, since nothing is settled for it."""

        async def drop(tx: Transaction) -> int:
            released = await _drop_reservations(tx, "account_id = ? AND request_id = ?", (account_id, request_id))
            return sum(r.tokens for r in released)

        return await self._db.run(drop)

    async def sweep_expired(self) -> int:
        """Release reservations left by a process that died mid-call; returns how many."""
        now = self._clock.now_ms()

        async def sweep(tx: Transaction) -> int:
            return len(await _drop_reservations(tx, "expires_at <= ?", (now,)))

        return await self._db.run(sweep)

    async def _prepare(
        self, tx: Transaction, account_id: str, *, lock: bool = False, reservation_id: str | None = None
    ) -> tuple[_PlanTerms, Row]:
        """Roll the account into the current month if needed; its plan terms and quota state (with `lock`, the
        quota row stays locked until the transaction ends; with `reservation_id`, the state's `held` is what that
        reservation holds, its row locked too)."""
        now = self._clock.now_ms()
        start, _ = month_bounds(now)
        held = "" if reservation_id is None else _HELD.format(lock=tx.dialect.locked("delete") if lock else "")
        terms = _TERMS.format(held=held) + (tx.dialect.locked(of="q") if lock else "")
        params = (account_id,) if reservation_id is None else (reservation_id, account_id)
        row = await tx.fetch_one(terms, params)
        if row is not None and int(row["period_start"]) < start:
            # The first use in a new month (rare): roll over, then read again. Conditional, so two callers rolling
            # over at once (two processes) roll it over once; with `lock` the row is already ours.
            await tx.execute(_ROLLOVER, (start, now, account_id, start))
            row = await tx.fetch_one(terms, params)
        if row is None:
            raise NotFound("account")
        monthly = int(row["monthly_token_limit"])
        return _PlanTerms(bool(row["locked"]), monthly, monthly * int(row["overage_percent"]) // 100), row


async def _delete_reservation(tx: Transaction, reservation_id: str) -> int:
    row = await tx.fetch_one("DELETE FROM quota_reservations WHERE id = ? RETURNING tokens", (reservation_id,))
    return 0 if row is None else int(row["tokens"])


async def _drop_reservations(tx: Transaction, where: str, params: tuple[object, ...]) -> list[Reservation]:
    """Drop every reservation matching `where` (a fixed condition of ours, never input) and give its tokens back."""
    rows = await tx.fetch_all(f"SELECT id, account_id, tokens FROM quota_reservations WHERE {where}", params)
    released = [Reservation(row["id"], row["account_id"], int(row["tokens"])) for row in rows]
    for reservation in released:
        await _drop_reservation(tx, reservation)
    return released


async def _drop_reservation(tx: Transaction, reservation: Reservation) -> None:
    """Delete the reservation row and give its tokens back (nothing if the sweeper already took it)."""
    held = await _delete_reservation(tx, reservation.id)
    if held:
        await tx.execute(
            "UPDATE quota_state SET reserved_tokens = reserved_tokens - ? WHERE account_id = ?",
            (held, reservation.account_id),
        )


async def _warn_refused(tx: Transaction, account_id: str, refused: QuotaSnapshot, now: int) -> None:
    """A refusal near the end of the allowance is the moment it is used up (a settlement rarely reaches 100%,
    because the last message that would is refused). Far from it, a refusal is one oversized message: no warning."""
    taken = refused.used_tokens + refused.reserved_tokens
    if taken * 100 >= QUOTA_THRESHOLDS[0] * refused.limit_tokens:
        await record_quota_warning(tx, account_id, refused.period_start, 100, taken, refused.limit_tokens, now)


def _snapshot(terms: _PlanTerms, state: Row) -> QuotaSnapshot:
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
        monthly_tokens=terms.monthly,
        overage_band_tokens=terms.band,
        credit_tokens=credits,
    )
