"""Regressions for defects found in review: each test names the failure it pins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from core.chat import ChatMessage
from core.errors import UpstreamUnavailable
from core.llm import LLMClient, LLMRequest
from core.storage.migrations import apply_migrations
from gateway.settings import Settings, SettingsError
from tests.support.database import open_database, scratch_url, sqlite_connection
from tests.support.harness import expect, provision

REQUEST = LLMRequest("gpt-4o-mini", [ChatMessage(role="user", content="hi")], 50)


async def test_cancel_while_begin_waits_does_not_wedge_the_writer(tmp_path: Path) -> None:
    """Was: a cancellation during BEGIN IMMEDIATE left the shared connection mid-transaction for good."""
    url = scratch_url(tmp_path, "w.db")
    async with open_database(url) as db:
        await apply_migrations(db)
        with closing(sqlite_connection(url, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

            async def write() -> None:
                async with db.transaction() as tx:
                    await tx.execute("CREATE TABLE t1 (x INTEGER)")

            task = asyncio.create_task(write())
            await asyncio.sleep(0.2)  # now waiting in busy_timeout
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            other.execute("COMMIT")
        async with db.transaction() as tx:  # the writer works again
            await tx.execute("CREATE TABLE t2 (x INTEGER)")
        assert await db.fetch_one("SELECT COUNT(*) AS n FROM t2") is not None


@pytest.fixture
async def odd_upstream(aiohttp_server: Any) -> AsyncIterator[tuple[list[Any], str]]:
    """An OpenAI-compatible server that answers whatever the test queues: a body, or a trickle."""
    answers: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        answer = answers.pop(0)
        if answer == "trickle":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(40):
                await response.write(b" ")
                await asyncio.sleep(0.1)
            return response
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    server = await aiohttp_server(app)
    yield answers, str(server.make_url("/v1"))


def client_for(url: str, **kwargs: Any) -> LLMClient:
    options = {"attempt_timeout": 0.5, "max_attempts": 1, "total_budget": 1.0, **kwargs}
    return LLMClient.create(api_key="sk-test", base_url=url, **options)


async def test_a_trickling_upstream_is_cut_at_the_attempt_timeout(odd_upstream: tuple[list[Any], str]) -> None:
    """Was: the SDK timeout is per read, so a server sending a byte every 100 ms kept the call alive for 4 s."""
    answers, url = odd_upstream
    answers.append("trickle")
    llm = client_for(url)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamUnavailable) as failed:
        await llm.complete(REQUEST)
    assert failed.value.code == "timeout"
    assert asyncio.get_running_loop().time() - started < 2.0
    await llm.close()


def completion(**overrides: Any) -> dict[str, Any]:
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    "body",
    [
        completion(choices=[{"index": 0, "message": None}]),
        completion(usage=None),
        completion(usage="lots"),
        completion(usage={"prompt_tokens": -50000, "completion_tokens": 1}),
        completion(usage={"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 9}}),
        completion(usage={"prompt_tokens": 5.5, "completion_tokens": 1}),
        completion(choices=[]),
    ],
    ids=["null-message", "null-usage", "string-usage", "negative", "cached-over-prompt", "float", "no-choices"],
)
async def test_untrustworthy_bodies_are_upstream_failures_not_charges(
    odd_upstream: tuple[list[Any], str], body: dict[str, Any]
) -> None:
    """Was: a null message was a 500; a negative usage was charged, handing tokens back to the account."""
    answers, url = odd_upstream
    answers.append(body)
    llm = client_for(url)
    with pytest.raises(UpstreamUnavailable) as failed:
        await llm.complete(REQUEST)
    assert failed.value.code == "malformed_response"
    await llm.close()


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


async def test_deeply_nested_json_is_400(client: TestClient) -> None:
    """Was: RecursionError escaped the JSON reader and answered 500."""
    tenant = await provision(client)
    headers = {**tenant.key_header, "Content-Type": "application/json"}
    response = await client.post("/api/messages/relay", data="[" * 100_000, headers=headers)
    assert (await expect(response, 400))["error"]["code"] == "bad_request"


def test_reservation_ttl_must_outlive_two_model_calls() -> None:
    """Was: a TTL shorter than a turn let the sweeper free tokens a live call still held."""
    with pytest.raises(SettingsError, match="RESERVATION_TTL_SECONDS"):
        Settings.from_env({"RESERVATION_TTL_SECONDS": "60", "LLM_TOTAL_BUDGET": "30"})
    assert Settings.from_env({"RESERVATION_TTL_SECONDS": "90", "LLM_TOTAL_BUDGET": "30"}).reservation_ttl_seconds == 90


def test_openai_sdk_is_the_async_client() -> None:
    assert isinstance(client_for("http://127.0.0.1:9/v1").sdk, openai.AsyncOpenAI)
