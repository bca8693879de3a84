"""JSON request bodies (api/bodies.py), read the same way on every surface: malformed (or nested too deep to
read), too large (declared or chunked), too slow to arrive, or carrying text that cannot be stored, a body is
refused with a 400, 413 or 408 in the error envelope, and nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.bodies import LIMITS, Limits, read_limited
from api.errors import ClientDisconnected
from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support.admin_api import ADMIN, PLAN, expect_error, get
from tests.support.harness import auth, expect, provision


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"[1, 2]", b'"plan"', b'{"name": NaN}', b"\xff\xfe{}"],
    ids=["broken", "empty", "array", "string", "nan", "bad-utf8"],
)
async def test_bad_json_body_is_400(client: TestClient, data: bytes) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    await expect_error(await client.post(f"{ADMIN}/plans", data=data, headers=headers), 400)
    assert (await get(client, "/plans"))["plans"] == []


async def test_body_over_the_limit_is_413(client: TestClient) -> None:
    body = json.dumps({**PLAN, "name": "x" * (300 * 1024)}).encode()
    headers = {**auth(), "Content-Type": "application/json"}
    await expect_error(await client.post(f"{ADMIN}/plans", data=body, headers=headers), 413)
    assert (await get(client, "/plans"))["plans"] == []


async def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    async def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}'

    headers = {**auth(), "Content-Type": "application/json"}
    await expect_error(await client.post(f"{ADMIN}/plans", data=chunks(), headers=headers), 413)
    assert (await get(client, "/plans"))["plans"] == []


async def test_a_small_chunked_body_over_a_small_limit_is_413(make_client: MakeClient, settings: Settings) -> None:
    """Sent whole in one chunk, so all of it may be in before the handler reads it."""
    client = await make_client(replace(settings, max_body_bytes=1024))

    async def one_chunk() -> Any:
        yield json.dumps({**PLAN, "name": "x" * 2048}).encode()

    headers = {**auth(), "Content-Type": "application/json"}
    await expect_error(await client.post(f"{ADMIN}/plans", data=one_chunk(), headers=headers), 413)
    assert (await get(client, "/plans"))["plans"] == []
    await expect(await client.post(f"{ADMIN}/plans", json=PLAN, headers=auth()), 201)  # a body within it is read


async def test_deeply_nested_json_is_400(client: TestClient) -> None:
    """Was: RecursionError escaped the JSON reader and answered 500."""
    tenant = await provision(client)
    headers = {**tenant.key_header, "Content-Type": "application/json"}
    response = await client.post("/api/messages/relay", data="[" * 100_000, headers=headers)
    assert (await expect(response, 400))["error"]["code"] == "bad_request"


# Regression: a lone UTF-16 surrogate is legal JSON (`"\ud800"`) but not encodable text; it used to reach the
# SQLite driver, which raised UnicodeEncodeError, and the caller got a 500 instead of a 400 naming the field.


@pytest.mark.parametrize("route", ["plan", "account", "bot"])
async def test_lone_surrogate_in_a_string_is_400_not_500(client: TestClient, route: str) -> None:
    tenant = await provision(client)
    plans_before = await get(client, "/plans")
    template = {
        "plan": (
            "POST",
            "/plans",
            '{"name": "x\\ud800", "monthly_token_limit": 1, "models": ["gpt-4o-mini"], "default_model": "gpt-4o-mini"}',
        ),
        "account": ("PATCH", f"/accounts/{tenant.account_id}", '{"name": "Acme \\udfff"}'),
        "bot": ("POST", f"/accounts/{tenant.account_id}/bots", '{"name": "b", "persona": "Hi \\ud83d"}'),
    }
    method, path, data = template[route]
    headers = {**auth(), "Content-Type": "application/json"}
    await expect_error(await client.request(method, ADMIN + path, data=data, headers=headers), 400)
    assert await get(client, "/plans") == plans_before
    assert (await get(client, f"/accounts/{tenant.account_id}"))["name"] == "Acme"
    assert len((await get(client, f"/accounts/{tenant.account_id}/bots"))["bots"]) == 1


async def partial_request(client: TestClient, path: str, headers: dict[str, str]) -> tuple[Any, Any]:
    """A raw connection that sends a request's headers and the first bytes of a 1,000-byte body, then nothing."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}".encode())
    writer.write(b'Content-Length: 1000\r\n\r\n{"name": ')
    await writer.drain()
    return reader, writer


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_is_closed(
    make_client: MakeClient, settings: Settings
) -> None:
    """Was: a client that sent headers and part of a body held its connection (and a handler) for 75 s."""
    client = await make_client(replace(settings, body_read_timeout_seconds=1))
    reader, writer = await partial_request(client, f"{ADMIN}/plans", auth())
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), timeout=10)  # read() ends only when the server closes
    writer.close()
    await writer.wait_closed()
    assert time.monotonic() - started < 5
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.split()[1] == "408"
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert (await get(client, "/plans"))["plans"] == []


async def test_a_client_that_hangs_up_after_sending_its_whole_body_is_a_disconnect_not_an_error() -> None:
    """The body came whole with the headers, and the connection was lost before the handler read it: that is the
    client's doing (ClientDisconnected, answered to no one), not a 500 in the operator's log."""
    seen: list[str] = []
    started, handled = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(0.2)  # meanwhile the client hangs up
        try:
            await read_limited(request, 1000)
            seen.append("read")
        except ClientDisconnected:
            seen.append("disconnected")
        finally:
            handled.set()
        return web.Response(text="unheard")

    app = web.Application()
    app[LIMITS] = Limits(1000, 100, 5.0)
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        await asyncio.wait_for(started.wait(), 5)  # the request, its body included, has arrived
        writer.transport.abort()
        await asyncio.wait_for(handled.wait(), 5)
        assert seen == ["disconnected"]
    finally:
        await runner.cleanup()
