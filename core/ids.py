"""Prefixed random ids (`acc_3f9a…`): readable in logs and support tickets, generated the same on any backend."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"
