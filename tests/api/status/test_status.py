"""Status pages: the OpenAI endpoint probe (live, cached, never leaking the key) and per-channel webhook health."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph, GraphFault, is_text_send
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import NOW_MS, PAGE_ID, PHONE_ID, fb_text, wa_text
from tests.support.harness import auth, connect_channel, expect, provision, relay, signed

OPENAI = "/api/status/openai"
WEBHOOKS = "/api/status/webhooks"


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


async def test_probe_reports_a_reachable_endpoint_and_is_cached(client: TestClient, fake_openai: FakeOpenAI) -> None:
    first = await expect(await client.get(OPENAI, headers=auth()), 200)
    assert first["configured"] is True and first["reachable"] is True
    assert first["http_status"] == 200 and first["error"] is None and first["last_error"] is None
    assert isinstance(first["latency_ms"], int) and first["latency_ms"] >= 0
    assert first["cached"] is False and first["base_url"].endswith("/v1")
    tenant = await provision(client)
    second = await expect(await client.get(OPENAI, headers=auth("viewer", tenant.account_id)), 200)
    assert second["cached"] is True and second["checked_at"] == first["checked_at"]
    assert "base_url" not in second  # where model calls go is the operator's business
    assert fake_openai.model_lists == 1


async def test_concurrent_pollers_share_one_probe(client: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.latency = 0.2
    answers = await asyncio.gather(*(client.get(OPENAI, headers=auth()) for _ in range(8)))
    bodies = [await expect(a, 200) for a in answers]
    assert fake_openai.model_lists == 1
    assert sorted(b["cached"] for b in bodies) == [False] + [True] * 7


async def test_failures_are_reported_without_the_key_and_remembered(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    clock = ManualClock(1_767_225_600_000)
    client = await make_client(replace(settings, openai_api_key="sk-proj-SECRETKEY123456"), clock=clock)
    fake_openai.api_key = "sk-another-key"
    response = await client.get(OPENAI, headers=auth())
    text = await response.text()
    assert "SECRETKEY" not in text and "3456" not in text and "sk-" not in text
    body = await expect(response, 200)
    assert body["reachable"] is False and body["http_status"] == 401
    assert body["error"]["code"] == "invalid_api_key" and body["last_error"] == body["error"]
    # Within the TTL the failure is served from cache; upstream is not asked again.
    clock.now += 10_000
    assert (await expect(await client.get(OPENAI, headers=auth()), 200))["cached"] is True
    assert fake_openai.model_lists == 1
    # The key is fixed upstream; after the TTL a new probe succeeds and the earlier failure stays on record.
    fake_openai.api_key = None
    clock.now += 30_000
    body = await expect(await client.get(OPENAI, headers=auth()), 200)
    assert body["reachable"] is True and body["error"] is None and body["cached"] is False
    assert body["last_error"]["code"] == "invalid_api_key" and body["last_error"]["at"] == "2026-01-01T00:00:00Z"
    assert fake_openai.model_lists == 2


async def test_unreachable_and_unconfigured_endpoints(make_client: MakeClient, settings: Settings) -> None:
    down = await make_client(replace(settings, openai_base_url="http://127.0.0.1:9/v1"))
    body = await expect(await down.get(OPENAI, headers=auth()), 200)
    assert body["reachable"] is False and body["error"]["code"] == "connection_error"
    assert body["http_status"] is None
    unset = await make_client(replace(settings, openai_api_key=None))
    body = await expect(await unset.get(OPENAI, headers=auth()), 200)
    assert body["configured"] is False and body["reachable"] is False
    assert body["error"]["code"] == "not_configured"


async def test_last_call_is_scoped_to_the_callers_account(client: TestClient, fake_openai: FakeOpenAI) -> None:
    acme, globex = await provision(client, name="Acme"), await provision(client, name="Globex")
    await expect(await relay(client, acme, "hello"), 200)
    body = await expect(await client.get(OPENAI, headers=auth("owner", acme.account_id)), 200)
    assert body["last_call"]["outcome"] == "ok" and body["last_call"]["model"] == "gpt-4o-mini"
    body = await expect(await client.get(OPENAI, headers=auth("owner", globex.account_id)), 200)
    assert body["last_call"] is None  # Globex never called the model
    await expect(await client.get(OPENAI), 401)
    await expect(await client.get(OPENAI, params={"account_id": acme.account_id}, headers=auth()), 400)


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings, monkeypatch: Any) -> tuple[TestClient, Any, Settings]:
    monkeypatch.setattr("core.channel_worker._BACKOFF_MS", (20, 20, 20, 20, 20))
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return client, tenant, settings


async def deliver(client: TestClient, path: str, body: Any) -> None:
    raw, headers = signed(body)
    await expect(await client.post(path, data=raw, headers=headers), 200)


def by_platform(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["platform"]: c for c in body["channels"]}


async def test_channel_health_shows_deliveries_reauthorisation_and_errors(live: Any, fake_graph: FakeGraph) -> None:
    client, tenant, settings = live
    body = await expect(await client.get(WEBHOOKS, headers=auth("viewer", tenant.account_id)), 200)
    fresh = by_platform(body)["messenger"]
    assert fresh["last_delivery_at"] is None and fresh["last_error"] is None
    assert fresh["needs_reauthorisation"] is False and fresh["dead_letters"] == 0

    # Messenger: a policy block (368) is final, the event a dead letter. WhatsApp: the token is dead (190), the
    # channel needs re-authorisation and its event waits, pending, for the new token.
    fake_graph.script(
        GraphFault(368, match=lambda body: is_text_send(body) and "recipient" in body),
        GraphFault(190, 463, match=lambda body: is_text_send(body) and body.get("messaging_product") == "whatsapp"),
    )
    await deliver(client, "/webhooks/messenger", fb_text("m_1", "hello", ts=NOW_MS))
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "hi"))
    channels = await until(
        client,
        auth("owner", tenant.account_id),
        # The worker marks the channel, then notes the error: wait for both, not only the first.
        lambda c: (
            c["messenger"]["dead_letters"] == 1
            and c["whatsapp"]["needs_reauthorisation"]
            and c["whatsapp"]["last_error"] is not None
        ),
    )
    messenger, whatsapp = channels["messenger"], channels["whatsapp"]
    assert messenger["last_error"].startswith("graph 368") and messenger["last_error_at"] is not None
    assert messenger["dead_letters_24h"] == 1 and messenger["inbox_pending"] == 0
    assert messenger["needs_reauthorisation"] is False and messenger["status"] == "active"
    assert whatsapp["status"] == "needs_reauth" and whatsapp["last_error"].startswith("graph 190")
    assert whatsapp["inbox_pending"] == 1 and whatsapp["dead_letters"] == 0
    for channel in (messenger, whatsapp):
        assert channel["last_delivery_at"] is not None
    [stored] = database.rows(settings, "SELECT last_delivery_at FROM channels WHERE external_id = ?", (PHONE_ID,))
    assert stored["last_delivery_at"] is not None


async def until(client: TestClient, headers: dict[str, str], done: Any, within: float = 15.0) -> dict[str, Any]:
    """Poll the status page (as a dashboard would) until `done(channels by platform)` holds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        channels = by_platform(await expect(await client.get(WEBHOOKS, headers=headers), 200))
        if done(channels):
            return channels
        assert asyncio.get_running_loop().time() < deadline, channels
        await asyncio.sleep(0.05)


