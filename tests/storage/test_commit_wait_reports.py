"""On PostgreSQL the webhook's inbox commits happen in web processes and the inbox work in worker processes, on the
same machine's CPUs: the workers hear how long the web process's commits waited, so they can give way
(core/ack_pressure.py). Two database handles stand for two processes here, each with its own doorbell."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.storage.db import Database, Transaction
from core.storage.postgres_db import PostgresDatabase
from tests.support.database import open_database, postgres_scratch_url

pytestmark = pytest.mark.postgresql_only


async def slow_commit(tx: Transaction) -> None:
    await tx.execute("SELECT pg_sleep(0.05)")


async def heard_by(db: Database) -> list[float]:
    heard: list[float] = []
    db.watch_urgent_commits(heard.append)
    assert isinstance(db, PostgresDatabase)
    await asyncio.wait_for(db.doorbell.listening.wait(), 10)
    return heard


async def test_a_worker_process_hears_how_long_the_web_process_waited_for_its_commits(tmp_path: Path) -> None:
    url = postgres_scratch_url(tmp_path)
    async with open_database(url) as web, open_database(url) as worker:
        in_web, in_worker = await heard_by(web), await heard_by(worker)
        await web.run(slow_commit, urgent=True)
        await web.run(lambda tx: tx.execute("SELECT 1"), urgent=True)
        await web.execute("SELECT 1", urgent=True)
        await web.run(slow_commit)  # not urgent: nobody waits on it, nothing is reported
        for _ in range(200):
            if in_worker and max(in_worker) >= 50:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # anything else on its way
        # The web process heard each of its urgent commits at once. The worker heard reports (one per 20 ms at
        # most, so one or two here): each the fastest and then the slowest of the commits it covers; together,
        # the fastest and the slowest of all three.
        assert len(in_web) == 3 and max(in_web) >= 50
        assert len(in_worker) in (2, 4) and all(any(abs(h - w) < 0.01 for w in in_web) for h in in_worker)
        assert min(in_worker) == pytest.approx(min(in_web), abs=0.01)
        assert max(in_worker) == pytest.approx(max(in_web), abs=0.01)
        heard = len(in_worker)
        await asyncio.sleep(0.2)
        assert len(in_web) == 3 and len(in_worker) == heard  # no echo of the web's own report, nothing more sent
