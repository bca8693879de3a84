"""Opaque cursors and page sizes for the list endpoints of the dashboard and admin APIs.

A cursor is the sort key of the last item of a page (for example `(created_at, id)`), as URL-safe base64 of a
JSON array. Clients must treat it as opaque; we only promise that passing it back gives the next page. Keyset
pagination (rather than OFFSET) keeps every page an index walk however deep the client pages, and a row written
while a client pages never shifts the later pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway.errors import bad_request

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_MAX_CURSOR_CHARS = 512


@dataclass(frozen=True, slots=True)
class PageRequest:
    after: tuple[int | str, ...] | None  # the sort key of the previous page's last item; None: the first page
    limit: int


def encode_cursor(key: Sequence[int | str]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str, shape: Sequence[type]) -> tuple[int | str, ...]:
    """The key inside `raw`, each part of the type in `shape`, or a 400 naming the cursor."""
    problem = bad_request("'cursor' is not a cursor this endpoint returned", field="cursor")
    if len(raw) > _MAX_CURSOR_CHARS:
        raise problem
    try:
        key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise problem from None
    if not isinstance(key, list) or len(key) != len(shape):
        raise problem
    for value, kind in zip(key, shape, strict=True):
        # bool is an int to Python; a cursor never holds one.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise problem
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise problem  # beyond BIGINT: the database driver would fail on it
        if isinstance(value, str) and "\x00" in value:
            raise problem  # PostgreSQL refuses NUL in text
    return tuple(key)


def page_request(request: web.Request, shape: Sequence[type], *, default_limit: int = DEFAULT_LIMIT) -> PageRequest:
    """`cursor` and `limit` from the query string (limit 1..MAX_LIMIT)."""
    raw_limit = request.query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        # Length first: int() of thousands of digits is slow, and refused (a 500) past 4,300 of them.
        short = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6
        if not short or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise bad_request(f"'limit' must be a whole number from 1 to {MAX_LIMIT}", field="limit")
        limit = int(raw_limit)
    raw_cursor = request.query.get("cursor")
    after = decode_cursor(raw_cursor, shape) if raw_cursor else None
    return PageRequest(after, limit)


def next_cursor(keys: Sequence[Sequence[int | str]], limit: int) -> str | None:
    """The cursor after a page fetched with `limit + 1` rows: None when there was no extra row (last page)."""
    return encode_cursor(keys[limit - 1]) if len(keys) > limit else None
