"""The inbox writer commits deliveries that arrive together in one commit (core/storage/inbox.py), on both
backends: each webhook still learns exactly what of its own delivery was stored, a retry of an event in the same
batch is a duplicate, and a delivery the database refuses fails alone, with a retryable error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiohttp.test_utils import TestClient

from core.clock import SystemClock
from core.errors import StorageUnavailable
from core.storage.inbox import InboxRow, InboxWriter, UnroutedRow
from gateway.keys import STORAGE
from gateway.settings import Settings
from tests.support import database
from tests.support.harness import connect_channel, provision

SENT_AT = 1_700_000_000_000


def event(row_id: str, channel_id: str, key: str, platform_ts: int = SENT_AT) -> InboxRow:
    return InboxRow(row_id, channel_id, key, "message", "15550001", platform_ts, '{"text": "hi"}', "pending")


def stray(row_id: str) -> UnroutedRow:
    return UnroutedRow(row_id, "whatsapp", "999", "message", "unknown_channel", "{}")


async def writer_and_channel(client: TestClient) -> tuple[InboxWriter, str]:
    tenant = await provision(client)
    channel = await connect_channel(client, tenant, "whatsapp", "100200300")
    return InboxWriter(client.server.app[STORAGE].db, SystemClock()), channel["id"]


def stored_keys(settings: Settings) -> list[str]:
    stored = database.rows(settings.database_url, "SELECT event_key FROM inbox ORDER BY arrival")
    return [r["event_key"] for r in stored]


async def test_deliveries_written_together_each_learn_what_of_theirs_was_stored(
    client: TestClient, settings: Settings
) -> None:
    writer, channel_id = await writer_and_channel(client)
    # Queued in one step of the event loop, so written as one batch.
    results = await asyncio.gather(
        writer.write([event("inb_1", channel_id, "a"), event("inb_2", channel_id, "b")], []),
        writer.write([event("inb_3", channel_id, "c")], [stray("unr_1")]),
        # Meta's retry of "a" while the original is being committed: the same event key, a row id of its own.
        writer.write([event("inb_4", channel_id, "a")], []),
        writer.write([], [stray("unr_2")]),
    )
    assert [(r.stored, r.duplicates, r.unrouted) for r in results] == [(2, 0, 0), (1, 0, 1), (0, 1, 0), (0, 0, 1)]
    assert stored_keys(settings) == ["a", "b", "c"]
    assert database.rows(settings.database_url, "SELECT COUNT(*) AS n FROM webhook_unrouted")[0]["n"] == 2
    # Later deliveries are written in the next commit, and a retry after the commit is a duplicate as well.
    again = await writer.write([event("inb_5", channel_id, "b"), event("inb_6", channel_id, "d")], [])
    assert (again.stored, again.duplicates) == (1, 1)


async def test_a_delivery_the_database_refuses_fails_alone(client: TestClient, settings: Settings) -> None:
    writer, channel_id = await writer_and_channel(client)
    results = await asyncio.gather(
        writer.write([event("inb_1", channel_id, "a")], []),
        writer.write([event("inb_2", channel_id, "bad", platform_ts=2**63)], []),  # beyond what the column holds
        writer.write([event("inb_3", channel_id, "c")], []),
        return_exceptions=True,
    )
    assert [getattr(r, "stored", None) for r in results] == [1, None, 1]
    assert isinstance(results[1], StorageUnavailable)  # the webhook answers 503: Meta retries, nothing is lost
    assert stored_keys(settings) == ["a", "c"]


@pytest.mark.parametrize("deliveries", [450])
async def test_a_burst_larger_than_a_batch_is_written_whole(
    client: TestClient, settings: Settings, deliveries: int
) -> None:
    writer, channel_id = await writer_and_channel(client)
    results = await asyncio.gather(
        *(writer.write([event(f"inb_{n}", channel_id, f"k{n:04}")], []) for n in range(deliveries))
    )
    assert sum(r.stored for r in results) == deliveries
    assert stored_keys(settings) == [f"k{n:04}" for n in range(deliveries)]  # every one, none twice


class _GatedDatabase:
    """Commits that all finish at the same moment (as one SQLite group commit finishes several): each statement
    waits for the gate. Only what InboxWriter uses of a database."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.doorbell = self
        self.commits = 0

    async def execute_returning(
        self, sql: str, params: Sequence[object] = (), *, urgent: bool = False
    ) -> list[dict[str, object]]:
        self.commits += 1
        await self.gate.wait()
        return [{"id": params[n]} for n in range(0, len(params), 12)]  # every event stored (its id comes first)

    async def ring(self, topic: str) -> None:
        return None


async def test_a_delivery_that_comes_as_every_commit_finishes_is_still_written() -> None:
    """Was: the flushes left the writer's count of running flushes one loop step after their last look at the queue,
    so a delivery queued in that step found every slot taken, started nothing, and waited for the next webhook."""
    db = _GatedDatabase()
    writer = InboxWriter(db, SystemClock())  # type: ignore[arg-type]  # the part of Database it uses
    writer._marked["chn_1"] = SystemClock().now_ms()  # delivery marks not due: each write is one statement
    first = []
    for n in range(4):  # as many flushes as may run at once, each waiting in its commit
        first.append(asyncio.create_task(writer.write([event(f"inb_{n}", "chn_1", f"k{n}")], [])))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert db.commits == 4

    async def arrives_as_the_commits_finish() -> int:
        await db.gate.wait()  # woken in the same step as the four flushes, after them
        return (await writer.write([event("inb_late", "chn_1", "late")], [])).stored

    late = asyncio.create_task(arrives_as_the_commits_finish())
    await asyncio.sleep(0)
    db.gate.set()
    assert [r.stored for r in await asyncio.gather(*first)] == [1, 1, 1, 1]
    assert await asyncio.wait_for(late, 2) == 1  # no other webhook came to push it out
