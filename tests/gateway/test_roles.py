"""Processes with roles on one database (`serve --role web|worker|all`), and what crosses between them: the inbox,
the doorbell that wakes workers, channel changes, migrations run by several processes at once.

Two apps on one database stand for two processes: each has its own database handle (its own connections, its own
LISTEN connection on PostgreSQL), as a process would. Cross-process wake-ups and channel changes are PostgreSQL's
(LISTEN/NOTIFY); on SQLite other processes poll, so those tests run on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from core.storage.migrations import MIGRATIONS
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from tests.conftest import MakeClient
from tests.support import database
from tests.support.channel_traffic import PHONE_ID, settled, wa_text
from tests.support.harness import auth, connect_channel, expect, provision, signed
from tests.support.paths import PROJECT_DATA


async def answered(graph: FakeGraph, count: int, within: float) -> float:
    """Seconds until `count` replies reached Graph; fails after `within`."""
    started = time.monotonic()
    while len(graph.sent_texts()) < count:
        assert time.monotonic() - started < within, f"{len(graph.sent_texts())} of {count} replies in {within} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def web_and_worker(
    make_client: MakeClient, settings: Settings, **worker: object
) -> tuple[TestClient, TestClient]:
    web = await make_client(replace(settings, role="web", workers=8))
    work = await make_client(replace(settings, role="worker", workers=2, **worker))
    return web, work


async def test_a_web_process_stores_what_a_worker_process_answers(
    make_client: MakeClient, settings: Settings, fake_graph: FakeGraph
) -> None:
    web, worker = await web_and_worker(make_client, settings)
    tenant = await provision(web)
    await connect_channel(web, tenant, "whatsapp", PHONE_ID)
    raw, headers = signed(wa_text("wamid.roles", "Do you open on Sundays?"))
    await expect(await web.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    await answered(fake_graph, 1, within=10)
    [row] = await settled(settings)
    assert (row["state"], row["lease_owner"]) == ("done", None)

    # The worker serves its probes and metrics only; the web process everything but inbox work.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await worker.get(path)).status == 200, path
    for path in ("/api/admin/plans", "/api/openapi.json", "/api/status/webhooks"):
        assert (await worker.get(path, headers=auth())).status == 404, path
    raw, headers = signed(wa_text("wamid.roles-2", "And on Mondays?"))
    assert (await worker.post("/webhooks/whatsapp", data=raw, headers=headers)).status == 404
    # The database-wide gauge comes from one process: the worker, which leads the housekeeping.
    assert "nexus_inbox_depth{" in await (await worker.get("/metrics")).text()
    assert "nexus_inbox_depth{" not in await (await web.get("/metrics")).text()


async def test_a_web_process_alone_answers_nobody(
    make_client: MakeClient, settings: Settings, fake_graph: FakeGraph
) -> None:
    web = await make_client(replace(settings, role="web", workers=8))
    tenant = await provision(web)
    await connect_channel(web, tenant, "whatsapp", PHONE_ID)
    raw, headers = signed(wa_text("wamid.alone", "Hello?"))
    await expect(await web.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    await asyncio.sleep(1.0)  # two poll periods of a worker, had there been one
    assert fake_graph.sent_texts() == []
    assert [r["state"] for r in database.rows(settings, "SELECT state FROM inbox")] == ["pending"]


@pytest.mark.postgresql_only
async def test_a_notify_wakes_a_worker_in_another_process_long_before_its_poll(
    make_client: MakeClient, settings: Settings, fake_graph: FakeGraph
) -> None:
    # The worker would look on its own only after a minute: an answer within seconds came through the doorbell.
    web, _ = await web_and_worker(make_client, settings, inbox_poll_seconds=60.0)
    tenant = await provision(web)
    await connect_channel(web, tenant, "whatsapp", PHONE_ID)
    await asyncio.sleep(0.5)  # the worker's first look (at start) is behind it
    raw, headers = signed(wa_text("wamid.rung", "Are you there?"))
    await expect(await web.post("/webhooks/whatsapp", data=raw, headers=headers), 200)
    await answered(fake_graph, 1, within=10)


@pytest.mark.postgresql_only
async def test_an_app_secret_rotated_in_one_process_verifies_in_another_at_once(
    make_client: MakeClient, settings: Settings
) -> None:
    """Was (one process per database): another process kept the old secret for up to 30 s, answering 401."""
    first = await make_client(replace(settings, role="web"))
    second = await make_client(replace(settings, role="web"))
    tenant = await provision(first)
    channel = await connect_channel(first, tenant, "whatsapp", PHONE_ID, app_secret="first-secret")
    raw, headers = signed(wa_text("wamid.before", "hi"), "first-secret")
    await expect(await second.post("/webhooks/whatsapp", data=raw, headers=headers), 200)  # second has it loaded

    changed = {"app_secret": "second-secret"}
    await expect(await first.patch(f"/api/admin/channels/{channel['id']}", json=changed, headers=auth()), 200)
    raw, headers = signed(wa_text("wamid.after", "hi again"), "second-secret")
    deadline = time.monotonic() + 3
    while (status := (await second.post("/webhooks/whatsapp", data=raw, headers=headers)).status) != 200:
        assert status == 401 and time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


def test_processes_migrating_at_once_apply_each_migration_once(tmp_path: Path) -> None:
    url = database.scratch_url(tmp_path, "migrated-together.db")
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "DATA_DIR": str(PROJECT_DATA)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway", "migrate"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    latest = MIGRATIONS[-1].version
    versions = [int(r["version"]) for r in database.rows(url, "SELECT version FROM schema_migrations")]
    assert sorted(versions) == [m.version for m in MIGRATIONS]
    applied = [o for o in outputs if o.startswith("applied")]
    assert len(applied) == 1 and sum("nothing to apply" in o for o in outputs) == 2, outputs
    assert all(f"schema version {latest}" in o for o in outputs)


async def test_the_per_minute_limit_is_the_plans_whatever_process_answers(
    make_client: MakeClient, settings: Settings
) -> None:
    """Was: each process counted its own share, so N processes allowed N times the plan's messages a minute."""
    first = await make_client(replace(settings, role="web"))
    second = await make_client(replace(settings, role="web"))
    tenant = await provision(first, plan={"messages_per_minute": 2})
    body = {"user_id": "busy-customer", "message": "hello"}
    for client in (first, second):
        await expect(await client.post("/api/messages/relay", json=body, headers=tenant.key_header), 200)
    refused = await second.post("/api/messages/relay", json=body, headers=tenant.key_header)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    refused = await first.post("/api/messages/relay", json=body, headers=tenant.key_header)
    assert refused.status == 429
