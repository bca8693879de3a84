"""What the three Meta products share on the way in: the GET handshake and the payload signature.

Pure functions over bytes and strings. The signature is HMAC-SHA256 of the raw body exactly as received (Meta
signs its escaped-unicode form, so a re-serialised body would not match), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def matching_secret(raw: bytes, header: str | None, secrets: Iterable[str]) -> str | None:
    """The secret whose HMAC of `raw` equals the header's, or None (missing, malformed or wrong signature)."""
    if not header or not header.startswith(_PREFIX):
        return None
    try:
        claimed = bytes.fromhex(header[len(_PREFIX) :].strip())
    except ValueError:
        return None
    found = None
    for secret in secrets:
        if not secret:
            continue  # an empty secret would let anyone sign
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
        # Every candidate is compared (no early exit), so timing says nothing about which one matched.
        if hmac.compare_digest(expected, claimed) and found is None:
            found = secret
    return found


def sign(raw: bytes, secret: str) -> str:
    """The header value Meta would send for `raw`: for tests, benchmarks and operators' replay tools."""
    return _PREFIX + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def handshake_challenge(query: Mapping[str, str], verify_tokens: Iterable[str]) -> str | None:
    """The challenge to echo when `hub.mode=subscribe` and `hub.verify_token` matches a configured token."""
    if query.get("hub.mode") != "subscribe":
        return None
    offered = query.get("hub.verify_token", "").encode()
    challenge = query.get("hub.challenge")
    if not offered or challenge is None:
        return None
    matched = False
    for token in verify_tokens:
        if token and hmac.compare_digest(token.encode(), offered):  # an empty configured token never verifies
            matched = True
    return challenge if matched else None
