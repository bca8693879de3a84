"""Meta's `signed_request` (data deletion callback): `<base64url signature>.<base64url JSON payload>`.

The signature is HMAC-SHA256 of the encoded payload with the app secret; the payload must say
"algorithm": "HMAC-SHA256". Meta omits base64 padding; padded input is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class SignedRequestError(ValueError):
    """Not a valid signed_request: the message says why (safe to show)."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    user_id: str
    payload: dict[str, Any] = field(repr=False)
    secret: str = field(repr=False)  # the app secret that verified it


def parse_signed_request(value: str, secrets: Iterable[str]) -> SignedRequest:
    encoded_signature, dot, encoded_payload = value.partition(".")
    if not dot or not encoded_signature or not encoded_payload:
        raise SignedRequestError("signed_request must be <signature>.<payload>")
    signature = _b64decode(encoded_signature)
    try:
        payload = json.loads(_b64decode(encoded_payload))
    except (ValueError, RecursionError):
        raise SignedRequestError("the signed_request payload is not JSON") from None
    if not isinstance(payload, dict):
        raise SignedRequestError("the signed_request payload is not an object")
    if str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise SignedRequestError("signed_request algorithm must be HMAC-SHA256")
    matched = None
    for secret in secrets:
        expected = hmac.new(secret.encode(), encoded_payload.encode(), hashlib.sha256).digest()
        if secret and hmac.compare_digest(expected, signature) and matched is None:
            matched = secret
    if matched is None:
        raise SignedRequestError("the signed_request signature does not match")
    user_id = payload.get("user_id")
    if not isinstance(user_id, (str, int)) or isinstance(user_id, bool) or str(user_id) == "":
        raise SignedRequestError("the signed_request has no user_id")
    return SignedRequest(str(user_id), payload, matched)


def encode_signed_request(payload: dict[str, Any], secret: str, *, padded: bool = False) -> str:
    """The inverse, for tests and operators' tools."""
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    body = body if padded else body.rstrip("=")
    signature = base64.urlsafe_b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()).decode()
    return f"{signature if padded else signature.rstrip('=')}.{body}"


def _b64decode(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise SignedRequestError("signed_request is not base64url") from None
