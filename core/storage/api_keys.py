"""Account API keys for the relay API: shown once at creation, stored only as a SHA-256 hash.

The keys carry 256 bits of randomness, so a plain (unsalted) SHA-256 is enough to make a stolen table useless
and still lets a request find its key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from core.clock import Clock
from core.errors import NotFound
from core.ids import new_id
from core.models import Account, ApiKey
from core.storage.accounts import _account
from core.storage.db import Database, Row
from core.storage.doorbell import SETTINGS
from core.storage.recent import Recent
from core.storage.records import from_row

KEY_PREFIX = "nxk_"
_COLUMNS = "id, account_id, prefix, name, created_at, last_used_at, revoked_at"
# Recording every use would add a write to each relay call; a minute's precision is what operators need.
_LAST_USED_PRECISION_MS = 60_000
_USED_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _LiveKey:
    key_id: str
    account: Account
    last_used_at: int | None  # as read


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    plaintext: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _api_key(row: Row) -> ApiKey:
    return from_row(ApiKey, row)


class ApiKeyStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # Live keys by hash, with their account, kept like the account itself (core/storage/recent.py): a revoked
        # key and a changed account ring, so the next call reads them again. Unknown keys are never kept.
        self._live: Recent[str, _LiveKey] = Recent(db.doorbell, SETTINGS)
        self._used: dict[str, int] = {}  # when this process last recorded a key's use, by key id

    async def issue(self, account_id: str, name: str | None) -> IssuedKey:
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            if not await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
                raise NotFound("account")
            row = await tx.fetch_one(
                "INSERT INTO api_keys (id, account_id, key_hash, prefix, name, created_at)"
                f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (new_id("key"), account_id, hash_key(plaintext), plaintext[:12], name, now),
            )
        assert row is not None
        return IssuedKey(_api_key(row), plaintext)

    async def list(self, account_id: str) -> list[ApiKey]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY created_at, id", (account_id,)
        )
        return [_api_key(r) for r in rows]

    async def revoke(self, account_id: str, key_id: str) -> ApiKey:
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND account_id = ?"
                f" RETURNING {_COLUMNS}",
                (self._clock.now_ms(), key_id, account_id),
            )
        if row is None:
            raise NotFound("api key")
        await self._db.doorbell.ring(SETTINGS)  # every process forgets the key it kept: the next call is refused
        return _api_key(row)

    async def authenticate(self, plaintext: str) -> Account | None:
        """The account a live key belongs to, or None for an unknown or revoked key."""
        if not plaintext.startswith(KEY_PREFIX):
            return None
        try:
            live = await self._live.get(hash_key(plaintext), self._lookup)
        except NotFound:
            return None
        now = self._clock.now_ms()
        used = max(live.last_used_at or 0, self._used.get(live.key_id, 0))
        if not used or now - used >= _LAST_USED_PRECISION_MS:
            if len(self._used) >= _USED_ENTRIES:
                self._used.clear()
            self._used[live.key_id] = now
            await self._db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, live.key_id))
        return live.account

    async def _lookup(self, key_hash: str) -> _LiveKey:
        found = await self._db.lookup(
            "SELECT k.id AS key_id, k.last_used_at, a.* FROM api_keys k JOIN accounts a ON a.id = k.account_id"
            " WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        )
        if not found:
            raise NotFound("api key")
        row = found[0]
        last_used = row["last_used_at"]
        return _LiveKey(row["key_id"], _account(row), None if last_used is None else int(last_used))
