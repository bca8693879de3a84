"""The channel directory: which secrets may sign a delivery, and which bot an event belongs to.

Webhooks are verified before parsing, and the body does not say which Meta app signed it, so every candidate
app secret of the platform is tried: each channel's own secret and META_APP_SECRET for channels without one.
After parsing, an event is routed only to a channel the matching secret speaks for, so one Meta app cannot
inject events into another app's Page. The directory is an in-memory snapshot of the live channels, reloaded
when an admin changes a channel, every REFRESH_SECONDS (other instances' changes), and on a miss at most once
per MISS_RELOAD_SECONDS (so forged traffic cannot turn into database load). Reloads are single-flight: a burst
of deliveries after a change waits for one load (which opens every channel's sealed secrets) instead of each
starting its own. The candidate secrets are distinct values, so a forged delivery costs one HMAC per Meta app
in use, not one per channel.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from core.storage.channels import ChannelStore

REFRESH_SECONDS = 30.0
MISS_RELOAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RoutedChannel:
    id: str
    account_id: str
    bot_id: str
    platform: str
    external_id: str
    status: str
    app_secret: str | None = field(repr=False)
    verify_token: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    by_key: dict[tuple[str, str], RoutedChannel]
    loaded_at: float
    generation: int  # the directory's generation it was loaded in; an invalidate() during the load makes it stale
    secrets: list[str]
    tokens: list[str]


class ChannelDirectory:
    def __init__(self, store: ChannelStore, *, default_app_secret: str | None, default_verify_token: str | None):
        self._store = store
        self._default_secret = default_app_secret
        self._default_token = default_verify_token
        self._snapshot: _Snapshot | None = None
        self._generation = 0
        self._reload = asyncio.Lock()
        self._last_miss_reload = 0.0

    def invalidate(self) -> None:
        self._generation += 1

    async def signing_secrets(self) -> list[str]:
        """Every secret that may sign a delivery, whatever the platform: one Meta app often serves several."""
        return (await self._current()).secrets

    async def verify_tokens(self) -> list[str]:
        return (await self._current()).tokens

    async def route(self, platform: str, external_id: str, signed_with: str) -> tuple[RoutedChannel | None, str]:
        """The channel an event belongs to, or None and why ("unknown_channel" / "wrong_app_secret")."""
        channel = (await self._current()).by_key.get((platform, external_id))
        if channel is None and time.monotonic() - self._last_miss_reload >= MISS_RELOAD_SECONDS:
            self._last_miss_reload = time.monotonic()
            self.invalidate()
            channel = (await self._current()).by_key.get((platform, external_id))
        if channel is None:
            return None, "unknown_channel"
        allowed = channel.app_secret or self._default_secret
        if allowed != signed_with:
            return None, "wrong_app_secret"
        return channel, ""

    def _fresh(self) -> _Snapshot | None:
        snapshot = self._snapshot
        if snapshot is None or snapshot.generation != self._generation:
            return None
        return snapshot if time.monotonic() - snapshot.loaded_at <= REFRESH_SECONDS else None

    async def _current(self) -> _Snapshot:
        if (snapshot := self._fresh()) is not None:
            return snapshot
        async with self._reload:
            if (snapshot := self._fresh()) is not None:
                return snapshot  # loaded by the request we waited behind
            generation = self._generation
            loaded = await self._store.live()
            by_key: dict[tuple[str, str], RoutedChannel] = {
                (c.platform, c.external_id): RoutedChannel(
                    c.id, c.account_id, c.bot_id, c.platform, c.external_id, c.status, s.app_secret, s.verify_token
                )
                for c, s in loaded
            }
            secrets = {c.app_secret for c in by_key.values() if c.app_secret}
            tokens = {c.verify_token for c in by_key.values() if c.verify_token}
            secrets |= {self._default_secret} if self._default_secret else set()
            tokens |= {self._default_token} if self._default_token else set()
            snapshot = _Snapshot(by_key, time.monotonic(), generation, sorted(secrets), sorted(tokens))
            self._snapshot = snapshot
            return snapshot
