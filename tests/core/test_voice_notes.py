"""Voice notes are heard: downloaded from Meta (never on the acknowledgement path), transcribed and charged, and the
transcript is the customer's message; a voice note that cannot be had gets a clear answer, never silence."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI, Fault
from tests.conftest import MakeClient
from tests.support import database
from tests.support.audio import voice_note
from tests.support.channel_traffic import (
    NOW_MS,
    NOW_S,
    PAGE_ID,
    PHONE_ID,
    PSID,
    WA_USER,
    deliver,
    fb_event,
    settled,
    wa_message,
)
from tests.support.harness import Tenant, auth, connect_channel, expect, provision

MEDIA_ID = "1200000000000001"


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings, monkeypatch: Any) -> tuple[TestClient, Tenant, Settings]:
    monkeypatch.setattr("core.channel_worker._BACKOFF_MS", (20, 20, 20, 20, 20))
    # The fakes serve Meta's media from this machine: the operator allows that host.
    settings = replace(settings, workers=2, media_allowed_hosts=("127.0.0.1",))
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return client, tenant, settings


def said(fake_openai: FakeOpenAI, audio: bytes, words: str) -> None:
    fake_openai.transcripts[hashlib.sha256(audio).hexdigest()] = words


def wa_voice(wamid: str, media_id: str = MEDIA_ID, ts: int = NOW_S) -> dict[str, Any]:
    audio = {"id": media_id, "mime_type": "audio/ogg; codecs=opus", "sha256": "x", "voice": True}
    return wa_message(wamid, {"type": "audio", "audio": audio}, ts=ts)


async def test_a_whatsapp_voice_note_is_answered_from_its_transcript_and_charged(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    audio = voice_note(6.0, "potsdam")
    fake_graph.media[MEDIA_ID] = (audio, "audio/ogg")
    said(fake_openai, audio, "Do you deliver to Potsdam?")
    await deliver(client, "/webhooks/whatsapp", wa_voice("wamid.v1"))
    [row] = await settled(settings)
    assert row["state"] == "done"
    # Downloaded with the channel's token, sent as voice.ogg (OpenAI refuses .oga/.opus for the same bytes).
    assert {token for _, token in fake_graph.media_downloads} == {f"token-{PHONE_ID}"}
    assert fake_openai.transcription_calls == [("gpt-4o-mini-transcribe", "voice.ogg", len(audio))]
    assert fake_openai.calls[0].messages[-1] == {"role": "user", "content": "Do you deliver to Potsdam?"}
    assert fake_graph.texts_to("+" + WA_USER) == ["You said: Do you deliver to Potsdam?"]

    # Both calls are charged to the account, each with its usage row, priced from the table.
    usage = database.rows(
        settings, "SELECT model, prompt_tokens, completion_tokens, cost_nanousd FROM usage_records ORDER BY created_at"
    )
    assert [u["model"] for u in usage] == ["gpt-4o-mini-transcribe", "gpt-4o-mini"]
    heard = usage[0]
    assert heard["prompt_tokens"] == 102 and heard["completion_tokens"] > 0  # 6 s at 17 audio tokens a second
    assert heard["cost_nanousd"] == heard["prompt_tokens"] * 3000 + heard["completion_tokens"] * 5000
    used = database.quota_row(settings, tenant.account_id)["used_tokens"]
    assert used == sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage)

    owner = auth("owner", tenant.account_id)
    [summary] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    detail = await expect(await client.get(f"/api/conversations/{summary['id']}", headers=owner), 200)
    first = detail["messages"][0]
    assert (first["role"], first["content"], first["note"]) == ("user", "Do you deliver to Potsdam?", "transcript")


async def test_a_messenger_voice_clip_is_fetched_from_its_cdn_url(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph, graph_url: str
) -> None:
    client, _, settings = live
    clip = voice_note(3.0, "hours")
    fake_graph.cdn["audioclip-1.mp4"] = (clip, "video/mp4")
    said(fake_openai, clip, "When do you open tomorrow?")
    message = {
        "mid": "m_voice",
        "attachments": [{"type": "audio", "payload": {"url": f"{graph_url}/cdn/audioclip-1.mp4"}}],
    }
    await deliver(client, "/webhooks/messenger", fb_event({"message": message}, ts=NOW_MS))
    await settled(settings)
    assert [name for _, name, _ in fake_openai.transcription_calls] == ["audio.mp4"]
    assert fake_graph.texts_to(PSID) == ["You said: When do you open tomorrow?"]


@pytest.mark.parametrize("problem", ["expired", "host", "too_large", "too_long", "silent"])
async def test_a_voice_note_that_cannot_be_had_gets_a_clear_answer_and_no_model_call(
    problem: str, make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    settings = replace(
        settings,
        workers=2,
        media_allowed_hosts=("cdn.example.net",) if problem == "host" else ("127.0.0.1",),
        media_max_bytes=2048 if problem == "too_large" else settings.media_max_bytes,
        media_max_audio_seconds=60,
    )
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    audio = voice_note(600.0 if problem == "too_long" else 4.0, "x" * (4000 if problem == "too_large" else 10))
    if problem != "expired":  # an expired (or unknown) media id: Graph answers error 100
        fake_graph.media[MEDIA_ID] = (audio, "audio/ogg")
    if problem != "silent":
        said(fake_openai, audio, "Hello?")
    await deliver(client, "/webhooks/whatsapp", wa_voice("wamid.v1"))
    [row] = await settled(settings)
    assert row["state"] == "done" and fake_openai.calls == []
    [answer] = fake_graph.texts_to("+" + WA_USER)
    expected = {
        "expired": "couldn't open your voice message",
        "host": "couldn't open your voice message",
        "too_large": "couldn't open your voice message",
        "too_long": "couldn't understand your voice message",
        "silent": "couldn't hear anything",
    }[problem]
    assert expected in answer
    if problem in ("host", "too_long", "expired"):
        assert fake_openai.transcription_calls == []  # nothing downloaded from that host, nothing sent or charged
        assert database.quota_row(settings, tenant.account_id)["used_tokens"] == 0
    if problem == "host":
        assert fake_graph.media_downloads == []


async def test_a_retried_voice_note_is_not_transcribed_twice(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    """The transcript is stored with its charge: when the model fails after it, the retry reuses it."""
    client, _, settings = live
    audio = voice_note(5.0, "rye")
    fake_graph.media[MEDIA_ID] = (audio, "audio/ogg")
    said(fake_openai, audio, "Is there rye bread today?")
    fake_openai.script(*[Fault.server_error()] * 3)  # the first attempt's model call fails for good
    await deliver(client, "/webhooks/whatsapp", wa_voice("wamid.v1"))
    [row] = await settled(settings)
    assert row["state"] == "done" and row["attempts"] >= 2
    assert len(fake_openai.transcription_calls) == 1
    assert fake_graph.texts_to("+" + WA_USER) == ["You said: Is there rye bread today?"]
    transcriptions = database.rows(
        settings, "SELECT COUNT(*) AS n FROM usage_records WHERE model = 'gpt-4o-mini-transcribe'"
    )
    assert transcriptions[0]["n"] == 1


async def test_a_failing_transcription_is_retried_then_answered_in_words(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    audio = voice_note(5.0, "oops")
    fake_graph.media[MEDIA_ID] = (audio, "audio/ogg")
    fake_openai.transcription_failures.extend([500] * 100)
    await deliver(client, "/webhooks/whatsapp", wa_voice("wamid.v1"))
    [row] = await settled(settings, within=30)
    assert row["state"] == "done" and fake_openai.calls == []
    [answer] = fake_graph.texts_to("+" + WA_USER)
    assert "couldn't understand your voice message" in answer
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == 0  # a failed call costs nothing


async def test_with_transcription_off_a_voice_note_gets_the_bots_media_answer(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client = await make_client(replace(settings, workers=2, transcription_model=""))
    tenant = await provision(client, bot={"media_reply": "Please type your question."})
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    fake_graph.media[MEDIA_ID] = (voice_note(3.0), "audio/ogg")
    await deliver(client, "/webhooks/whatsapp", wa_voice("wamid.v1"))
    await settled(settings)
    assert fake_openai.transcription_calls == [] and fake_graph.media_downloads == []
    assert fake_graph.texts_to("+" + WA_USER) == ["Please type your question."]


def test_a_voice_notes_length_is_read_from_its_container_and_never_trusted_below_its_size() -> None:
    from core.media.audio import HIGHEST_BITRATE, mp4_seconds, seconds_at_most

    # An MP4 (Messenger, Instagram voice clips) declares its length in its movie header.
    mvhd = b"mvhd" + bytes([0, 0, 0, 0]) + b"\x00" * 8 + (1000).to_bytes(4, "big") + (95_000).to_bytes(4, "big")
    clip = b"\x00\x00\x00\x20ftypM4A " + b"\x00\x00\x00\x6c" + mvhd + b"\x00" * 900_000
    assert mp4_seconds(clip) == 95.0 and seconds_at_most(clip, "audio/mp4") == 95.0
    # A header claiming one second for 3 MB of audio is not believed: the bytes bound the length.
    forged = voice_note(1.0, "x") + b"\x00" * 3_000_000
    assert seconds_at_most(forged, "audio/ogg") == pytest.approx(len(forged) * 8 / HIGHEST_BITRATE)
