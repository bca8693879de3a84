"""Photos are seen: a vision model gets a customer's photo as an image part with its caption, its tokens reserved
and charged; the photo is not kept beyond the turn; a model without vision keeps the media answer; an album is
answered once; a photo that cannot be had gets a clear answer."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from core.media.images import image_part, kept_copies
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.core.test_channel_worker import text_only_model
from tests.support import database
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
    wa_text,
)
from tests.support.harness import Tenant, auth, connect_channel, expect, provision
from tests.support.images import photo

MEDIA_ID = "1300000000000001"


@pytest.fixture
async def live(make_client: MakeClient, settings: Settings, monkeypatch: Any) -> tuple[TestClient, Tenant, Settings]:
    monkeypatch.setattr("core.channel_worker._BACKOFF_MS", (20, 20, 20, 20, 20))
    settings = replace(settings, workers=2, media_allowed_hosts=("127.0.0.1",))
    client = await make_client(settings)
    tenant = await provision(client)  # gpt-4o-mini: a vision model
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return client, tenant, settings


def wa_photo(wamid: str, media_id: str = MEDIA_ID, caption: str | None = None, ts: int = NOW_S) -> dict[str, Any]:
    image: dict[str, Any] = {"id": media_id, "mime_type": "image/png", "sha256": "x"}
    if caption is not None:
        image["caption"] = caption
    return wa_message(wamid, {"type": "image", "image": image}, ts=ts)


async def _messages(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    owner = auth("owner", tenant.account_id)
    [summary] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    return (await expect(await client.get(f"/api/conversations/{summary['id']}", headers=owner), 200))["messages"]


async def test_a_photo_with_its_caption_reaches_a_vision_model_and_is_not_kept(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    cake = photo(800, 600)
    fake_graph.media[MEDIA_ID] = (cake, "image/png")
    await deliver(client, "/webhooks/whatsapp", wa_photo("wamid.p1", caption="Is this the cake I ordered?"))
    await settled(settings)
    [call] = fake_openai.calls
    text, image = call.messages[-1]["content"]
    assert text == {"type": "text", "text": "Is this the cake I ordered?"}
    assert image["type"] == "image_url" and image["image_url"]["detail"] == "auto"
    assert base64.b64decode(image["image_url"]["url"].split(",", 1)[1]) == cake
    assert fake_graph.texts_to("+" + WA_USER) == ["You said: Is this the cake I ordered?"]
    # The photo's tokens (OpenAI's formula: 2833 + 4 tiles x 5667 on gpt-4o-mini) were reserved and are charged
    # as reported, within the bound.
    [usage] = database.rows(settings, "SELECT prompt_tokens, reported_usage FROM usage_records")
    assert usage["prompt_tokens"] == call.usage["prompt_tokens"] > 25_501 and usage["reported_usage"] is None

    # The conversation keeps the caption, marked as a photo; the next turn's prompt carries no image.
    first = (await _messages(client, tenant))[0]
    assert (first["content"], first["note"]) == ("Is this the cake I ordered?", "image")
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.t2", "And when can I pick it up?", ts=NOW_S + 30))
    await settled(settings)
    history = fake_openai.calls[-1].messages
    assert all(isinstance(m["content"], str) for m in history)
    assert {"role": "user", "content": "Is this the cake I ordered?"} in history


async def test_a_model_without_vision_keeps_the_media_answer(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    await text_only_model(client, tenant)
    fake_graph.media[MEDIA_ID] = (photo(64, 64), "image/png")
    await deliver(client, "/webhooks/whatsapp", wa_photo("wamid.p1"))
    await settled(settings)
    assert fake_openai.calls == [] and fake_graph.media_downloads == []
    [answer] = fake_graph.texts_to("+" + WA_USER)
    assert "only read text" in answer


async def test_an_album_is_answered_once_and_every_photo_is_kept(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    for n in range(3):
        fake_graph.media[f"13000000000000{n:02d}"] = (photo(100 + n, 100), "image/png")
    for n in range(3):
        body = wa_photo(f"wamid.a{n}", f"13000000000000{n:02d}", caption=f"photo {n}", ts=NOW_S + n)
        await deliver(client, "/webhooks/whatsapp", body)
    rows = await settled(settings)
    assert [r["state"] for r in rows] == ["done", "skipped", "skipped"]
    assert len(fake_openai.calls) == 1 and len(fake_graph.texts_to("+" + WA_USER)) == 1
    notes = [(m["role"], m["note"]) for m in await _messages(client, tenant)]
    assert notes == [("user", "image"), ("assistant", None), ("user", "image"), ("user", "image")]


@pytest.mark.parametrize("problem", ["damaged", "expired"])
async def test_a_photo_that_cannot_be_had_gets_a_clear_answer(
    problem: str, live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, _, settings = live
    if problem == "damaged":
        fake_graph.media[MEDIA_ID] = (b"\x89PNG not really", "image/png")
    await deliver(client, "/webhooks/whatsapp", wa_photo("wamid.p1", caption="look"))
    await settled(settings)
    assert fake_openai.calls == []
    [answer] = fake_graph.texts_to("+" + WA_USER)
    assert "couldn't open your photo" in answer


async def test_a_messenger_photo_is_fetched_from_its_cdn_url(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph, graph_url: str
) -> None:
    client, _, settings = live
    fake_graph.cdn["p.png"] = (photo(300, 200), "image/png")
    message = {"mid": "m_photo", "attachments": [{"type": "image", "payload": {"url": f"{graph_url}/cdn/p.png"}}]}
    await deliver(client, "/webhooks/messenger", fb_event({"message": message}, ts=NOW_MS))
    await settled(settings)
    [call] = fake_openai.calls
    assert [part["type"] for part in call.messages[-1]["content"]] == ["text", "image_url"]
    assert fake_graph.texts_to(PSID) == ["You said: [The customer sent a photo without a caption.]"]


async def test_a_photo_whose_download_failed_once_is_answered_on_the_retry(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    """Regression: the album's claim was taken before the download, so the retry found it taken and was skipped."""
    client, _, settings = live
    fake_graph.media[MEDIA_ID] = (photo(64, 64), "image/png")
    fake_graph.media_failures.append(503)
    await deliver(client, "/webhooks/whatsapp", wa_photo("wamid.p1", caption="Is this the right one?"))
    [row] = await settled(settings)
    assert row["state"] == "done" and row["attempts"] == 2
    assert [part["type"] for part in fake_openai.calls[0].messages[-1]["content"]] == ["text", "image_url"]
    assert fake_graph.texts_to("+" + WA_USER) == ["You said: Is this the right one?"]


