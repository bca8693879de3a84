"""The channel directory: which secrets may sign a delivery, and which bot an event belongs to.

Webhooks are verified before parsing, and the body does not say which Meta app signed it, so every candidate
app secret of the platform is tried: each channel's own secret and META_APP_SECRET for channels without one.
After parsing, an event is routed only to a channel the matching secret speaks for, so one Meta app cannot
inject events into another app's Page. The directory is an in-memory snapshot of the live channels, reloaded
when an admin changes a channel, every REFRESH_SECONDS (other instances' changes), and on a miss at most once
per MISS_RELOAD_SECONDS (so forged traffic cannot turn into database load).
"""

from __future__ import annotations

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


class ChannelDirectory:
    def __init__(self, store: ChannelStore, *, default_app_secret: str | None, default_verify_token: str | None):
        self._store = store
        self._default_secret = default_app_secret
        self._default_token = default_verify_token
        self._snapshot: _Snapshot | None = None
        self._last_miss_reload = 0.0

    def invalidate(self) -> None:
        self._snapshot = None

    async def signing_secrets(self) -> list[str]:
        """Every secret that may sign a delivery, whatever the platform: one Meta app often serves several."""
        snapshot = await self._current()
        secrets = {c.app_secret for c in snapshot.by_key.values() if c.app_secret}
        if self._default_secret:
            secrets.add(self._default_secret)
        return sorted(secrets)

    async def verify_tokens(self) -> list[str]:
        snapshot = await self._current()
        tokens = {c.verify_token for c in snapshot.by_key.values() if c.verify_token}
        if self._default_token:
            tokens.add(self._default_token)
        return sorted(tokens)

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

    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot.loaded_at > REFRESH_SECONDS:
            loaded = await self._store.live()
            by_key = {
                (c.platform, c.external_id): RoutedChannel(
                    c.id, c.account_id, c.bot_id, c.platform, c.external_id, c.status, s.app_secret, s.verify_token
                )
                for c, s in loaded
            }
            snapshot = self._snapshot = _Snapshot(by_key, time.monotonic())
        return snapshot
