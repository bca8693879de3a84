"""Migration 11: conversations from before the gateway recorded when customers wrote get their reply window from
the inbox, so a person can answer them at once after the upgrade (not only once the customer writes again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import core.storage.migrations as migrations
from core.storage.migrations import MIGRATIONS, apply_migrations
from tests.support.database import open_database, scratch_url, seed_bot


async def test_the_reply_window_is_backfilled_from_the_inbox(tmp_path: Path, monkeypatch: Any) -> None:
    async with open_database(scratch_url(tmp_path, "backfill.db")) as db:
        monkeypatch.setattr(migrations, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 11))
        await apply_migrations(db)
        await seed_bot(db)
        await db.execute(
            "INSERT INTO channels (id, account_id, bot_id, platform, external_id, access_token_sealed, created_at,"
            " updated_at) VALUES ('chn_1', 'acc_1', 'bot_1', 'whatsapp', '1555', 'sealed', 1, 1)"
        )
        events = [
            ("ibx_1", "wamid.1", "message", "alice", 1_000),
            ("ibx_2", "wamid.2", "message", "alice", 5_000),
            ("ibx_3", "status:x:read", "status", "alice", 9_000),  # ours, not the customer writing
            ("ibx_4", "wamid.3", "message", "bob", 2_000),
        ]
        for inbox_id, key, kind, customer, at in events:
            await db.execute(
                "INSERT INTO inbox (id, channel_id, event_key, kind, customer_id, platform_ts, arrival, event, state,"
                " next_attempt_at, received_at, updated_at) VALUES (?, 'chn_1', ?, ?, ?, ?, 1, '{}', 'done', 0, 1, 1)",
                (inbox_id, key, kind, customer, at),
            )
        # Bob's row exists (a pause), with a later time than the inbox knows: kept.
        await db.execute(
            "INSERT INTO conversation_state (channel_id, customer_id, last_inbound_at) VALUES ('chn_1', 'bob', 7000)"
        )
        monkeypatch.setattr(migrations, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version <= 11))
        assert await apply_migrations(db) == [11]
        rows = await db.fetch_all("SELECT customer_id, last_inbound_at FROM conversation_state ORDER BY customer_id")
        assert [(r["customer_id"], int(r["last_inbound_at"])) for r in rows] == [("alice", 5_000), ("bob", 7_000)]
