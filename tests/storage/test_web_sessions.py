"""Dashboard sessions end at their expiry or when revoked, are found only by their token (stored as its digest),
and are forgotten a day after they ended."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.storage.migrations import apply_migrations
from core.storage.people import PeopleStore
from core.storage.web_sessions import SessionStore, digest
from tests.support.database import open_database, scratch_url, seed_bot

HOUR_MS = 3_600_000


@dataclass
class Clock:
    now: int = 1_000_000_000_000

    def now_ms(self) -> int:
        return self.now


async def test_sessions_end_and_are_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    async with open_database(scratch_url(tmp_path, "sessions.db")) as db:
        await apply_migrations(db)
        await seed_bot(db)
        person = await PeopleStore(db, clock).add("Anna@Bakery.example", "hash", "owner", "acc_1")
        sessions = SessionStore(db, clock, lifetime_ms=12 * HOUR_MS)
        token, opened = await sessions.open(person)
        later, revoked = await sessions.open(person)
        stored = {row["id"] for row in await db.fetch_all("SELECT id FROM web_sessions")}
        assert stored == {digest(token), digest(later)} and token not in stored  # only digests are kept
        found = await sessions.find(token)
        assert found is not None and found.person.email == "Anna@Bakery.example" and found.csrf == opened.csrf
        assert await sessions.find("not-a-token") is None

        await sessions.revoke(revoked.id)
        assert await sessions.find(later) is None
        clock.now += 12 * HOUR_MS  # the first one's expiry
        assert await sessions.find(token) is None
        assert await sessions.purge() == 0  # ended, but not a day ago yet
        clock.now += 25 * HOUR_MS
        assert await sessions.purge() == 2
        assert await db.fetch_all("SELECT id FROM web_sessions") == []
