"""Store functions under concurrent writers on separate connections, as several processes on one PostgreSQL run them.

On SQLite every write transaction runs alone (BEGIN IMMEDIATE); these tests run there too, where they pass for that
reason. On PostgreSQL (READ COMMITTED, TEST_DATABASE=postgresql) they are what shows that the claim, the charge and
the numbering are right without that: each writer has its own database handle, so its own connections.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from core.clock import SystemClock
from core.errors import NotFound, QuotaExceeded
from core.models import BotSettings, PlanSettings
from core.storage.accounts import AccountStore
from core.storage.bots import BotStore
from core.storage.credits import CreditLedger
from core.storage.db import Database
from core.storage.erasure import Eraser
from core.storage.feedback import FeedbackStore, Rating
from core.storage.inbox_queue import InboxItem, InboxQueue
from core.storage.migrations import apply_migrations
from core.storage.plans import PlanStore
from core.storage.quota import QuotaService
from gateway.settings import Settings
from tests.support import database
from tests.support.channel_traffic import PHONE_ID
from tests.support.harness import auth, connect_channel, provision

WRITERS = 3


@dataclass(frozen=True)
class Shared:
    url: str
    handles: list[Database]


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[Shared]:
    """Three database handles on one new database, as three processes would have."""
    url = database.scratch_url(tmp_path, "shared.db")
    async with AsyncExitStack() as stack:
        dbs = [await stack.enter_async_context(database.open_database(url)) for _ in range(WRITERS)]
        await apply_migrations(dbs[0])
        yield Shared(url, dbs)


async def test_three_claimers_never_hold_two_events_of_one_conversation(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    channel = await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    # Six conversations of eight events each; in each, pairs share the platform timestamp AND the arrival (two
    # processes stored them in the same microsecond), so only the id orders them.
    rows = [
        {
            "id": f"evt_{c}_{n}",
            "channel_id": channel["id"],
            "event_key": f"k{c}.{n}",
            "kind": "message",
            "customer_id": f"customer-{c}",
            "platform_ts": 1_000 + n // 2,
            "arrival": 5_000 + n // 2,
            "event": "{}",
            "state": "pending",
            "next_attempt_at": 0,
            "received_at": 0,
            "updated_at": 0,
        }
        for c in range(6)
        for n in range(8)
    ]
    random.Random(5).shuffle(rows)
    database.insert(settings, "inbox", rows)
    held: dict[str, str] = {}  # customer -> the event a claimer holds now
    handled: dict[str, list[str]] = {}

    async def claimer(name: str) -> None:
        async with database.open_database(settings) as db:
            queue = InboxQueue(db, SystemClock(), lease_ms=60_000)
            idle = 0
            while idle < 20:
                items = await queue.claim(name, 4)
                idle = 0 if items else idle + 1
                for item in items:
                    customer = item.customer_id or ""
                    assert customer not in held, f"{name} got {item.id} while {held.get(customer)} is held"
                    held[customer] = item.id
                await asyncio.gather(*(work(queue, item) for item in items))
                await asyncio.sleep(0.002)

    async def work(queue: InboxQueue, item: InboxItem) -> None:
        await asyncio.sleep(random.random() / 200)
        handled.setdefault(item.customer_id or "", []).append(item.id)
        del held[item.customer_id or ""]
        await queue.finish(item, "done")

    await asyncio.gather(*(claimer(f"worker-{n}") for n in range(WRITERS)))
    expected = {f"customer-{c}": [f"evt_{c}_{n}" for n in range(8)] for c in range(6)}
    assert handled == expected  # every event once, each conversation in (platform_ts, arrival, id) order


async def test_concurrent_settles_draw_each_credit_once(shared: Shared) -> None:
    handles = shared.handles
    clock = SystemClock()
    plan = await PlanStore(handles[0], clock).create(
        PlanSettings(
            name="p", monthly_token_limit=1000, models=["gpt-4o-mini"], default_model="gpt-4o-mini", overage_percent=10
        )
    )
    account = await AccountStore(handles[0], clock).create("a", plan.id, None)
    await CreditLedger(handles[0], clock).add(account.id, "grant", 300, None, "ops")
    # 1,000 monthly + 300 credits + 100 band = 1,400; 60 charges of 30 ask for 1,800, from three writers at once.
    charged = 0

    async def charges(db: Database) -> None:
        nonlocal charged
        quota = QuotaService(db, clock, reservation_ttl_ms=60_000)
        for _ in range(20):
            try:
                reservation = await quota.reserve(account.id, 30, request_id=None)
            except QuotaExceeded:
                continue
            await db.run(lambda tx, r=reservation: quota.settle(tx, r, 30))
            charged += 30

    await asyncio.gather(*(charges(db) for db in handles))
    [state] = database.rows(shared.url, "SELECT * FROM quota_state WHERE account_id = ?", (account.id,))
    ledger = database.rows(shared.url, "SELECT kind, tokens FROM credit_ledger WHERE account_id = ?", (account.id,))
    drawn = -sum(r["tokens"] for r in ledger if r["kind"] == "usage")
    overage = sum(r["tokens"] for r in ledger if r["kind"] == "overage")
    assert charged == 1380 and state["used_tokens"] == charged  # 46 of the 60 fit within 1,400
    assert state["credit_balance"] >= 0
    assert drawn == state["credits_drawn"] == 300 and state["credit_balance"] == 0
    assert overage == state["overage_tokens"] == charged - 1000 - 300


async def test_a_reservation_settled_and_released_at_once_is_given_back_once(shared: Shared) -> None:
    """A turn's settle and a release of its reservation (the sweeper's, or a takeover's) on other connections at
    the same moment: whichever comes first gives the tokens back, the other nothing, and the charge is kept."""
    handles = shared.handles
    clock = SystemClock()
    plan = await PlanStore(handles[0], clock).create(
        PlanSettings(name="p", monthly_token_limit=10**9, models=["gpt-4o-mini"], default_model="gpt-4o-mini")
    )
    account = await AccountStore(handles[0], clock).create("a", plan.id, None)
    settling, releasing = (QuotaService(db, clock, reservation_ttl_ms=60_000) for db in handles[1:])
    for _ in range(20):
        reservations = [await settling.reserve(account.id, 100, request_id=None) for _ in range(3)]
        await asyncio.gather(
            *(handles[1].run(lambda tx, r=r: settling.settle(tx, r, 10)) for r in reservations),
            *(releasing.release(r) for r in reservations),
        )
    [state] = database.rows(shared.url, "SELECT * FROM quota_state WHERE account_id = ?", (account.id,))
    assert (state["used_tokens"], state["reserved_tokens"]) == (20 * 3 * 10, 0)
    assert database.rows(shared.url, "SELECT id FROM quota_reservations") == []


async def test_bots_created_at_once_are_numbered_without_a_gap_or_a_clash(shared: Shared) -> None:
    handles = shared.handles
    clock = SystemClock()
    plan = await PlanStore(handles[0], clock).create(
        PlanSettings(name="p", monthly_token_limit=1000, models=["gpt-4o-mini"], default_model="gpt-4o-mini")
    )
    account = await AccountStore(handles[0], clock).create("a", plan.id, None)
    settings = BotSettings.model_validate({"name": "bot", "persona": "You help."})
    await asyncio.gather(
        *(BotStore(db, clock).create(account.id, settings) for db in itertools.islice(itertools.cycle(handles), 12))
    )
    seqs = [r["seq"] for r in database.rows(shared.url, "SELECT seq FROM bots ORDER BY seq")]
    assert seqs == list(range(1, 13))


async def test_a_rating_never_outlives_the_erasure_of_its_reply(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    replies = {}
    for n in range(12):
        body = {"user_id": f"erase-me-{n}", "message": "hello"}
        answer = await client.post("/api/messages/relay", json=body, headers=tenant.key_header)
        replies[f"erase-me-{n}"] = (await answer.json())["message_id"]
    async with database.open_database(settings) as rater, database.open_database(settings) as eraser_db:
        feedback, eraser = FeedbackStore(rater, SystemClock()), Eraser(eraser_db, SystemClock())

        async def rate_and_erase(customer: str, message_id: str) -> None:
            rating = Rating(message_id=message_id, rating="up", comment="the customer's own words", created_by="k")
            rated, erased = await asyncio.gather(
                feedback.rate(rating, account_id=tenant.account_id),
                eraser.erase_customer(customer, account_id=tenant.account_id),
                return_exceptions=True,
            )
            assert not isinstance(erased, BaseException), erased
            assert not isinstance(rated, BaseException) or isinstance(rated, NotFound), rated

        await asyncio.gather(*(rate_and_erase(customer, message) for customer, message in replies.items()))
    assert database.rows(settings, "SELECT id FROM messages") == []
    assert database.rows(settings, "SELECT message_id FROM feedback") == []


async def test_the_same_plan_created_at_once_is_one_201_and_409s_never_a_500(client: TestClient) -> None:
    """Two requests racing past the name check meet the unique constraint: that is a conflict, not an error."""
    body = {"name": "racing", "monthly_token_limit": 1000, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"}
    answers = await asyncio.gather(*(client.post("/api/admin/plans", json=body, headers=auth()) for _ in range(8)))
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201] + [409] * 7, statuses
    for answer in answers:
        if answer.status == 409:
            assert (await answer.json())["error"]["code"] == "conflict"
