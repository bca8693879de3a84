"""Webhook deliveries into the durable inbox: handshake, signatures, routing, dedupe, limits."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.support import database
from tests.support.channel_traffic import PAGE_ID, PHONE_ID, messenger_text, whatsapp_text
from tests.support.harness import APP_SECRET, VERIFY_TOKEN, Tenant, connect_channel, expect, provision, signed


async def post(client: TestClient, path: str, body: Any, secret: str = APP_SECRET) -> Any:
    raw, headers = signed(body, secret)
    # aiohttp warns about large in-memory bytes payloads and prefers a file-like object for them.
    return await client.post(path, data=io.BytesIO(raw) if len(raw) > 1_000_000 else raw, headers=headers)


@pytest.fixture
async def tenant(client: TestClient) -> Tenant:
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    return tenant


def inbox(settings: Settings) -> list[Any]:
    return database.rows(settings, "SELECT * FROM inbox ORDER BY received_at, id")


@pytest.mark.parametrize("path", ["/webhooks/whatsapp", "/api/messaging/facebook", "/webhooks/instagram"])
async def test_handshake_echoes_the_challenge(client: TestClient, path: str) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    response = await client.get(path, params=query)
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ],
)
async def test_handshake_refuses_anything_else(client: TestClient, query: dict[str, str]) -> None:
    assert (await client.get("/webhooks/messenger", params=query)).status == 403


async def test_a_channels_own_verify_token_also_verifies(client: TestClient) -> None:
    tenant = await provision(client)
    await connect_channel(client, tenant, "instagram", "17841400000000001", verify_token="per-channel-token")
    query = {"hub.mode": "subscribe", "hub.verify_token": "per-channel-token", "hub.challenge": "42"}
    assert await (await client.get("/webhooks/instagram", params=query)).text() == "42"


async def test_signed_delivery_is_stored_before_the_200(client: TestClient, tenant: Tenant, settings: Settings) -> None:
    response = await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.A1"))
    assert await expect(response, 200) == {"stored": 1, "duplicates": 0, "unrouted": 0}
    [row] = inbox(settings)
    assert (row["event_key"], row["kind"], row["state"], row["customer_id"]) == (
        "wamid.A1",
        "message",
        "pending",
        "16505551234",
    )
    assert json.loads(row["event"])["text"] == "Hello"


def _tamper(raw: bytes) -> bytes:
    index = raw.index(b"Hello")
    return raw[:index] + b"J" + raw[index + 1 :]


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda raw: {},
        lambda raw: {"X-Hub-Signature-256": ""},
        lambda raw: {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        lambda raw: {"X-Hub-Signature-256": "sha256=zz"},
        lambda raw: {"X-Hub-Signature-256": signed(raw, "another-apps-secret")[1]["X-Hub-Signature-256"]},
        lambda raw: {"X-Hub-Signature": "sha1=" + "0" * 40},
        lambda raw: {"X-Hub-Signature-256": signed(_tamper(raw))[1]["X-Hub-Signature-256"]},
    ],
    ids=["missing", "empty", "zeros", "not-hex", "wrong-secret", "sha1-only", "signature-of-other-bytes"],
)
async def test_bad_signatures_are_401_and_store_nothing(
    client: TestClient, tenant: Tenant, settings: Settings, make_headers: Any
) -> None:
    raw = json.dumps(whatsapp_text("wamid.B1")).encode()
    response = await client.post("/webhooks/whatsapp", data=raw, headers=make_headers(raw))
    assert (await expect(response, 401))["error"]["code"] == "unauthorized"
    assert inbox(settings) == [] and database.rows(settings, "SELECT id FROM webhook_unrouted") == []


async def test_a_tampered_byte_breaks_the_signature(client: TestClient, tenant: Tenant, settings: Settings) -> None:
    raw, headers = signed(whatsapp_text("wamid.C1"))
    response = await client.post("/webhooks/whatsapp", data=_tamper(raw), headers=headers)
    await expect(response, 401)
    assert inbox(settings) == []


async def test_unicode_is_verified_on_the_escaped_bytes_meta_sends(
    client: TestClient, tenant: Tenant, settings: Settings
) -> None:
    text = "äöå مرحبا 👩‍👩‍👧 café"
    raw = json.dumps(whatsapp_text("wamid.U1", text)).encode()  # ensure_ascii: \u00e4 ... as Meta sends
    assert b"\\u00e4" in raw
    await expect(await post(client, "/webhooks/whatsapp", raw), 200)
    assert json.loads(inbox(settings)[0]["event"])["text"] == text
    # The same text signed as raw UTF-8 is a different byte string: its own signature is needed.
    utf8 = json.dumps(whatsapp_text("wamid.U2", text), ensure_ascii=False).encode()
    _, escaped_headers = signed(raw)
    await expect(await client.post("/webhooks/whatsapp", data=utf8, headers=escaped_headers), 401)


async def test_retries_and_concurrent_duplicates_store_each_event_once(
    client: TestClient, tenant: Tenant, settings: Settings
) -> None:
    bodies = [whatsapp_text(f"wamid.D{i % 10}") for i in range(60)]
    responses = await asyncio.gather(*(post(client, "/webhooks/whatsapp", body) for body in bodies))
    counts = [await expect(r, 200) for r in responses]
    assert sum(c["stored"] for c in counts) == 10
    assert sum(c["duplicates"] for c in counts) == 50
    assert len(inbox(settings)) == 10


async def test_unknown_page_and_malformed_json_are_kept_not_refused(
    client: TestClient, tenant: Tenant, settings: Settings
) -> None:
    await expect(await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.E1", phone_id="999")), 200)
    await expect(await post(client, "/webhooks/whatsapp", b"{not json"), 200)
    await expect(await post(client, "/webhooks/whatsapp", {"object": "something_else", "entry": []}), 200)
    reasons = sorted(r["reason"] for r in database.rows(settings, "SELECT reason FROM webhook_unrouted"))
    assert reasons == ["malformed_json", "unknown_channel", "unknown_object"]
    assert inbox(settings) == []


async def test_a_channel_with_its_own_app_secret_accepts_only_that_secret(
    client: TestClient, settings: Settings
) -> None:
    tenant = await provision(client)
    await connect_channel(client, tenant, "messenger", "4242", app_secret="app-B-secret")
    # Signed with the global secret: authentic for *some* app, but not the app that owns this Page.
    await expect(await post(client, "/webhooks/messenger", messenger_text("m_1", page_id="4242")), 200)
    assert inbox(settings) == []
    [unrouted] = database.rows(settings, "SELECT reason FROM webhook_unrouted")
    assert unrouted["reason"] == "wrong_app_secret"
    await expect(await post(client, "/webhooks/messenger", messenger_text("m_2", page_id="4242"), "app-B-secret"), 200)
    assert [r["event_key"] for r in inbox(settings)] == ["m_2"]


async def test_every_entry_of_a_batch_is_stored(client: TestClient, tenant: Tenant, settings: Settings) -> None:
    other_page = "99887766"
    await connect_channel(client, tenant, "messenger", other_page)
    body = messenger_text("m_a")
    body["entry"] += messenger_text("m_b", page_id=other_page)["entry"]
    body["entry"][0]["messaging"] += messenger_text("m_c")["entry"][0]["messaging"]
    assert (await expect(await post(client, "/webhooks/messenger", body), 200))["stored"] == 3
    assert sorted(r["event_key"] for r in inbox(settings)) == ["m_a", "m_b", "m_c"]


async def test_bodies_over_the_webhook_limit_are_413(client: TestClient, tenant: Tenant, settings: Settings) -> None:
    big = whatsapp_text("wamid.F1", "x" * (5 * 1024 * 1024))
    response = await post(client, "/webhooks/whatsapp", big)
    assert (await expect(response, 413))["error"]["code"] == "payload_too_large"
    # A 3 MB body, the most Meta sends, is fine.
    fine = whatsapp_text("wamid.F2", "y" * (3 * 1000 * 1000))
    await expect(await post(client, "/webhooks/whatsapp", fine), 200)
    assert [r["event_key"] for r in inbox(settings)] == ["wamid.F2"]


async def test_finished_events_are_purged_after_the_retry_horizon_only(make_client: Any, settings: Settings) -> None:
    from gateway.app import INBOX_RETENTION_MS
    from gateway.keys import STORAGE

    class Clock:
        now = 1_800_000_000_000

        def now_ms(self) -> int:
            return self.now

    clock = Clock()
    client = await make_client(settings, clock=clock)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await expect(await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.old")), 200)
    await expect(await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.open")), 200)
    queue = client.server.app[STORAGE].queue
    [claimed] = [i for i in await queue.claim("test-worker", 10) if i.event_key == "wamid.old"]
    await queue.finish(claimed, "done")
    clock.now += 8 * 24 * 3600 * 1000  # Meta may still retry a WhatsApp delivery for 7 days: nothing goes yet
    assert await queue.purge(older_than_ms=INBOX_RETENTION_MS) == 0
    await expect(await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.old")), 200)
    assert len(inbox(settings)) == 2  # the late retry is still a duplicate
    clock.now += 3 * 24 * 3600 * 1000
    assert await queue.purge(older_than_ms=INBOX_RETENTION_MS) == 1
    assert [r["event_key"] for r in inbox(settings)] == ["wamid.open"]  # pending work is never purged


async def test_odd_but_signed_bodies_never_answer_5xx(client: TestClient, tenant: Tenant, settings: Settings) -> None:
    """Regression: a list as `object` raised TypeError (500); a lone surrogate in an id failed the commit for
    every delivery in the same batch."""
    await expect(await post(client, "/webhooks/whatsapp", {"object": ["page"], "entry": []}), 200)
    surrogate_page = json.dumps(messenger_text("m_s", page_id=PAGE_ID)).replace("2900000000000001", "29\\ud800")
    bodies = [surrogate_page.encode()] + [json.dumps(whatsapp_text(f"wamid.S{n}")).encode() for n in range(5)]
    responses = await asyncio.gather(*(post(client, "/webhooks/messenger", raw) for raw in bodies))
    assert [r.status for r in responses] == [200] * 6
    keys = sorted(r["event_key"] for r in inbox(settings))
    assert keys == ["m_s"] + [f"wamid.S{n}" for n in range(5)]


async def test_a_delivery_the_inbox_cannot_store_is_a_retryable_503_and_stores_nothing(
    client: TestClient, tenant: Tenant, settings: Settings
) -> None:
    """Was: a failed inbox commit (disk full, database locked) answered 500 internal_error; Meta must see 503."""
    await asyncio.to_thread(database.fail_writes, settings, "inbox")
    response = await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.full-disk"))
    body = await expect(response, 503)
    assert body["error"]["code"] == "service_unavailable" and response.headers["Retry-After"] == "1"
    assert inbox(settings) == []
    await asyncio.to_thread(database.allow_writes, settings, "inbox")
    # Meta's retry of the same delivery is stored once the database takes writes again.
    await expect(await post(client, "/webhooks/whatsapp", whatsapp_text("wamid.full-disk")), 200)
    assert [row["event_key"] for row in inbox(settings)] == ["wamid.full-disk"]
