"""Adding a person who signs in to the web dashboard, by the same rules wherever it is done (`python -m gateway
user add`, an admin's page): an email address, a role, an account for owners and viewers (none for admins), and a
password long enough, hashed with argon2id off the event loop."""

from __future__ import annotations

import asyncio

from core.passwords import Passwords
from core.storage.people import PeopleStore, Person, Role

ROLES: tuple[Role, ...] = ("admin", "owner", "viewer")


class InvalidPerson(ValueError):
    """What is wrong with the person asked for, in words."""


class People:
    def __init__(self, store: PeopleStore, passwords: Passwords) -> None:
        self.store = store
        self._passwords = passwords

    async def add(self, email: str, password: str, role: str, account_id: str | None) -> Person:
        """The new person. InvalidPerson or WeakPassword (both ValueErrors) say what is wrong; Conflict: the email
        is taken; NotFound: no such account."""
        email = email.strip()
        if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
            raise InvalidPerson("the email must be an email address")
        chosen = next((r for r in ROLES if r == role), None)
        if chosen is None:
            raise InvalidPerson(f"the role must be one of: {', '.join(ROLES)}")
        if (chosen == "admin") != (account_id is None):
            raise InvalidPerson("an admin has no account; an owner or a viewer belongs to exactly one")
        password_hash = await asyncio.to_thread(self._passwords.hash, password)
        return await self.store.add(email, password_hash, chosen, account_id)
