"""The sandbox's three customers, one per channel, and their messages as Meta delivers them: the payload shapes of
Meta's webhooks, signed with the app secret, posted to the gateway's webhook paths."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from adapters.meta_auth import SIGNATURE_HEADER, sign

PHONE_ID = "106540352242922"  # the demo business's WhatsApp number (phone_number_id)
PAGE_ID = "1122334455"  # its Facebook Page
INSTAGRAM_ID = "17841400000000001"  # its Instagram professional account


@dataclass(frozen=True, slots=True)
class Customer:
    platform: str  # whatsapp | messenger | instagram
    name: str  # as the terminal shows the channel
    business_id: str  # the business's number, Page or account: what the channel is connected with
    customer_id: str  # the customer's WhatsApp id, or their page-scoped or Instagram-scoped id
    path: str  # the gateway's webhook path

    @property
    def recipient(self) -> str:
        """Whom the gateway's replies are addressed to in the Graph API."""
        return self.customer_id

    def delivery(self, text: str, message_id: str) -> dict[str, Any]:
        now = time.time()
        if self.platform == "whatsapp":
            message = {
                "from": self.customer_id,
                "id": message_id,
                "timestamp": str(int(now)),
                "type": "text",
                "text": {"body": text},
            }
            value = {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100001", "phone_number_id": self.business_id},
                "contacts": [{"profile": {"name": "Sandbox customer"}, "wa_id": self.customer_id}],
                "messages": [message],
            }
            change = {"field": "messages", "value": value}
            return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
        ms = int(now * 1000)
        event = {
            "sender": {"id": self.customer_id},
            "recipient": {"id": self.business_id},
            "timestamp": ms,
            "message": {"mid": message_id, "text": text},
        }
        kind = "page" if self.platform == "messenger" else "instagram"
        return {"object": kind, "entry": [{"id": self.business_id, "time": ms, "messaging": [event]}]}


CUSTOMERS = {
    "whatsapp": Customer("whatsapp", "WhatsApp", PHONE_ID, "15550100199", "/webhooks/whatsapp"),
    "messenger": Customer("messenger", "Messenger", PAGE_ID, "2900000000000001", "/webhooks/messenger"),
    "instagram": Customer("instagram", "Instagram", INSTAGRAM_ID, "5000000000000001", "/webhooks/instagram"),
}


def signed(body: dict[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The body's bytes and the headers Meta sends with them (the signature is over the exact bytes)."""
    raw = json.dumps(body).encode()
    return raw, {SIGNATURE_HEADER: sign(raw, app_secret), "Content-Type": "application/json"}
