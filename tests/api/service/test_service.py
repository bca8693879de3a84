"""Health and readiness: GET /healthz and GET /readyz, as a load balancer or an orchestrator polls them; readiness
only reads, so it answers while another process holds the database's write lock."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.support.database import sqlite_connection
from tests.support.harness import expect


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert await expect(await client.get("/healthz"), 200) == {"status": "ok"}
    body = await expect(await client.get("/readyz"), 200)
    assert body == {"status": "ready", "checks": {"database": True, "migrations": True, "llm_configured": True}}


async def test_health_and_readiness_answer_head_as_monitors_send_it(client: TestClient) -> None:
    """Was 405 for a while: load balancers and uptime monitors often poll with HEAD."""
    for path in ("/healthz", "/readyz", "/api/openapi.json"):
        response = await client.head(path)
        assert response.status == 200, path
        assert await response.read() == b""


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
