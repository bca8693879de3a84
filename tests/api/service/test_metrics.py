"""`GET /metrics`: after real traffic (a relay call, signed webhooks answered by the workers), the counters say
exactly what happened, in the Prometheus text format, with no account ids or phone numbers in any label. Who may
scrape: with METRICS_TOKEN set, its bearer only; without it, anyone, but only on a loopback address."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph, GraphFault
from sandbox.fakes.openai_server import FakeOpenAI, Fault
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import PHONE_ID, WA_USER, settled, wa_text
from tests.support.harness import auth, connect_channel, expect, provision, relay, signed

PUBLIC_HOST = "192.0.2.10"  # a documentation address: any address other than loopback is public here
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient, headers: dict[str, str] | None = None) -> tuple[str, Samples]:
    response = await client.get("/metrics", headers=headers or {})
    text = await expect(response, 200)
    assert response.content_type == "text/plain" and "version=0.0.4" in response.headers["Content-Type"]
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Any, Settings]:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    return client, tenant, settings


async def test_counters_follow_a_relay_and_webhooks_processed_by_workers(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    fake_openai.script(Fault.rate_limit(retry_after=0.01))  # the relay's first attempt: retried, then answered
    await expect(await relay(client, tenant, "What are your opening hours?"), 200)
    await expect(await client.post("/api/messages/relay", json={"user_id": "u", "message": "hi"}), 401)

    raw, headers = signed(wa_text("wamid.1", "Do you deliver?"))
    await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 200)  # Meta's retry
    await expect(await client.post("/webhooks/whatsapp", data=raw, headers={"Content-Type": "application/json"}), 401)
    await settled(settings)
    fake_graph.fail_text_sends_with(GraphFault(131047))  # 24-hour window closed: recorded, not retried
    raw, headers = signed(wa_text("wamid.2", "Still there?", wa_id="15550009999"))
    await expect(await client.post("/api/messaging/whatsapp", data=raw, headers=headers), 200)
    rows = await settled(settings)
    assert [r["state"] for r in rows] == ["done", "undeliverable"]

    # An event's processing time is observed once its worker task ends, a moment after its last commit.
    deadline = time.monotonic() + 5
    while (
        value((samples := (await scrape(client))[1]), "nexus_inbox_event_processing_seconds_count", kind="message") < 2
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    text, samples = await scrape(client)
    assert value(samples, "nexus_relay_requests_total", status="200") == 1
    assert value(samples, "nexus_relay_requests_total", status="401") == 1
    assert value(samples, "nexus_webhook_deliveries_total", platform="whatsapp", result="accepted") == 2
    assert value(samples, "nexus_webhook_deliveries_total", platform="whatsapp", result="duplicate") == 1
    assert value(samples, "nexus_webhook_deliveries_total", platform="whatsapp", result="unsigned") == 1
    assert value(samples, "nexus_inbox_events_total", platform="whatsapp", outcome="stored") == 2
    assert value(samples, "nexus_inbox_events_total", platform="whatsapp", outcome="duplicate") == 1
    assert value(samples, "nexus_inbox_event_processing_seconds_count", kind="message") == 2
    assert value(samples, "nexus_inbox_depth", state="pending") == 0
    # Every signed delivery's wait for its inbox commit is timed (duplicates too); the pool's current allowance.
    assert value(samples, "nexus_webhook_commit_seconds_count") == 3
    assert 1 <= value(samples, "nexus_inbox_worker_limit") <= settings.workers
    assert value(samples, "nexus_openai_errors_total", code="rate_limit_exceeded") == 1
    assert value(samples, "nexus_graph_errors_total", code="131047", action="window_closed") == 1

    usage = database.rows(settings, "SELECT * FROM usage_records")
    assert len(usage) == 3 and {u["outcome"] for u in usage} == {"ok"}
    model = "gpt-4o-mini"
    assert value(samples, "nexus_llm_calls_total", model=model, outcome="ok") == 3
    assert value(samples, "nexus_llm_call_seconds_count", model=model) == 3
    for kind in ("prompt", "completion"):
        reported = sum(u[f"{kind}_tokens"] for u in usage)
        assert reported > 0 and value(samples, "nexus_llm_tokens_total", model=model, kind=kind) == reported
    cost = sum(u["cost_nanousd"] for u in usage) / 1e9
    assert cost > 0 and value(samples, "nexus_llm_cost_usd_total", model=model) == pytest.approx(cost)
    # Bounded labels: no account, bot or customer identifiers anywhere in the exposition.
    for secret in (tenant.account_id, tenant.bot_id, WA_USER, "15550009999", PHONE_ID):
        assert secret not in text


async def test_inbox_depth_is_read_from_the_database_at_each_scrape(client: TestClient) -> None:
    """Workers off: delivered events stay pending, and the gauge shows them without any hook."""
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    _, samples = await scrape(client)
    assert value(samples, "nexus_inbox_depth", state="pending") == 0
    for n in range(3):
        raw, headers = signed(wa_text(f"wamid.{n}", "hi", wa_id=f"1555000000{n}"))
        await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    _, samples = await scrape(client)
    assert value(samples, "nexus_inbox_depth", state="pending") == 3
    assert value(samples, "nexus_inbox_depth", state="dead") == 0


async def test_a_metrics_token_is_required_when_configured(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, metrics_token="scrape-me-0123456789"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-me-0123456789"}):
        answer = await client.get("/metrics", headers=headers)
        assert (await expect(answer, 401))["error"]["code"] == "unauthorized"
    # A JWT of the admin API is not a metrics token either.
    await expect(await client.get("/metrics", headers=auth()), 401)
    _, samples = await scrape(client, {"Authorization": "Bearer scrape-me-0123456789"})
    assert value(samples, "nexus_inbox_depth", state="pending") == 0


async def test_metrics_need_a_token_on_a_public_address(make_client: MakeClient, settings: Settings) -> None:
    public = await make_client(replace(settings, host=PUBLIC_HOST))

    answer = await public.get("/metrics")

    body = await expect(answer, 503)
    assert body["error"]["code"] == "not_configured"
    assert "set METRICS_TOKEN to expose /metrics on a non-loopback address" in body["error"]["message"]
    assert "relay_requests" not in str(body)


async def test_metrics_with_a_token_on_a_public_address_or_open_on_loopback(
    make_client: MakeClient, settings: Settings, tmp_path: Any
) -> None:
    public = await make_client(replace(settings, host=PUBLIC_HOST, metrics_token="scrape-me"))
    await expect(await public.get("/metrics"), 401)
    scraped = await public.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status == 200 and "# TYPE" in await scraped.text()
    (tmp_path / "v6").mkdir()
    loopback_v6 = await make_client(replace(settings, host="::1", database_url=database.scratch_url(tmp_path / "v6")))
    assert (await loopback_v6.get("/metrics")).status == 200


async def test_each_app_has_its_own_registry(make_client: MakeClient, settings: Settings, tmp_path: Any) -> None:
    first = await make_client(settings)
    second = await make_client(replace(settings, database_url=database.scratch_url(tmp_path, "second.db")))
    await expect(await first.post("/api/messages/relay", json={"user_id": "u", "message": "hi"}), 401)
    _, samples = await scrape(second)
    assert value(samples, "nexus_relay_requests_total", status="401") == 0
    _, samples = await scrape(first)
    assert value(samples, "nexus_relay_requests_total", status="401") == 1
