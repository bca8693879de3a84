"""The inbox queue's leases: a worker that lost its lease cannot change an event another worker now holds."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from core.storage.inbox_queue import LeaseLost
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
    assert await queue.extend(fresh) is True
    await queue.finish(fresh, "done")
    [row] = database.rows(settings, "SELECT state, lease_owner FROM inbox")
    assert (row["state"], row["lease_owner"]) == ("done", None)
    # The stale worker's send record was rolled back with its fenced update: the message id is not taken as ours.
    assert database.rows(settings, "SELECT message_id FROM outbound_messages") == []
