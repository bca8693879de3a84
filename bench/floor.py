"""The floor the webhook benchmarks measure the gateway against: the naive durable handler. It reads the raw body,
checks X-Hub-Signature-256 with hmac.compare_digest, parses the JSON and inserts one row per message in one
statement in autocommit: one transaction, one durable commit per request, nothing shared between requests.

`execute(sql, params)` is the database's (aiosqlite's `Connection.execute`, or a pooled psycopg connection's), and
`placeholder` its parameter mark (`?` or `%s`). Only placeholders are joined into the SQL; every value is bound.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from adapters.meta_auth import SIGNATURE_HEADER
from bench.load import WEBHOOK_PATH

# BIGINT: milliseconds since the epoch (SQLite's INTEGER affinity either way; PostgreSQL's INTEGER is 32 bits).
FLOOR_SCHEMA = """CREATE TABLE messages (
    phone_number_id TEXT NOT NULL, wamid TEXT NOT NULL, sender TEXT NOT NULL, platform_ts BIGINT NOT NULL,
    message TEXT NOT NULL, received_at BIGINT NOT NULL, PRIMARY KEY (phone_number_id, wamid))"""
_FLOOR_INSERT = "INSERT INTO messages (phone_number_id, wamid, sender, platform_ts, message, received_at) VALUES "

Execute = Callable[[str, list[Any]], Awaitable[object]]


def floor_app(execute: Execute, secret: bytes, *, placeholder: str = "?") -> web.Application:
    """The naive durable handler: verify, parse, insert, commit, answer; nothing shared between requests."""
    row = "(" + ", ".join([placeholder] * 6) + ")"

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), request.headers.get(SIGNATURE_HEADER, "").encode()):
            return web.json_response({"error": "bad signature"}, status=401)
        payload = json.loads(raw)
        now = int(time.time() * 1000)
        params: list[Any] = []
        for entry in payload.get("entry", ()):
            for change in entry.get("changes", ()):
                value = change.get("value", {})
                phone = value.get("metadata", {}).get("phone_number_id", "")
                for message in value.get("messages", ()):
                    params += (phone, message["id"], message["from"], int(message["timestamp"]) * 1000)
                    params += (json.dumps(message), now)
        rows = len(params) // 6
        if rows:
            # One statement in autocommit mode: one transaction, one durable commit (SQLite: one fsync with
            # synchronous=FULL; PostgreSQL: one WAL flush with synchronous_commit on) per request.
            sql = _FLOOR_INSERT + ", ".join([row] * rows) + " ON CONFLICT DO NOTHING"
            await execute(sql, params)
        return web.json_response({"stored": rows})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post(WEBHOOK_PATH, receive)
    return app
