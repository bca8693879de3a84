"""Proving that an access token controls the Page, Instagram account or phone number a channel names.

Without this, anyone who may connect a channel could claim another business's Page and receive its customers'
messages. A Page's public fields (`id`, `name`) are readable with any token, so asking Graph for `/{page_id}`
proves nothing; asking `/me` with a Page token answers the Page the token belongs to. Sans-I/O: what to ask, and
what the answer says. The request itself goes through adapters/graph_client.py.

- Messenger: `GET /me?fields=id` with the Page token; `id` must be the Page id.
- Instagram (Instagram API with Facebook Login, the only one this gateway speaks): the Page token of the Page the
  professional account is linked to; `GET /me?fields=id,instagram_business_account` must name the account.
- WhatsApp: `GET /{phone_number_id}?fields=id` with a system-user or business token. Phone number nodes are not
  public: Graph answers (#100) subcode 33 unless the token has `whatsapp_business_management` on the WABA that
  holds the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OwnershipProbe:
    path: str  # relative to /{version}/
    fields: str


def ownership_probe(platform: str, external_id: str) -> OwnershipProbe:
    if platform == "messenger":
        return OwnershipProbe("me", "id")
    if platform == "instagram":
        return OwnershipProbe("me", "id,instagram_business_account")
    if platform == "whatsapp":
        return OwnershipProbe(external_id, "id")
    raise ValueError(f"unknown platform {platform!r}")


def controlled_id(platform: str, body: Any) -> str | None:
    """The id the token speaks for, read from a 200 answer to `ownership_probe`; None when it names none."""
    if not isinstance(body, dict):
        return None
    if platform == "instagram":
        account = body.get("instagram_business_account")
        found = account.get("id") if isinstance(account, dict) else None
    else:
        found = body.get("id")
    return str(found) if isinstance(found, (str, int)) and not isinstance(found, bool) else None
