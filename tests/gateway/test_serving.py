"""Serving as a process (gateway/serving.py), through `python -m gateway`: it says where it listens and with what,
a taken port is one clear line, a signal during start-up ends it cleanly, and a request the HTTP parser refuses is
answered in the error envelope without repeating the header it refused; a client hanging up mid-upload is its
own business, not a 500 of ours."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.storage.postgres_doorbell import PostgresDoorbell
from core.tokens import TokenCounter
from gateway.app import create_app
from gateway.keys import STORAGE
from gateway.serving import GatewayRunner, without_credentials
from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support import database
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.harness import JWT_SECRET, PROJECT_DATA, auth, expect, provision


def gateway_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "DATABASE_URL": database.scratch_url(tmp_path),
        "DATA_DIR": str(PROJECT_DATA),
        **extra,
    }


def json_lines(text: str) -> list[dict[str, object]]:
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


async def test_start_up_logs_where_it_listens_and_what_is_configured_without_secrets(tmp_path: Path) -> None:
    port = free_port()
    env = gateway_env(tmp_path, port, ADMIN_JWT_SECRET=JWT_SECRET, OPENAI_API_KEY="sk-never-shown-0123")
    gateway = GatewayProcess(env, tmp_path / "gateway.log", tmp_path)
    try:
        gateway.start()
        await gateway.wait_ready()
        [listening] = [r for r in json_lines(gateway.log()) if r.get("event") == "listening"]
        assert listening["url"] == f"http://127.0.0.1:{port}"
        assert listening["database"] == without_credentials(env["DATABASE_URL"])
        assert listening["admin_api"] == "enabled" and listening["openai_key"] == "set"
        assert str(listening["secrets_key"]).startswith("not set")
        assert JWT_SECRET not in gateway.log() and "sk-never-shown-0123" not in gateway.log()
        gateway.send_signal(signal.SIGTERM)
        assert await gateway.wait_exit(within=20) == 0
    finally:
        gateway.close()


async def test_a_worker_process_gives_the_cpu_to_web_processes_and_a_web_process_keeps_its_priority(
    tmp_path: Path,
) -> None:
    """WORKER_NICE (default 10): where web and worker processes share cores, a webhook's acknowledgement does not
    wait behind a turn. Only the worker role lowers its priority."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    started = {
        role: GatewayProcess(
            gateway_env(tmp_path / role, free_port()), tmp_path / f"{role}.log", tmp_path, ("serve", "--role", role)
        )
        for role in ("web", "worker")
    }
    try:
        for role, gateway in started.items():
            (tmp_path / role).mkdir()
            gateway.start()
        for gateway in started.values():
            await gateway.wait_ready()
        web, worker = started["web"], started["worker"]
        assert web.proc is not None and worker.proc is not None
        assert os.getpriority(os.PRIO_PROCESS, web.proc.pid) == ours
        assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == min(19, ours + 10)
        [listening] = [r for r in json_lines(worker.log()) if r.get("event") == "listening"]
        assert listening["cpu_priority"] == f"nice {min(19, ours + 10)}"
    finally:
        for gateway in started.values():
            gateway.close()


def test_a_taken_port_is_one_clear_line_and_exit_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway"],
            env=gateway_env(tmp_path, port),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another gateway running? choose another PORT)"
    )
    assert "Traceback" not in done.stdout + done.stderr


async def test_a_signal_during_start_up_ends_the_process_cleanly(tmp_path: Path) -> None:
    """Ctrl-C while the database is being opened and migrated: the process exits promptly, nothing left running
    (a database thread left open used to keep it alive)."""
    gateway = GatewayProcess(gateway_env(tmp_path, free_port()), tmp_path / "gateway.log", tmp_path)
    try:
        gateway.start()
        for _ in range(2000):  # until start-up is under way: the migrations are applied
            if "migrations_applied" in gateway.log():
                break
            await asyncio.sleep(0.005)
        gateway.send_signal(signal.SIGINT)
        assert await gateway.wait_exit(within=15) in (0, 130)
        assert "Traceback" not in gateway.log()
    finally:
        gateway.close()


async def test_an_oversized_authorization_header_gets_the_envelope_and_is_never_repeated(tmp_path: Path) -> None:
    port = free_port()
    gateway = GatewayProcess(gateway_env(tmp_path, port), tmp_path / "gateway.log", tmp_path)
    secret = "eyJsecret" * 1200  # over 8 KB, like a forged or runaway bearer token
    try:
        gateway.start()
        await gateway.wait_ready()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/admin/plans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n".encode())
        await writer.drain()
        answer = (await asyncio.wait_for(reader.read(), timeout=10)).decode()
        writer.close()
        head, _, body = answer.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.") and " 400 " in head.splitlines()[0]
        assert "application/json" in head
        error = json.loads(body)["error"]
        assert error["code"] == "bad_request" and "8190" in error["message"]
        assert "eyJsecret" not in answer
        await asyncio.sleep(0.2)
        assert "eyJsecret" not in gateway.log()
        assert any(r.get("event") == "http_request_refused" for r in json_lines(gateway.log()))
    finally:
        gateway.close()


