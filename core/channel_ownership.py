"""Before a channel is saved (or its token replaced): ask Graph whether the token controls the channel's id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adapters.graph_client import GraphClient
from adapters.graph_errors import GraphAction
from adapters.ownership import controlled_id, ownership_probe

_WHAT = {"messenger": "Facebook Page", "instagram": "Instagram account", "whatsapp": "WhatsApp phone number"}


@dataclass(frozen=True, slots=True)
class OwnershipVerdict:
    outcome: Literal["verified", "rejected", "unavailable"]
    reason: str  # a sentence for the person connecting the channel; never contains the token


async def verify_ownership(graph: GraphClient, platform: str, external_id: str, access_token: str) -> OwnershipVerdict:
    what = _WHAT[platform]
    probe = ownership_probe(platform, external_id)
    result = await graph.read(probe.path, access_token, fields=probe.fields)
    if result.ok:
        found = controlled_id(platform, result.body)
        if found == external_id:
            return OwnershipVerdict("verified", f"the token controls {what} {external_id}")
        if found is None:
            return OwnershipVerdict("rejected", f"this access token is not linked to any {what}")
        return OwnershipVerdict("rejected", f"this access token is for Graph object {found}, not {what} {external_id}")
    failure = result.failure
    assert failure is not None
    code = f" (Graph error {failure.code})" if failure.code is not None else ""
    if failure.action is GraphAction.REAUTHORIZE:
        return OwnershipVerdict("rejected", f"Meta refused the access token{code}: it is invalid or has expired")
    if failure.action is GraphAction.RETRY:
        return OwnershipVerdict(
            "unavailable", f"could not check the token with the Graph API{code}; nothing was saved, try again"
        )
    return OwnershipVerdict("rejected", f"Meta would not show {what} {external_id} to this access token{code}")
