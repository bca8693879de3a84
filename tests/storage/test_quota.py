"""The quota ledger itself, against a real SQLite file: periods, credits, overage band, lock, sweeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import AccountLocked, QuotaExceeded
from core.models import PlanSettings
from core.storage.accounts import AccountStore
from core.storage.credits import CreditLedger
from core.storage.db import Database
from core.storage.migrations import apply_migrations
from core.storage.plans import PlanStore
from core.storage.quota import QuotaService
from tests.support.database import open_database, scratch_url


@dataclass
class ManualClock:
    now: int

    def now_ms(self) -> int:
        return self.now


def at(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


@dataclass
class World:
    db: Database
    clock: ManualClock
    quota: QuotaService
    credits: CreditLedger
    accounts: AccountStore
    account_id: str


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_database(scratch_url(tmp_path, "q.db")) as db:
        await apply_migrations(db)
        clock = ManualClock(at(2026, 11, 25, 12))
        plan = await PlanStore(db, clock).create(
            PlanSettings(
                name="p",
                monthly_token_limit=1000,
                models=["gpt-4o-mini"],
                default_model="gpt-4o-mini",
                overage_percent=10,
            )
        )
        accounts = AccountStore(db, clock)
        account = await accounts.create("a", plan.id, None)
        yield World(
            db, clock, QuotaService(db, clock, reservation_ttl_ms=60_000), CreditLedger(db, clock), accounts, account.id
        )


async def charge(w: World, tokens: int, used: int | None = None) -> None:
    reservation = await w.quota.reserve(w.account_id, tokens, request_id=None)
    async with w.db.transaction() as tx:
        await w.quota.settle(tx, reservation, tokens if used is None else used)


async def test_allowance_is_plan_plus_overage_band(world: World) -> None:
    snap = await world.quota.snapshot(world.account_id)
    assert snap.limit_tokens == 1100  # 1000 + 10 %
    await charge(world, 1100)
    with pytest.raises(QuotaExceeded) as refused:
        await world.quota.reserve(world.account_id, 1, request_id=None)
    assert refused.value.snapshot.remaining_tokens == 0
    # The 100 tokens beyond the plan, with no credits to draw on, are recorded as billable overage.
    [entry] = await world.credits.list(world.account_id)
    assert (entry.kind, entry.tokens) == ("overage", 100)


async def test_credits_are_drawn_after_the_monthly_allowance(world: World) -> None:
    await world.credits.add(world.account_id, "purchase", 500, "top-up", "ops")
    assert (await world.quota.snapshot(world.account_id)).limit_tokens == 1600
    await charge(world, 1200)
    kinds = [(e.kind, e.tokens) for e in await world.credits.list(world.account_id)]
    assert kinds == [("purchase", 500), ("usage", -200)]
    snap = await world.quota.snapshot(world.account_id)
    assert snap.credit_balance == 300
    assert snap.limit_tokens == 1600  # drawn credits still count in this month's allowance
    assert snap.remaining_tokens == 400


async def test_a_new_month_resets_usage_but_keeps_credits(world: World) -> None:
    await world.credits.add(world.account_id, "grant", 300, None, "ops")
    await charge(world, 1200)  # 200 drawn from credits
    world.clock.now = at(2026, 12, 1, 0, 0, 1)
    snap = await world.quota.snapshot(world.account_id)
    assert snap.used_tokens == 0
    assert snap.credit_balance == 100
    assert snap.limit_tokens == 1000 + 100 + 100
    assert snap.period_end == at(2027, 1, 1)  # December rolls into January


async def test_failed_call_releases_its_reservation(world: World) -> None:
    reservation = await world.quota.reserve(world.account_id, 900, request_id=None)
    with pytest.raises(QuotaExceeded):
        await world.quota.reserve(world.account_id, 900, request_id=None)
    await world.quota.release(reservation)
    await world.quota.release(reservation)  # twice is harmless
    snap = await world.quota.snapshot(world.account_id)
    assert (snap.used_tokens, snap.reserved_tokens) == (0, 0)


async def test_sweeper_frees_reservations_of_a_crashed_call(world: World) -> None:
    reservation = await world.quota.reserve(world.account_id, 700, request_id="lost")
    assert await world.quota.sweep_expired() == 0
    world.clock.now += 61_000
    assert await world.quota.sweep_expired() == 1
    assert (await world.quota.snapshot(world.account_id)).reserved_tokens == 0
    # A late settle of the swept reservation still charges what was used, once.
    async with world.db.transaction() as tx:
        await world.quota.settle(tx, reservation, 50)
    snap = await world.quota.snapshot(world.account_id)
    assert (snap.used_tokens, snap.reserved_tokens) == (50, 0)


async def test_a_takeover_frees_what_the_abandoned_attempt_held_before_it_expires(world: World) -> None:
    abandoned = await world.quota.reserve(world.account_id, 700, request_id="inb_1")
    other = await world.quota.reserve(world.account_id, 300, request_id="inb_2")
    # The next attempt at inb_1 could not reserve again while the dead one's tokens still counted.
    with pytest.raises(QuotaExceeded):
        await world.quota.reserve(world.account_id, 700, request_id="inb_1")
    assert await world.quota.release_abandoned("acc_other", "inb_1") == 0  # another account's id space
    assert await world.quota.release_abandoned(world.account_id, "inb_1") == 700
    assert await world.quota.release_abandoned(world.account_id, "inb_1") == 0  # nothing left to give back
    assert (await world.quota.snapshot(world.account_id)).reserved_tokens == 300  # inb_2's is not touched
    await world.quota.reserve(world.account_id, 700, request_id="inb_1")
    # Had the abandoned attempt been only stalled and settled after all, it would charge what it used and give
    # nothing back twice (in a worker its reply is fenced off by the lease, so it never gets that far).
    async with world.db.transaction() as tx:
        await world.quota.settle(tx, abandoned, 40)
    snap = await world.quota.snapshot(world.account_id)
    assert (snap.used_tokens, snap.reserved_tokens) == (40, 1000)
    await world.quota.release(other)


async def test_locked_account_is_refused(world: World) -> None:
    await world.accounts.set_locked(world.account_id, True)
    with pytest.raises(AccountLocked):
        await world.quota.reserve(world.account_id, 1, request_id=None)


async def test_concurrent_reservations_fill_the_allowance_exactly(world: World) -> None:
    async def attempt() -> bool:
        try:
            await world.quota.reserve(world.account_id, 30, request_id=None)
        except QuotaExceeded:
            return False
        return True

    granted = await asyncio.gather(*(attempt() for _ in range(100)))
    assert sum(granted) == 1100 // 30
    assert (await world.quota.snapshot(world.account_id)).reserved_tokens == 30 * (1100 // 30)


async def test_negative_adjustment_cannot_eat_the_monthly_allowance(world: World) -> None:
    await world.credits.add(world.account_id, "adjustment", -5000, "chargeback", "ops")
    snap = await world.quota.snapshot(world.account_id)
    assert snap.limit_tokens == 1100
    assert snap.credit_balance == -5000
