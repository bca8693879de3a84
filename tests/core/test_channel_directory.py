"""The channel directory's reloads: single-flight, and never keeping a snapshot that a change made stale."""

from __future__ import annotations

import asyncio
from typing import Any

from core.channel_directory import ChannelDirectory
from core.models import Channel
from core.storage.channels import ChannelSecrets


def _channel(external_id: str, secret: str | None) -> tuple[Channel, ChannelSecrets]:
    channel = Channel(
        id=f"chn_{external_id}",
        account_id="acc",
        bot_id="bot",
        platform="whatsapp",
        external_id=external_id,
        status="active",
        status_reason=None,
        has_app_secret=secret is not None,
        has_verify_token=False,
        created_at=0,
        updated_at=0,
        disconnected_at=None,
    )
    return channel, ChannelSecrets("token", secret, None)


class CountingStore:
    """Stands in for ChannelStore.live(): counts loads, and can hold one open until told to finish."""

    def __init__(self, channels: list[tuple[Channel, ChannelSecrets]]) -> None:
        self.channels = channels
        self.loads = 0
        self.gate: asyncio.Event | None = None

    async def live(self) -> list[tuple[Channel, ChannelSecrets]]:
        self.loads += 1
        snapshot = list(self.channels)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0.01)
        return snapshot


def directory(store: Any) -> ChannelDirectory:
    return ChannelDirectory(store, default_app_secret="default-secret", default_verify_token=None)


async def test_a_burst_after_a_change_loads_the_channels_once() -> None:
    store = CountingStore([_channel("1", "s1"), _channel("2", "s1"), _channel("3", None)])
    found = directory(store)
    results = await asyncio.gather(*(found.signing_secrets() for _ in range(50)))
    assert store.loads == 1
    # Distinct secrets only: two channels of one Meta app cost one HMAC on a forged delivery, not two.
    assert all(r == ["default-secret", "s1"] for r in results)
    found.invalidate()
    await asyncio.gather(*(found.route("whatsapp", "1", "s1") for _ in range(50)))
    assert store.loads == 2


async def test_a_change_during_a_load_is_not_lost() -> None:
    store = CountingStore([_channel("1", "old-secret")])
    found = directory(store)
    store.gate = asyncio.Event()
    loading = asyncio.create_task(found.signing_secrets())
    await asyncio.sleep(0.01)  # the load has read the old channel list and is waiting
    store.channels = [_channel("1", "new-secret")]
    found.invalidate()  # an admin rotated the secret meanwhile
    store.gate.set()
    assert await loading == ["default-secret", "old-secret"]  # the request that started first sees the old list
    store.gate = None
    assert await found.signing_secrets() == ["default-secret", "new-secret"]
    assert store.loads == 2