def phone_photo(width: int, height: int) -> bytes:
    """A JPEG as a phone takes it: with EXIF, where it was taken included."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPSInfo
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="JPEG", exif=exif)
    return out.getvalue()


async def test_a_bot_that_keeps_photos_shows_them_in_later_turns(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph
) -> None:
    client, tenant, settings = live
    keep = {"keep_images": True, "memory_tokens": 30_000}
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json=keep, headers=auth()), 200)
    cake = phone_photo(1600, 1200)
    assert Image.open(io.BytesIO(cake)).getexif()
    fake_graph.media[MEDIA_ID] = (cake, "image/jpeg")
    await deliver(client, "/webhooks/whatsapp", wa_photo("wamid.p1", caption="Is this the cake I ordered?"))
    await settled(settings)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.t2", "And when can I pick it up?", ts=NOW_S + 30))
    await settled(settings)

    # The next turn shows the model the photo again with its caption, at the size the model sees (1024 x 768:
    # 2833 + 4 tiles x 5667 tokens on gpt-4o-mini), without where it was taken; its tokens were reserved: the
    # provider's count is charged as reported (no bound applied).
    call = fake_openai.calls[-1]
    [earlier] = [m for m in call.messages[:-1] if m["role"] == "user"]
    text, image = earlier["content"]
    assert text == {"type": "text", "text": "Is this the cake I ordered?"}
    kept = Image.open(io.BytesIO(base64.b64decode(image["image_url"]["url"].split(",", 1)[1])))
    assert (kept.format, kept.size, dict(kept.getexif())) == ("JPEG", (1024, 768), {})
    usage = database.rows(settings, "SELECT prompt_tokens, reported_usage FROM usage_records ORDER BY created_at")
    assert usage[-1]["prompt_tokens"] == call.usage["prompt_tokens"] > 25_501
    assert usage[-1]["reported_usage"] is None

    # A memory budget too small for the photo keeps the turn's words.
    small = {"memory_tokens": 2000}
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json=small, headers=auth()), 200)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.t3", "Thanks!", ts=NOW_S + 60))
    await settled(settings)
    history = fake_openai.calls[-1].messages
    assert {"role": "user", "content": "Is this the cake I ordered?"} in history
    assert all(isinstance(m["content"], str) for m in history)


async def test_only_the_newest_kept_photos_stay_and_none_once_the_owner_turns_keeping_off_or_erases(
    live: Any, fake_openai: FakeOpenAI, fake_graph: FakeGraph, monkeypatch: Any
) -> None:
    client, tenant, settings = live
    monkeypatch.setattr("core.channel_worker.ALBUM_WINDOW_MS", 0)  # each photo is answered: none is an album's
    await expect(
        await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"keep_images": True}, headers=auth()), 200
    )

    async def photos(first: int, count: int) -> None:
        for n in range(first, first + count):
            fake_graph.media[f"14000000000000{n:02d}"] = (photo(64, 64), "image/png")
            body = wa_photo(f"wamid.k{n}", f"14000000000000{n:02d}", caption=f"photo {n}", ts=NOW_S + 20 * n)
            await deliver(client, "/webhooks/whatsapp", body)
            await settled(settings)

    def kept() -> list[str]:
        rows = database.rows(settings, "SELECT m.content FROM message_images i JOIN messages m ON m.id = i.message_id")
        return sorted(row["content"] for row in rows)

    await photos(0, 6)
    assert kept() == ["photo 2", "photo 3", "photo 4", "photo 5"]
    await expect(
        await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"keep_images": False}, headers=auth()), 200
    )
    assert kept() == []
    assert len(await _messages(client, tenant)) == 12  # the conversation itself stays
    await expect(
        await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"keep_images": True}, headers=auth()), 200
    )
    await photos(6, 1)
    assert kept() == ["photo 6"]
    owner = auth("owner", tenant.account_id)
    [summary] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    await expect(await client.delete(f"/api/conversations/{summary['id']}", headers=owner), 200)
    assert kept() == []


def test_a_transparent_photo_is_kept_on_white() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(out, format="PNG")
    [kept] = kept_copies((image_part(out.getvalue()),))
    copy = Image.open(io.BytesIO(base64.b64decode(kept.url.split(",", 1)[1])))
    assert (copy.format, copy.size, kept.width, kept.height) == ("JPEG", (40, 30), 40, 30)
    assert all(channel > 250 for channel in copy.getpixel((20, 15)))
