"""Logs (gateway/logging.py): one JSON object per line, each with its request's id, and never what a customer wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from gateway.logging import configure_logging
from tests.support.harness import expect, provision, relay


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
