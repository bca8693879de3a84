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
from typing import Annotated

from pydantic import Field

from api.errors import bad_request
from api.query import Count, QueryModel

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


class PageQuery(QueryModel):
    """`cursor` and `limit` of a list route."""

    cursor: str | None = Field(
        default=None,
        description="opaque; pass back `next_cursor` of the previous page (400 if it is not one)",
        json_schema_extra={"maxLength": _MAX_CURSOR_CHARS},
    )
    limit: Annotated[int, Count(1, MAX_LIMIT)] = Field(default=DEFAULT_LIMIT, description="page size")

    def page(self, shape: Sequence[type]) -> PageRequest:
        """The page asked for, its cursor read as a key of the types in `shape` (or a 400 naming the cursor)."""
        return PageRequest(decode_cursor(self.cursor, shape) if self.cursor else None, self.limit)


def next_cursor(keys: Sequence[Sequence[int | str]], limit: int) -> str | None:
    """The cursor after a page fetched with `limit + 1` rows: None when there was no extra row (last page)."""
    return encode_cursor(keys[limit - 1]) if len(keys) > limit else None
