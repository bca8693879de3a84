"""The inbox queue's leases: a worker that lost its lease cannot change an event another worker now holds."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient

from core.storage.db import Transaction
from core.storage.inbox_queue import InboxItem, LeaseLost
from core.worker_pool import WorkerPool
from gateway.keys import STORAGE
from gateway.settings import Settings
from tests.support import database
from tests.support.channel_traffic import PHONE_ID, whatsapp_text
from tests.support.harness import connect_channel, expect, provision, signed


async def test_a_stale_worker_is_fenced_out(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    raw, headers = signed(whatsapp_text("wamid.lease"))
    await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    queue = client.server.app[STORAGE].queue

    [stale] = await queue.claim("worker-a", 5)
    assert await queue.claim("worker-b", 5) == []  # one holder at a time
    database.execute(settings, "UPDATE inbox SET lease_expires_at = 0")  # worker A stalled past its lease
    [fresh] = await queue.claim("worker-b", 5)
    assert fresh.attempts == stale.attempts + 1

    assert await queue.extend(stale) is False
    for late_write in (
        queue.finish(stale, "done"),
        queue.retry_later(stale, 1000, "x"),
        queue.part_sent(stale, 1, "m_1"),
    ):
        with pytest.raises(LeaseLost):
            await late_write

    async def keep_late_reply(tx: Transaction) -> None:  # as a turn's charge keeps its reply
        check = await queue.store_reply(tx, stale, "a late reply")
        await tx.execute("UPDATE inbox SET updated_at = updated_at WHERE id = ?", (stale.id,))  # travels with it
        await check()

    with pytest.raises(LeaseLost):
        await client.server.app[STORAGE].db.run(keep_late_reply)
    assert database.rows(settings, "SELECT reply_text FROM inbox")[0]["reply_text"] is None
    assert await queue.extend(fresh) is True
    await queue.finish(fresh, "done")
    [row] = database.rows(settings, "SELECT state, lease_owner FROM inbox")
    assert (row["state"], row["lease_owner"]) == ("done", None)
    # The stale worker's send record was rolled back with its fenced update: the message id is not taken as ours.
    assert database.rows(settings, "SELECT message_id FROM outbound_messages") == []


async def test_a_claim_that_a_stop_cuts_off_gives_its_events_back(client: TestClient, settings: Settings) -> None:
    """SIGTERM lands while the pool's claim commits: the commit goes through (a started database write is not cut
    off), and the events it leased go back to the queue at once, untouched, instead of waiting out a lease after
    the restart."""
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    raw, headers = signed(whatsapp_text("wamid.stop"))
    await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    queue = client.server.app[STORAGE].queue
    claim, committing, proceed, committed = queue.claim, asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_commit(owner: str, limit: int) -> list[InboxItem]:
        async def commit() -> list[InboxItem]:
            committing.set()
            await proceed.wait()
            try:
                return await claim(owner, limit)
            finally:
                committed.set()

        return await asyncio.shield(asyncio.ensure_future(commit()))  # as Database.run shields a started commit

    queue.claim = slow_commit  # type: ignore[method-assign]
    ran: list[str] = []

    class Worker:
        async def process(self, item: InboxItem) -> None:
            ran.append(item.id)

    pool = WorkerPool(queue, cast(Any, Worker()), concurrency=4, poll_seconds=0.05)
    pool.start()
    await asyncio.wait_for(committing.wait(), 5)
    stopping = asyncio.create_task(pool.stop())
    await asyncio.sleep(0.05)  # stop() has cancelled the claiming loop by now
    proceed.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.wait_for(committed.wait(), 5)
    assert ran == []
    [row] = database.rows(settings, "SELECT state, lease_owner, attempts FROM inbox")
    assert (row["state"], row["lease_owner"], row["attempts"]) == ("pending", None, 0)