async def test_a_client_that_hangs_up_mid_upload_is_not_an_error_of_ours(
    settings: Settings, tokens: TokenCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: logged as unhandled_error and counted as a 500 answer in /metrics. Served by the production runner, in
    which (unlike aiohttp's test server) a handler is not cancelled when its client goes away."""
    runner = GatewayRunner(create_app(settings, tokens=tokens), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            tenant = await provision(http)  # type: ignore[arg-type]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /api/messages/relay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {tenant.api_key}\r\nContent-Length: 1000\r\n\r\n".encode()
                + b'{"user_id": "u", "mess'
            )
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()  # gone before the body is complete
            await writer.wait_closed()
            for _ in range(100):
                output = capsys.readouterr().out
                if "client_disconnected" in output:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the disconnect was never logged")
            async with http.get("/metrics") as response:
                metrics = await response.text()
        assert 'nexus_relay_requests_total{status="499"} 1.0' in metrics
        assert 'status="500"' not in metrics
        assert "unhandled_error" not in output + capsys.readouterr().out
    finally:
        await runner.cleanup()


def test_urls_are_logged_without_their_credentials() -> None:
    assert without_credentials("postgresql://gw:s3cret@db.internal:5432/gateway") == (
        "postgresql://***@db.internal:5432/gateway"
    )
    assert without_credentials("https://user@proxy.example/v1") == "https://***@proxy.example/v1"
    assert without_credentials("sqlite:///data/gateway.db") == "sqlite:///data/gateway.db"
    assert without_credentials("postgresql://db.internal/gateway?user=gw&password=s3cret") == (
        "postgresql://db.internal/gateway?user=gw&password=***"
    )


async def test_a_start_loads_the_tokenizers_its_plans_need_and_no_other(
    make_client: MakeClient, aiohttp_client: Any, settings: Settings
) -> None:
    """The first turn after a start (a restart's recovered messages) does not wait for a tokenizer, and one that no
    plan needs (cl100k_base: 30 MB) is never loaded."""
    await provision(await make_client(settings))  # a plan of gpt-4o-mini, gpt-4.1 and gpt-5-mini: all o200k_base
    fresh = TokenCounter(PROJECT_DATA / "tokenizers")
    await aiohttp_client(create_app(settings, tokens=fresh))  # started: its start-up ran
    assert fresh.loaded() == {"o200k_base"}


async def loads(tokens: TokenCounter, encoding: str) -> None:
    for _ in range(250):
        if encoding in tokens.loaded():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{encoding} was never loaded: {sorted(tokens.loaded())}")


async def logged_load(capsys: pytest.CaptureFixture[str], model: str, encoding: str) -> None:
    output = ""
    for _ in range(250):
        output += capsys.readouterr().out
        said = f"encoding={encoding} model={model} "
        if any("tokenizer_loaded" in line and said in line for line in output.splitlines()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no tokenizer_loaded line for {model}: {output[-2000:]}")


async def test_a_plan_made_while_serving_has_its_tokenizer_loaded_before_a_turn_needs_it(
    make_client: MakeClient, aiohttp_client: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first turn on a new plan's model does not wait for its tokenizer (0.1-0.3 s): the process loads it when
    the plan is made, and says so."""
    await provision(await make_client(settings))
    fresh = TokenCounter(PROJECT_DATA / "tokenizers")
    client = await aiohttp_client(create_app(settings, tokens=fresh))
    assert fresh.loaded() == {"o200k_base"}
    plan = {"name": "legacy", "monthly_token_limit": 1000, "models": ["gpt-4"], "default_model": "gpt-4"}
    await expect(await client.post("/api/admin/plans", json=plan, headers=auth()), 201)
    await logged_load(capsys, "gpt-4", "cl100k_base")  # gpt-4 counts with cl100k_base; no turn asked for it
    assert fresh.loaded() == {"o200k_base", "cl100k_base"}

    later = TokenCounter(PROJECT_DATA / "tokenizers")
    await aiohttp_client(create_app(settings, tokens=later))
    assert later.loaded() == {"o200k_base", "cl100k_base"}  # a start loads what every plan offers


async def test_a_plan_changed_to_offer_another_model_has_its_tokenizer_loaded(
    make_client: MakeClient, aiohttp_client: Any, settings: Settings
) -> None:
    tenant = await provision(await make_client(settings))
    fresh = TokenCounter(PROJECT_DATA / "tokenizers")
    client = await aiohttp_client(create_app(settings, tokens=fresh))
    assert fresh.loaded() == {"o200k_base"}
    change = {"models": ["gpt-4o-mini", "gpt-3.5-turbo"]}
    await expect(await client.patch(f"/api/admin/plans/{tenant.plan_id}", json=change, headers=auth()), 200)
    await loads(fresh, "cl100k_base")


@pytest.mark.postgresql_only
async def test_a_plan_made_in_one_process_has_its_tokenizer_loaded_in_the_others(
    make_client: MakeClient, aiohttp_client: Any, settings: Settings
) -> None:
    """Every process serves turns: the one that made the plan rings the doorbell and the others load too."""
    admin = await make_client(settings)
    await provision(admin)
    other = TokenCounter(PROJECT_DATA / "tokenizers")
    app = create_app(settings, tokens=other)
    await aiohttp_client(app)  # another process, as far as the doorbell knows
    doorbell = app[STORAGE].db.doorbell
    assert isinstance(doorbell, PostgresDoorbell)
    await asyncio.wait_for(doorbell.listening.wait(), 10)  # a ring before it listens is heard by its next poll
    assert other.loaded() == {"o200k_base"}
    plan = {"name": "legacy", "monthly_token_limit": 1000, "models": ["gpt-4"], "default_model": "gpt-4"}
    await expect(await admin.post("/api/admin/plans", json=plan, headers=auth()), 201)
    await loads(other, "cl100k_base")
