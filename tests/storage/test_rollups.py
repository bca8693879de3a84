"""The hourly rollups change no report: the metrics and the usage series answer the same before and after the hours
are rolled up, for ranges that cut hours in two, every grouping and both bucket sizes; an erasure after the rollup
takes its messages out of the figures as it did before; and an hour is rolled up only once it is well over."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient

from core.storage import rollups
from core.storage.rollups import GRACE_MS, HOUR_MS
from gateway.keys import STORAGE
from gateway.settings import Settings
from tests.support import database
from tests.support.harness import auth, expect, provision
from tests.support.reporting_rows import conversation, failure_row, insert, ms, usage_row

START = ms("2025-03-01T00:00:00")
RANGES = (
    {"from": "2025-03-01T00:00:00Z", "to": "2025-03-03T00:00:00Z"},
    {"from": str(START + 17 * 60_000), "to": str(START + 29 * HOUR_MS + 41 * 60_000)},  # cutting hours in two
    {"from": str(START + 5 * HOUR_MS + 1), "to": str(START + 5 * HOUR_MS + 59 * 60_000)},  # inside one hour
    {"from": "2025-03-01T00:00:00Z"},  # up to now: messages and conversations from the rollups and the contacts
)


async def _answers(client: TestClient, headers: dict[str, str]) -> list[Any]:
    """Every report of every range (an open range's end, now, left out: it moves)."""
    answers = []
    for span in RANGES:
        answers.append(await expect(await client.get("/api/dashboard/metrics", params=span, headers=headers), 200))
        if "to" not in span:
            answers[-1].pop("to")
        for bucket in ("hour", "day") if "to" in span else ("day",):
            for group in ("", "model", "bot", "platform"):
                params = {**span, "bucket": bucket, **({"group_by": group} if group else {})}
                answer = await client.get("/api/dashboard/usage", params=params, headers=headers)
                answers.append(await expect(answer, 200))
                if "to" not in span:
                    answers[-1].pop("to")
    return answers


async def test_reports_are_the_same_before_and_after_the_rollup(client: TestClient, settings: Settings) -> None:
    shop, other = await provision(client, name="Shop"), await provision(client, name="Other")
    rows = []
    for n in range(60):  # calls every 53 minutes over two days and a half, of two bots, models and platforms
        at = START + n * 53 * 60_000 + n
        model, channel = ("gpt-4o-mini", "relay") if n % 3 else ("gpt-4.1", "whatsapp")
        rows.append(
            usage_row(
                shop.account_id,
                shop.bot_id if n % 4 else None,
                at,
                model=model,
                channel=channel,
                cost=None if n % 7 == 0 else 1000 + n,
                latency=100 + n,
                prompt=100 + n,
            )
        )
        if n % 9 == 0:
            rows.append(failure_row(shop.account_id, shop.bot_id, at + 5, "quota_exceeded"))
            rows.append(failure_row(shop.account_id, shop.bot_id, at + 6, "upstream_error"))
        rows.append(usage_row(other.account_id, other.bot_id, at + 7))
    insert(settings, "usage_records", rows)
    kept = conversation(settings, shop.account_id, shop.bot_id, "alice", [START + k * 47 * 60_000 for k in range(30)])
    conversation(settings, shop.account_id, shop.bot_id, "bob", [START + 3 * HOUR_MS + 5, START + 40 * HOUR_MS])
    conversation(settings, other.account_id, other.bot_id, "carol", [START + HOUR_MS])
    owner, admin = auth("owner", shop.account_id), auth()

    before = [await _answers(client, owner), await _answers(client, admin)]
    store = client.app[STORAGE].rollups
    # An hour is rolled up only once it ended GRACE_MS ago; then every hour with rows, a few per pass.
    assert await store.advance(START + HOUR_MS + GRACE_MS - 1) == 0
    assert await store.advance(START + HOUR_MS + GRACE_MS) == 1
    assert await rollups.through(client.app[STORAGE].db) == START + HOUR_MS
    assert await store.advance(START + 100 * HOUR_MS, max_hours=5) == 5
    assert await store.advance(START + 100 * HOUR_MS) > 0
    assert await store.advance(START + 100 * HOUR_MS) == 0  # nothing left
    assert len(database.rows(settings, "SELECT * FROM usage_hourly")) > 40
    after = [await _answers(client, owner), await _answers(client, admin)]
    assert after == before

    # Erasing alice after her hours were rolled up takes her messages out of the figures, as before the rollup.
    for span in (RANGES[0], RANGES[3]):
        counted = await expect(await client.get("/api/dashboard/metrics", params=span, headers=owner), 200)
        assert counted["messages"] == {"inbound": 32, "outbound": 32} and counted["conversations"] == 2
    erased = await client.delete(f"/api/conversations/{kept}", headers=owner)
    assert erased.status == 200, await erased.text()
    for span in (RANGES[0], RANGES[3]):
        counted = await expect(await client.get("/api/dashboard/metrics", params=span, headers=owner), 200)
        assert counted["messages"] == {"inbound": 2, "outbound": 2} and counted["conversations"] == 1


async def test_the_months_figures_count_conversations_from_their_newest_message(
    client: TestClient, settings: Settings
) -> None:
    """Up to now, conversations and active contacts come from the contacts' newest messages: the same figures."""
    shop = await provision(client)
    now = time.time_ns() // 1_000_000
    conversation(settings, shop.account_id, shop.bot_id, "old", [now - 40 * 24 * HOUR_MS])
    conversation(settings, shop.account_id, shop.bot_id, "week", [now - 50 * 24 * HOUR_MS, now - 7 * 24 * HOUR_MS])
    conversation(settings, shop.account_id, shop.bot_id, "today", [now - 30 * 24 * HOUR_MS, now - HOUR_MS])
    owner = auth("owner", shop.account_id)
    span = {"from": str(now - 10 * 24 * HOUR_MS)}
    open_ended = await expect(await client.get("/api/dashboard/metrics", params=span, headers=owner), 200)
    closed = {**span, "to": str(now - 1)}  # a range that ends before now is counted message by message
    counted = await expect(await client.get("/api/dashboard/metrics", params=closed, headers=owner), 200)
    assert (open_ended["conversations"], open_ended["active_contacts"]) == (2, 1)
    assert (counted["conversations"], counted["active_contacts"]) == (2, 1)
    assert open_ended["messages"] == counted["messages"] == {"inbound": 2, "outbound": 2}
