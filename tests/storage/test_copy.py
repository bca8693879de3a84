"""`python -m gateway copy-database`: a SQLite database the real service filled, moved to PostgreSQL row for row;
the gateway then serves it from there. The target is always PostgreSQL, whatever TEST_DATABASE says."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from adapters.signed_request import encode_signed_request
from gateway.cli import main
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import NOW_S, PHONE_ID, deliver, settled, wa_message, wa_text, whatsapp_text
from tests.support.harness import APP_SECRET, Tenant, auth, connect_channel, expect, make_settings, provision, relay
from tests.support.images import photo
from tests.support.paths import PROJECT_DATA, PROJECT_ROOT
from tests.support.people import add_person, sign_in

pytestmark = pytest.mark.skipif(
    not database.postgres_available(),
    reason=f"copying to PostgreSQL needs a PostgreSQL server at {database.POSTGRES_SERVER} (TEST_POSTGRES_URL)",
)

PASSWORD = "hunter2-copy-secret"
# Transient rows: a quota reservation lives only while a turn is in flight. The hourly rollups fill once an hour
# is over (tests/storage/test_rollups.py); the copy treats them as any other table.
MAY_BE_EMPTY = {"quota_reservations", "usage_hourly", "message_hourly"}


def target_url(tmp_path: Path, name: str = "target") -> str:
    """A new, empty PostgreSQL schema, its URL carrying a password (the test server trusts; it is never checked)."""
    parts = urlsplit(database.postgres_scratch_url(tmp_path, name))
    user, host = parts.netloc.rsplit("@", 1) if "@" in parts.netloc else ("postgres", parts.netloc)
    if ":" not in user:
        user = f"{user}:{PASSWORD}"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def run_copy(source: str, target: str, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["copy-database", "--to", target, *extra], {"DATABASE_URL": source, "DATA_DIR": str(PROJECT_DATA)}, out)
    return code, out.getvalue()


def tables(url: str) -> list[str]:
    """The gateway's tables: not SQLite's own, nor its full-text index (PostgreSQL indexes that column itself)."""
    return sorted(
        t
        for t in database.table_names(url)
        if t != "schema_migrations" and not t.startswith(("sqlite_", "knowledge_fts"))
    )


def table_rows(
    url: str, table: str, key: list[str], columns: list[str] | None = None
) -> dict[tuple[Any, ...], list[tuple[str, Any]]]:
    """Every row, by primary key, each value with its type (1 and 1.0 are different values here)."""
    found = {}
    for row in database.rows(url, f"SELECT {', '.join(columns) if columns else '*'} FROM {table}"):
        names = row.keys()
        found[tuple(row[column] for column in key)] = [(column, (type(row[column]), row[column])) for column in names]
    return found


def primary_key(sqlite_url: str, table: str) -> list[str]:
    columns = database.rows(sqlite_url, "SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (table,))
    return [column["name"] for column in columns]


def assert_same_rows(source: str, target: str, *, nul_in: str | None = None) -> None:
    """Same tables, and every row of each, value for value; a NUL of the source (in table `nul_in`) is U+FFFD in
    the target."""
    assert tables(source) == tables(target)
    for table in tables(source):
        key = primary_key(source, table)
        expected = table_rows(source, table, key)
        if table == nul_in:
            expected = {
                k: [(c, (t, v.replace("\x00", "\ufffd") if isinstance(v, str) else v)) for c, (t, v) in row]
                for k, row in expected.items()
            }
        # The source's columns: PostgreSQL's own generated ones (a search vector) are not copied, they are computed.
        columns = [
            c["name"] for c in database.rows(source, "SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,))
        ]
        copied = table_rows(target, table, key, columns)
        assert copied == expected, table


@pytest.fixture
async def filled(
    tmp_path: Path, make_client: MakeClient, openai_url: str, graph_url: str, fake_graph: FakeGraph
) -> tuple[Settings, Tenant]:
    """A SQLite database filled by the real service: every table but the transient ones has rows."""
    settings = make_settings(
        tmp_path,
        openai_url,
        graph_api_base_url=graph_url,
        database_url=f"sqlite:///{tmp_path / 'src.db'}",
        workers=1,
        media_allowed_hosts=("127.0.0.1",),
    )
    client = await make_client(settings)
    tenant = await provision(client, plan={"messages_per_minute": 600}, bot={"temperature": 0.7})
    admin = auth()
    credits = f"/api/admin/accounts/{tenant.account_id}/credits"
    await expect(
        await client.post(credits, json={"tokens": 5_000, "kind": "purchase", "note": "invoice 42"}, headers=admin), 201
    )
    for text, user in (("When do you open?", "alice"), ("Do you deliver?", "bob"), ("Thanks!", "alice")):
        answer = await expect(await relay(client, tenant, text, user_id=user), 200)
    feedback = {"message_id": answer["message_id"], "rating": "up"}
    await expect(await client.post("/api/ai/feedback", json=feedback, headers=tenant.key_header), 201)
    knowledge = {"title": "Opening hours", "text": "# Weekdays\n\nOpen 7 to 19.\n\n# Sundays\n\nOpen 8 to 12."}
    await expect(await client.post(f"/api/admin/bots/{tenant.bot_id}/knowledge", json=knowledge, headers=admin), 201)
    # A WhatsApp customer answered by the worker (inbox, outbound messages) and then paused (conversation state),
    # a delivery for a number nobody serves (unrouted), and Meta's data deletion callback for someone unknown.
    await connect_channel(client, tenant, "whatsapp", PHONE_ID, verify_token="own-verify-token")
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.NOW1", "Are you open on Sunday?"))
    await deliver(client, "/webhooks/whatsapp", whatsapp_text("wamid.OTHER", phone_id="999000"))
    await settled(settings)
    # A photo the bot keeps for later turns (message images).
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"keep_images": True}, headers=admin), 200)
    fake_graph.media["1300000000000001"] = (photo(32, 32), "image/png")
    image = {"id": "1300000000000001", "mime_type": "image/png", "caption": "This one?"}
    await deliver(
        client, "/webhooks/whatsapp", wa_message("wamid.PHOTO", {"type": "image", "image": image}, ts=NOW_S + 1)
    )
    await settled(settings)
    [customer] = database.rows(settings, "SELECT id FROM contacts WHERE platform = 'whatsapp'")
    owner = auth("owner", tenant.account_id)
    await expect(await client.post(f"/api/conversations/{customer['id']}/pause", headers=owner), 200)
    # A person of the dashboard, signed in (a session).
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    await sign_in(client, "anna@bakery.example")
    # A person's reply, with an idempotency key.
    reply = {"text": "Yes, 8 to 12."}
    keyed = {**owner, "Idempotency-Key": "reply-1"}
    await expect(await client.post(f"/api/conversations/{customer['id']}/messages", json=reply, headers=keyed), 201)
    # The account's notification endpoint (its signing key sealed) and a handoff told to it: in strict mode a
    # question the knowledge does not answer goes to a person. (A loopback endpoint: refused, never contacted.)
    endpoint = {"url": "http://127.0.0.1:9/hook"}
    notifications = f"/api/admin/accounts/{tenant.account_id}/notifications"
    await expect(await client.put(notifications, json=endpoint, headers=owner), 200)
    strict = {"knowledge_mode": "strict", "handoff_on_no_answer": True}
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json=strict, headers=admin), 200)
    assert (await expect(await relay(client, tenant, "Do you repair bikes?", user_id="carol"), 200))["handoff"]
    augment = {"knowledge_mode": "augment"}
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json=augment, headers=admin), 200)
    now = int(time.time())
    payload = {"algorithm": "HMAC-SHA256", "expires": now + 3600, "issued_at": now, "user_id": "nobody-we-know"}
    await expect(
        await client.post(
            "/webhooks/meta/data-deletion", data={"signed_request": encode_signed_request(payload, APP_SECRET)}
        ),
        200,
    )
    await client.close()  # the gateway is stopped before its database is copied
    # PostgreSQL text cannot hold NUL: a raw event as Meta might send one, for the report's count.
    [unrouted] = database.rows(settings, "SELECT * FROM webhook_unrouted")
    database.insert(
        settings,
        "webhook_unrouted",
        [{**dict(zip(unrouted.keys(), unrouted, strict=True)), "id": "wun_nul", "event": "a\x00b"}],
    )
    empty = [t for t in tables(settings.database_url) if not database.rows(settings, f"SELECT 1 FROM {t} LIMIT 1")]
    assert set(empty) <= MAY_BE_EMPTY, empty
    return settings, tenant


async def test_a_filled_sqlite_database_is_copied_row_for_row_and_served_from_postgresql(
    tmp_path: Path, filled: tuple[Settings, Tenant], make_client: MakeClient, fake_openai: FakeOpenAI
) -> None:
    settings, tenant = filled
    source, target = settings.database_url, target_url(tmp_path)
    sealed = database.rows(source, "SELECT access_token_sealed, verify_token_sealed FROM channels")

    # As an operator runs it; pages of one row, so every table is read in keyset pages (composite keys too).
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": source, "DATA_DIR": str(PROJECT_DATA)}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "copy-database", "--to", target, "--batch-rows", "1"),
        env=env,
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = (raw.decode() for raw in await asyncio.wait_for(process.communicate(), timeout=60))

    assert process.returncode == 0, stderr
    assert PASSWORD not in stdout + stderr and "***@" in stdout
    assert_same_rows(source, target, nul_in="webhook_unrouted")
    assert database.rows(target, "SELECT access_token_sealed, verify_token_sealed FROM channels") == sealed
    counts = {t: len(database.rows(source, f"SELECT 1 FROM {t}")) for t in tables(source)}
    report = dict(line.strip().split(": ", 1) for line in stdout.splitlines()[1:-1])
    assert {t: int(v.split()[0]) for t, v in report.items()} == counts
    assert "1 NUL value(s) stored as U+FFFD" in report["webhook_unrouted"]
    assert stdout.splitlines()[-1].startswith(f"total: {sum(counts.values())} row(s) in {len(counts)} tables")
    [bot] = database.rows(target, "SELECT temperature FROM bots")
    assert bot["temperature"] == 0.7 and isinstance(bot["temperature"], float)

    # The gateway on PostgreSQL serves the same conversations and quota, and the copied API key relays.
    client = await make_client(replace(settings, database_url=target, workers=0))
    owner = auth("owner", tenant.account_id)
    listed = await expect(await client.get("/api/conversations", headers=owner), 200)
    assert {(c["external_id"], c["message_count"]) for c in listed["conversations"]} >= {("alice", 4), ("bob", 2)}
    account = await expect(await client.get(f"/api/admin/accounts/{tenant.account_id}", headers=auth()), 200)
    [quota] = database.rows(source, "SELECT used_tokens, credit_balance FROM quota_state")
    assert account["quota"]["used_tokens"] == quota["used_tokens"] > 0
    assert account["quota"]["credit_balance_tokens"] == quota["credit_balance"] == 5_000
    answer = await expect(await relay(client, tenant, "Still there?", user_id="alice"), 200)
    assert answer["quota"]["used_tokens"] > quota["used_tokens"]
    [alice] = database.rows(target, "SELECT message_count FROM contacts WHERE external_id = 'alice'")
    assert alice["message_count"] == 6
    # The knowledge came along, and PostgreSQL's own index finds it.
    search = f"/api/admin/bots/{tenant.bot_id}/knowledge/search"
    found = await expect(await client.get(search, params={"q": "open on sundays?"}, headers=owner), 200)
    assert found["results"][0]["text"] == "Opening hours > Sundays\n\nOpen 8 to 12."


def test_a_second_copy_into_the_filled_target_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = demo_source(tmp_path)
    target = target_url(tmp_path)
    code, out = run_copy(source, target)
    assert code == 0 and PASSWORD not in out
    capsys.readouterr()
    everything = [*tables(target), "schema_migrations"]
    before = {t: database.rows(target, f"SELECT * FROM {t}") for t in everything}

    code, out = run_copy(source, target)

    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert "already holds data" in err and "plans" in err and PASSWORD not in err
    assert {t: database.rows(target, f"SELECT * FROM {t}") for t in everything} == before
    assert_same_rows(source, target)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        # SQLite keeps text in an INTEGER column; PostgreSQL refuses it, after the plans and accounts went in.
        ("UPDATE bots SET max_reply_tokens = 'many'", 'invalid input syntax for type integer: "many"'),
        # Bytes in a TEXT column: COPY would store their hex text, so the copy refuses them.
        ("UPDATE bots SET persona = x'00ff'", "a BLOB value"),
    ],
)
def test_a_failure_midway_leaves_the_target_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, says: str
) -> None:
    source = demo_source(tmp_path)
    target = target_url(tmp_path)
    database.execute(source, change)

    assert run_copy(source, target)[0] == 2

    err = capsys.readouterr().err
    assert "copying table bots failed, nothing was written" in err and says in err
    assert tables(target) == tables(source)  # migrated, so a second attempt can follow
    assert all(not database.rows(target, f"SELECT 1 FROM {t}") for t in tables(target))


def test_a_source_behind_the_latest_schema_is_refused_before_the_target_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = demo_source(tmp_path)
    database.execute(
        source, "DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)"
    )
    target = target_url(tmp_path)

    assert run_copy(source, target)[0] == 2

    assert "run `python -m gateway migrate` on the source" in capsys.readouterr().err
    assert database.table_names(target) == []


def test_a_table_only_the_source_has_is_refused_not_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = demo_source(tmp_path)
    database.execute(source, "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
    target = target_url(tmp_path)

    assert run_copy(source, target)[0] == 2

    assert "only in the source: notes" in capsys.readouterr().err
    assert all(not database.rows(target, f"SELECT 1 FROM {t}") for t in tables(target))


def test_a_target_with_tables_of_another_application_is_refused_before_migrating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = demo_source(tmp_path)
    target = target_url(tmp_path)
    database.execute(target, "CREATE TABLE invoices (id TEXT PRIMARY KEY)")

    assert run_copy(source, target)[0] == 2

    assert "the target has tables the gateway does not (invoices)" in capsys.readouterr().err
    assert database.table_names(target) == ["invoices"]


@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        ("sqlite:///{tmp}/absent.db", "postgresql://u@127.0.0.1:1/db", "does not exist"),
        ("sqlite:///{tmp}/src.db", "sqlite:///{tmp}/other.db", "--to must be a postgresql:// URL"),
        ("postgresql://u:pw@127.0.0.1:1/db", "postgresql://u@127.0.0.1:1/db", "must be a sqlite:/// URL"),
    ],
)
def test_wrong_urls_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, target: str, says: str
) -> None:
    assert run_copy(source.format(tmp=tmp_path), target.format(tmp=tmp_path))[0] == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()


def demo_source(tmp_path: Path) -> str:
    """A small SQLite database made by the `demo` command: plans, an account, its quota row, a bot, an API key."""
    source = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["demo"], {"DATABASE_URL": source, "DATA_DIR": str(PROJECT_DATA)}, io.StringIO()) == 0
    return source