async def test_pending_events_count_as_inbox_depth(client: TestClient, settings: Settings) -> None:
    """Workers off (the test settings' default): delivered events stay pending."""
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    for n in range(3):
        await deliver(client, "/webhooks/whatsapp", wa_text(f"wamid.{n}", "hi", wa_id=f"1555000000{n}"))
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.0", "hi", wa_id="15550000000"))  # a retry
    body = await expect(await client.get(WEBHOOKS, headers=auth("owner", tenant.account_id)), 200)
    [channel] = body["channels"]
    assert channel["inbox_pending"] == 3 and channel["external_id"] == PHONE_ID


async def test_channels_are_scoped_by_account(client: TestClient) -> None:
    acme, globex = await provision(client, name="Acme"), await provision(client, name="Globex")
    await connect_channel(client, acme, "whatsapp", PHONE_ID)
    await connect_channel(client, globex, "messenger", PAGE_ID)
    body = await expect(await client.get(WEBHOOKS, headers=auth("owner", globex.account_id)), 200)
    assert [c["external_id"] for c in body["channels"]] == [PAGE_ID]
    everything = await expect(await client.get(WEBHOOKS, headers=auth()), 200)
    assert {c["account_id"] for c in everything["channels"]} == {acme.account_id, globex.account_id}
    one = await expect(await client.get(WEBHOOKS, params={"account_id": acme.account_id}, headers=auth()), 200)
    assert [c["account_id"] for c in one["channels"]] == [acme.account_id]
    other = await client.get(
        WEBHOOKS, params={"account_id": acme.account_id}, headers=auth("viewer", globex.account_id)
    )
    await expect(other, 404)
    await expect(await client.get(WEBHOOKS, params={"account_id": "acc_nope"}, headers=auth()), 404)
