"""Strings from a webhook body made storable and sendable: no NUL character, no lone surrogate.

JSON may spell code points that are not text. `"\\u0000"` becomes a NUL character, which PostgreSQL refuses in a
text column. An unpaired `"\\ud800"` becomes a lone surrogate, which has no UTF-8 form: the database driver, a log
line or the reply to Graph fails on it, so a signed message whose `from` held one was acknowledged, then retried
and dead-lettered. `json.loads` joins escaped surrogate *pairs* into one code point, so any surrogate left in a
parsed string is a lone one.

Every string a parser puts into an `InboundEvent` is read through the `as_str` / `as_id` readers of
`adapters.messaging_platform` (Messenger, Instagram) and `adapters.whatsapp_content` (WhatsApp), and they all call
`clean_text`. Only `raw`, the payload as received, keeps such characters (the inbox codec escapes them).
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
# NUL is replaced rather than dropped: one rule for both, a reader of the text sees that something was there, and
# two ids that differ only by a NUL stay two ids (dropping it could make a forged "mid\x00" the dedupe key of a
# genuine "mid", and the genuine message would be discarded as its duplicate). It also keeps a non-empty value
# non-empty, so the readers' "missing" checks decide exactly as they did on the value received.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: str) -> str:
    """`value` with each NUL and each lone surrogate replaced by U+FFFD; the same object when there is none."""
    # Fast path for the common case: `isascii` is O(1) in CPython, and ASCII text holds no surrogate.
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE.sub(REPLACEMENT, value)
