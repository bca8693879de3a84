"""Leadership on PostgreSQL (core/storage/postgres_doorbell.py, PostgresLeadership): one process leads the
housekeeping at a time, another takes over once the leader is gone, and a process that does not lead asks again
on the connection it keeps rather than opening one at each look (every second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.storage.migrations import apply_migrations
from core.storage.postgres_doorbell import PostgresLeadership
from tests.support.database import open_database, scratch_url

pytestmark = pytest.mark.postgresql_only


async def test_one_process_leads_and_another_takes_over_without_new_connections_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = scratch_url(tmp_path)
    async with open_database(url) as db:  # the schema the lock's name is scoped to
        await apply_migrations(db)
    connect = psycopg.AsyncConnection.connect
    opened: list[str] = []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        opened.append("connection")
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", counted)
    leader, other, third = (PostgresLeadership(url, "housekeeping") for _ in range(3))
    try:
        assert await leader.check() is True
        for _ in range(5):  # the housekeeping tasks look every second
            assert await other.check() is False
            assert await leader.check() is True
        assert len(opened) == 2  # one connection each, kept
        await leader.close()  # the leader stops (or dies: its connection closes with it)
        assert await other.check() is True
        assert len(opened) == 2
        assert await third.check() is False  # still one leader
    finally:
        for leadership in (leader, other, third):
            await leadership.close()
