"""Meta's data deletion callback: signed requests, confirmation codes, the status page, and what is erased."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adapters.signed_request import encode_signed_request
from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import APP_SECRET, connect_channel, expect, provision, signed

PATH = "/webhooks/meta/data-deletion"
PAGE_ID = "1122334455"
PSID = "2900000000000077"


def request_body(user_id: str = PSID, *, secret: str = APP_SECRET, padded: bool = False, **extra: Any) -> dict:
    payload = {"algorithm": "HMAC-SHA256", "expires": int(time.time()) + 3600, "issued_at": int(time.time())}
    payload.update({"user_id": user_id, **extra})
    return {"signed_request": encode_signed_request(payload, secret, padded=padded)}


async def customer_with_history(client: TestClient, settings: Settings) -> None:
    """A Messenger customer who talked to the bot, plus a relay user of the business with the same id."""
    tenant = await provision(client)
    await connect_channel(client, tenant, "messenger", PAGE_ID)
    body = {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1,
                "messaging": [
                    {
                        "sender": {"id": PSID},
                        "recipient": {"id": PAGE_ID},
                        "timestamp": 1,
                        "message": {"mid": "m_secret", "text": "my address is 1 Main St"},
                    }
                ],
            }
        ],
    }
    raw, headers = signed(body)
    await expect(await client.post("/webhooks/messenger", data=raw, headers=headers), 200)
    await expect(
        await client.post(
            "/api/messages/relay",
            json={"user_id": PSID, "message": "an app user of the business who happens to share the id"},
            headers=tenant.key_header,
        ),
        200,
    )


def rows_mentioning(settings: Settings, needle: str) -> list[str]:
    """A schema-wide scan: every table, every text column."""
    hits = []
    for table in database.table_names(settings):
        for row in database.rows(settings, f"SELECT * FROM {table}"):
            if any(isinstance(value, str) and needle in value for value in tuple(row)):
                hits.append(table)
    return hits


@pytest.mark.parametrize("padded", [False, True])
async def test_a_valid_request_erases_the_user_and_returns_a_status_url(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI, padded: bool
) -> None:
    await customer_with_history(client, settings)
    assert rows_mentioning(settings, PSID) and rows_mentioning(settings, "1 Main St")
    answer = await expect(await client.post(PATH, data=request_body(padded=padded)), 200)
    code = answer["confirmation_code"]
    assert answer["url"].endswith(f"{PATH}/{code}")
    assert rows_mentioning(settings, "1 Main St") == []
    # Only Meta customers: the business's own relay user with the same-looking id is not Meta's to erase.
    assert rows_mentioning(settings, PSID) == ["contacts"]
    assert database.rows(settings, "SELECT platform FROM contacts")[0]["platform"] == "relay"
    # The inbox still knows the delivery's id, so a late retry of it is a duplicate, never answered again.
    assert [r["event_key"] for r in database.rows(settings, "SELECT event_key FROM inbox")] == ["m_secret"]
    # Usage rows are kept for billing (here the relay user's, still linked to that untouched contact).
    assert len(database.rows(settings, "SELECT id FROM usage_records")) == 1
    page = await client.get(urlsplit(answer["url"]).path)
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert code in text and "completed" in text


async def test_repeating_the_request_gives_the_same_code(client: TestClient, settings: Settings) -> None:
    first = await expect(await client.post(PATH, data=request_body()), 200)
    second = await expect(await client.post(PATH, data=request_body()), 200)
    assert first["confirmation_code"] == second["confirmation_code"]
    other = await expect(await client.post(PATH, data=request_body("another-user")), 200)
    assert other["confirmation_code"] != first["confirmation_code"]


@pytest.mark.parametrize(
    "data",
    [
        request_body(secret="not-our-app"),
        {"signed_request": encode_signed_request({"algorithm": "HMAC-SHA1", "user_id": PSID}, APP_SECRET)},
        {"signed_request": encode_signed_request({"algorithm": "HMAC-SHA256"}, APP_SECRET)},
        {"signed_request": "no-dot-here"},
        {"signed_request": "@@@.###"},
        {"signed_request": "abc.bm90IGpzb24"},
        {},
    ],
    ids=["wrong-secret", "sha1", "no-user", "no-dot", "not-base64", "not-json", "missing"],
)
async def test_invalid_requests_are_400_and_erase_nothing(
    client: TestClient, settings: Settings, fake_openai: FakeOpenAI, data: dict[str, str]
) -> None:
    await customer_with_history(client, settings)
    before = rows_mentioning(settings, PSID)
    response = await client.post(PATH, data=data)
    assert (await expect(response, 400))["error"]["code"] == "bad_request"
    assert rows_mentioning(settings, PSID) == before
    assert database.rows(settings, "SELECT * FROM data_deletion_requests") == []


async def test_an_unknown_code_is_404(client: TestClient) -> None:
    await expect(await client.get(f"{PATH}/0123456789abcdef0123"), 404)


async def test_a_channel_app_secret_cannot_order_an_erasure(client: TestClient, settings: Settings) -> None:
    """Regression: a tenant-chosen channel app secret used to verify deletion requests for everyone's customers."""
    await customer_with_history(client, settings)
    tenant = await provision(client, name="Attacker")
    await connect_channel(client, tenant, "messenger", "9999", app_secret="attacker-chosen")
    response = await client.post(PATH, data=request_body(secret="attacker-chosen"))
    await expect(response, 400)
    assert rows_mentioning(settings, "1 Main St") == ["inbox"]  # the victim's message is untouched
