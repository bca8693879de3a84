"""Health and readiness: GET /healthz and GET /readyz, as a load balancer or an orchestrator polls them."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.support.harness import expect


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert await expect(await client.get("/healthz"), 200) == {"status": "ok"}
    body = await expect(await client.get("/readyz"), 200)
    assert body == {"status": "ready", "checks": {"database": True, "migrations": True, "llm_configured": True}}
