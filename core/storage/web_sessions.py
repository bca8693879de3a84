"""Signed-in sessions of the web dashboard: a random token in an HttpOnly cookie, stored only as its SHA-256, with
the form token (CSRF) that every form changing something must carry.

A session ends at its expiry (SESSION_HOURS after sign-in, however busy), at sign-out (revoked), or when its person
is removed; a fresh token is issued at every sign-in and nothing from before it is kept (no session fixation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from core.clock import Clock
from core.storage.db import Database
from core.storage.people import Person, _person

_PERSON = "p.id, p.email, p.role, p.account_id, p.created_at"


@dataclass(frozen=True, slots=True)
class WebSession:
    id: str  # the token's digest: what the database holds
    person: Person
    csrf: str  # the form token of this session
    expires_at: int


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, db: Database, clock: Clock, *, lifetime_ms: int) -> None:
        self._db = db
        self._clock = clock
        self._lifetime_ms = lifetime_ms

    async def open(self, person: Person) -> tuple[str, WebSession]:
        """A new session for `person`: the cookie's token (never stored) and the session."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._clock.now_ms()
        session = WebSession(digest(token), person, csrf, now + self._lifetime_ms)
        await self._db.execute(
            "INSERT INTO web_sessions (id, person_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (session.id, person.id, csrf, now, session.expires_at),
        )
        return token, session

    async def find(self, token: str) -> WebSession | None:
        """The live session of a cookie's token, or None (unknown, expired, revoked)."""
        row = await self._db.fetch_one(
            f"SELECT s.id AS session_id, s.csrf, s.expires_at, {_PERSON} FROM web_sessions s"
            " JOIN people p ON p.id = s.person_id WHERE s.id = ? AND s.revoked_at IS NULL AND s.expires_at > ?",
            (digest(token), self._clock.now_ms()),
        )
        if row is None:
            return None
        return WebSession(row["session_id"], _person(row), row["csrf"], int(row["expires_at"]))

    async def revoke(self, session_id: str) -> None:
        await self._db.execute(
            "UPDATE web_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (self._clock.now_ms(), session_id),
        )

    async def revoke_all(self, person_id: str) -> int:
        """End every open session of the person (signing out everywhere); how many there were."""
        return await self._db.execute(
            "UPDATE web_sessions SET revoked_at = ? WHERE person_id = ? AND revoked_at IS NULL",
            (self._clock.now_ms(), person_id),
        )

    async def purge(self) -> int:
        """Forget sessions that ended more than a day ago."""
        cutoff = self._clock.now_ms() - 24 * 3600 * 1000
        return await self._db.execute(
            "DELETE FROM web_sessions WHERE expires_at < ? OR revoked_at < ?", (cutoff, cutoff)
        )
