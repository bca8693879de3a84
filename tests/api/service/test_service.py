"""The service frame: health, readiness, request ids, the error envelope, logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from gateway.logging import configure_logging
from tests.support.harness import auth, expect, provision, relay


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert await expect(await client.get("/healthz"), 200) == {"status": "ok"}
    body = await expect(await client.get("/readyz"), 200)
    assert body == {"status": "ready", "checks": {"database": True, "migrations": True, "llm_configured": True}}


async def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    generated = (await client.get("/healthz")).headers["X-Request-Id"]
    assert generated.startswith("req_")
    kept = await client.get("/healthz", headers={"X-Request-Id": "upstream-42"})
    assert kept.headers["X-Request-Id"] == "upstream-42"
    forged = await client.get("/healthz", headers={"X-Request-Id": 'x" {"level":"critical"}'})
    assert forged.headers["X-Request-Id"].startswith("req_")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/api/messages/relay", 405, "method_not_allowed"),
        ("GET", "/api/admin/plans/pln_missing", 404, "not_found"),
    ],
)
async def test_errors_use_the_envelope(client: TestClient, method: str, path: str, status: int, code: str) -> None:
    body = await expect(await client.request(method, path, headers=auth()), status)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure_logging("INFO", "json")
    yield
    structlog.reset_defaults()


async def test_logs_are_json_lines_with_request_id_and_no_message_text(
    client: TestClient, json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = await provision(client)
    capsys.readouterr()
    response = await relay(client, tenant, "my phone is +15551234567", user_id="+15551234567")
    await expect(response, 200)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {r["event"] for r in records} >= {"turn_answered", "request"}
    assert all(r["request_id"] == response.headers["X-Request-Id"] for r in records)
    assert all("+15551234567" not in line for line in lines)
