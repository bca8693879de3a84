"""Customers' traffic on Meta channels, for the tests that run the whole path: payloads shaped as Meta sends them,
signed deliveries to the webhooks, and waiting until the inbox has settled.

`wa_text` and `fb_text` are recent (the gateway no longer answers a message older than 24 hours); `whatsapp_text`
and `messenger_text` carry a fixed, long-past timestamp, for tests of what a delivery stores rather than of the
answer it gets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.support import database
from tests.support.harness import expect, signed

PHONE_ID = "106540352242922"
PAGE_ID = "1122334455"
WA_USER = "16505551234"
PSID = "2900000000000001"
# Deliveries are recent, as real ones are: older than 24 hours the gateway no longer answers.
NOW_S = int(time.time()) - 60
NOW_MS = NOW_S * 1000


def wa_message(wamid: str, content: dict[str, Any], *, wa_id: str = WA_USER, ts: int = NOW_S) -> dict:
    message = {"from": wa_id, "id": wamid, "timestamp": str(ts), **content}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_ID},
        "contacts": [{"profile": {"name": "Sheena"}, "wa_id": wa_id}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


def wa_text(wamid: str, text: str, **kwargs: Any) -> dict:
    return wa_message(wamid, {"type": "text", "text": {"body": text}}, **kwargs)


def fb_event(event: dict[str, Any], *, sender: str = PSID, recipient: str = PAGE_ID, ts: int = NOW_MS) -> dict:
    messaging = {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": ts, **event}
    return {"object": "page", "entry": [{"id": PAGE_ID, "time": ts, "messaging": [messaging]}]}


def fb_text(mid: str, text: str, **kwargs: Any) -> dict:
    return fb_event({"message": {"mid": mid, "text": text}}, **kwargs)


def whatsapp_text(wamid: str, text: str = "Hello", *, phone_id: str = PHONE_ID, wa_id: str = "16505551234") -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id},
                            "contacts": [{"profile": {"name": "Sheena"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": "1749854575",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def messenger_text(mid: str, text: str = "Hi", *, page_id: str = PAGE_ID) -> dict:
    return {
        "object": "page",
        "entry": [
            {
                "id": page_id,
                "time": 1700000000000,
                "messaging": [
                    {
                        "sender": {"id": "2900000000000001"},
                        "recipient": {"id": page_id},
                        "timestamp": 1700000000000,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }


async def deliver(client: TestClient, path: str, body: Any) -> None:
    raw, headers = signed(body)
    await expect(await client.post(path, data=raw, headers=headers), 200)


async def settled(settings: Settings, within: float = 15.0) -> list[Any]:
    """Wait until no inbox event is pending; return the inbox."""
    deadline = time.monotonic() + within
    while True:
        rows = database.rows(settings, "SELECT * FROM inbox ORDER BY platform_ts, received_at")
        if rows and all(r["state"] != "pending" for r in rows):
            return rows
        assert time.monotonic() < deadline, [(r["event_key"], r["state"], r["last_error"]) for r in rows]
        await asyncio.sleep(0.05)


async def until(condition: Any, within: float = 10.0) -> None:
    """Wait until `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
