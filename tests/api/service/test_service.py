"""Health and readiness: GET /healthz and GET /readyz, as a load balancer or an orchestrator polls them; readiness
only reads, so it answers while another process holds the database's write lock."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.support import database
from tests.support.channel_traffic import PHONE_ID, whatsapp_text
from tests.support.database import sqlite_connection
from tests.support.harness import Tenant, connect_channel, expect, provision, signed


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert await expect(await client.get("/healthz"), 200) == {"status": "ok"}
    body = await expect(await client.get("/readyz"), 200)
    assert body == {"status": "ready", "checks": {"database": True, "migrations": True, "llm_configured": True}}


async def test_readiness_says_not_ready_while_the_database_refuses_writes(
    client: TestClient, settings: Settings, tenant_with_channel: Tenant
) -> None:
    """Was: with the disk full every webhook failed while /readyz kept answering ready."""
    refused = database.writes_refused(settings)
    await asyncio.to_thread(refused.__enter__)  # in a thread: the app may be mid-transaction
    try:
        raw, headers = signed(whatsapp_text("wamid.full"))
        await expect(await client.post("/webhooks/whatsapp", data=raw, headers=headers), 503)
        body = await expect(await client.get("/readyz"), 503)
        assert body["status"] == "not_ready" and body["checks"]["database"] is False
    finally:
        await asyncio.to_thread(refused.__exit__, None, None, None)
    assert (await expect(await client.get("/readyz"), 200))["status"] == "ready"


@pytest.fixture
async def tenant_with_channel(client: TestClient) -> Tenant:
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    return tenant


async def test_health_and_readiness_answer_head_as_monitors_send_it(client: TestClient) -> None:
    """Was 405 for a while: load balancers and uptime monitors often poll with HEAD."""
    for path in ("/healthz", "/readyz", "/api/openapi.json"):
        response = await client.head(path)
        assert response.status == 200, path
        assert await response.read() == b""


@pytest.mark.sqlite_only
async def test_readiness_answers_while_another_process_holds_the_write_lock(
    client: TestClient, settings: Settings
) -> None:
    """Was: /readyz wrote (CREATE TABLE IF NOT EXISTS) and answered 500 after the busy timeout."""
    # Another process, played by a thread: blocking the event loop would stall our own commits, not theirs.
    other = await asyncio.to_thread(sqlite_connection, settings, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
        body = await expect(await client.get("/readyz"), 200)
        await asyncio.to_thread(other.execute, "ROLLBACK")
    finally:
        other.close()
    assert body["status"] == "ready"
