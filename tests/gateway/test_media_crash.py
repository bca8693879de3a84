"""A voice note survives the process dying while it is being downloaded or transcribed: `python -m gateway` is
killed (SIGKILL) with the download, or the transcription, in flight, started again on the same database, and the
customer gets exactly one answer; a transcription the dead process never paid for is charged once."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.audio import voice_note
from tests.support.channel_traffic import NOW_S, PHONE_ID, WA_USER, wa_message
from tests.support.crash_load import START_TIMEOUT_SECONDS, gateway_env
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.harness import connect_channel, provision, signed

MEDIA_ID = "1400000000000001"
WORDS = "Can I still order a birthday cake for Saturday?"


@pytest.fixture
async def world(
    tmp_path: Path, aiohttp_server: Any
) -> AsyncIterator[tuple[GatewayProcess, FakeOpenAI, FakeGraph, str]]:
    openai, graph = FakeOpenAI(), FakeGraph(implicit_grants=True)
    openai_url = str((await aiohttp_server(openai.app)).make_url("/v1"))
    graph_url = str((await aiohttp_server(graph.app)).make_url("")).rstrip("/")
    database_url = database.migrated_url(tmp_path)
    env = gateway_env(
        database_url,
        openai_url,
        graph_url,
        free_port(),
        WORKERS="2",
        INBOX_LEASE_SECONDS="3",
        LLM_TOTAL_BUDGET="5",
        LLM_ATTEMPT_TIMEOUT="5",
        RESERVATION_TTL_SECONDS="40",
        MEDIA_ALLOWED_HOSTS="127.0.0.1",
    )
    gateway = GatewayProcess(env, tmp_path / "gateway.log", tmp_path)
    try:
        gateway.start()
        await gateway.wait_ready(START_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(base_url=gateway.base_url) as admin:
            tenant = await provision(admin)  # type: ignore[arg-type]
            await connect_channel(admin, tenant, "whatsapp", PHONE_ID)  # type: ignore[arg-type]
        audio = voice_note(5.0, "cake")
        graph.media[MEDIA_ID] = (audio, "audio/ogg")
        openai.transcripts[hashlib.sha256(audio).hexdigest()] = WORDS
        yield gateway, openai, graph, database_url
    finally:
        gateway.close()


async def _until(condition: Any, within: float, what: str, gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {within} s:\n{gateway.log()}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("stage", ["download", "transcription"])
async def test_sigkill_mid_voice_note_answers_once(stage: str, world: Any) -> None:
    gateway, openai, graph, database_url = world
    if stage == "download":
        graph.media_latency = 30.0
    else:
        openai.transcription_latency = 30.0
    audio = {"id": MEDIA_ID, "mime_type": "audio/ogg; codecs=opus", "voice": True}
    raw, headers = signed(wa_message("wamid.voice", {"type": "audio", "audio": audio}, ts=NOW_S))
    url = f"{gateway.base_url}/webhooks/whatsapp"
    async with aiohttp.ClientSession() as session, session.post(url, data=raw, headers=headers) as response:
        assert response.status == 200  # committed to the inbox before the answer

    in_flight = (
        (lambda: graph.media_in_flight > 0) if stage == "download" else (lambda: openai.transcriptions_in_flight > 0)
    )
    await _until(in_flight, 20, f"no {stage} in flight", gateway)
    gateway.send_signal(signal.SIGKILL)
    assert await gateway.wait_exit(10) == -signal.SIGKILL
    graph.media_latency = openai.transcription_latency = 0.0
    gateway.start()
    await gateway.wait_ready(START_TIMEOUT_SECONDS)

    await _until(lambda: graph.texts_to("+" + WA_USER), 30, "no answer after the restart", gateway)
    await asyncio.sleep(1.0)  # nothing more comes
    assert graph.texts_to("+" + WA_USER) == [f"You said: {WORDS}"]
    assert [c.messages[-1]["content"] for c in openai.calls] == [WORDS]
    charged = database.rows(
        database_url, "SELECT COUNT(*) AS n FROM usage_records WHERE model = 'gpt-4o-mini-transcribe'"
    )
    assert charged[0]["n"] == 1  # the cut attempt was never charged; the one that finished, once
