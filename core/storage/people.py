"""People who sign in to the web dashboard: an email, an argon2id password hash (core/passwords.py), a role, and
for owners and viewers the one account they see. (The seed calls accounts "users"; these are people.)

Emails are compared case-insensitively (`email_key`, unique): Anna@Bakery.example and anna@bakery.example are one
person. The hash never leaves this module but to the sign-in check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.clock import Clock
from core.errors import Conflict, NotFound
from core.ids import new_id
from core.storage.db import Database, Row

Role = Literal["admin", "owner", "viewer"]
_COLUMNS = "id, email, role, account_id, created_at"


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    email: str
    role: Role
    account_id: str | None  # None for an admin
    created_at: int


def email_key(email: str) -> str:
    return email.strip().casefold()


def _person(row: Row) -> Person:
    return Person(row["id"], row["email"], row["role"], row["account_id"], int(row["created_at"]))


class PeopleStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(self, email: str, password_hash: str, role: Role, account_id: str | None) -> Person:
        """A new person; Conflict if the email is taken, NotFound if the account does not exist."""
        if (role == "admin") != (account_id is None):
            raise ValueError("an admin has no account; an owner or a viewer has exactly one")
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            if account_id is not None and not await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
                raise NotFound("account")
            row = await tx.fetch_one(
                "INSERT INTO people (id, email, email_key, password_hash, role, account_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING RETURNING " + _COLUMNS,
                (new_id("per"), email.strip(), email_key(email), password_hash, role, account_id, now, now),
            )
        if row is None:
            raise Conflict(f"a person with the email {email.strip()} exists already")
        return _person(row)

    async def credentials(self, email: str) -> tuple[Person, str] | None:
        """The person with this email and their password hash, for the sign-in check only."""
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS}, password_hash FROM people WHERE email_key = ?", (email_key(email),)
        )
        return None if row is None else (_person(row), row["password_hash"])

    async def get(self, person_id: str) -> Person | None:
        row = await self._db.fetch_one(f"SELECT {_COLUMNS} FROM people WHERE id = ?", (person_id,))
        return None if row is None else _person(row)

    async def list(self, *, account_id: str | None = None) -> list[Person]:
        """Everyone (the operator's view), or the people of one account; oldest first."""
        if account_id is None:
            rows = await self._db.fetch_all(f"SELECT {_COLUMNS} FROM people ORDER BY created_at, id")
        else:
            rows = await self._db.fetch_all(
                f"SELECT {_COLUMNS} FROM people WHERE account_id = ? ORDER BY created_at, id", (account_id,)
            )
        return [_person(r) for r in rows]

    async def remove(self, person_id: str) -> Person:
        """The person, no longer able to sign in: their sessions go with them (foreign-key cascade)."""
        rows = await self._db.execute_returning(f"DELETE FROM people WHERE id = ? RETURNING {_COLUMNS}", (person_id,))
        if not rows:
            raise NotFound("person")
        return _person(rows[0])
