"""Regressions from the code review of the operations surface: export time bounds and concurrency, the activity
feed not naming the operator, /metrics closed on a public address, and 5xx mutations in the audit trail."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.api.provisioning.test_export import COLUMNS, DAY, EXPORT, JAN_1, download, from_csv, insert_usage, stored
from tests.conftest import MakeClient
from tests.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import auth, expect, provision, relay

FEED = "/api/dashboard/activity"
AUDIT = "/api/admin/audit"
PUBLIC_HOST = "192.0.2.10"  # a documentation address: any address other than loopback is public here


async def test_export_refuses_instants_out_of_range_instead_of_failing(client: TestClient) -> None:
    for query in (
        {"from": "0001-01-01T00:00:00+05:00"},  # before 0001-01-01 in UTC
        {"to": "9999-12-31T23:00:00-05:00"},  # after 9999-12-31 in UTC
        {"from": "1969-12-31T23:59:59Z"},
    ):
        answer = await client.get(EXPORT, params=query, headers=auth())
        body = await expect(answer, 400)
        assert body["error"]["code"] == "bad_request" and "out of range" in body["error"]["message"], query
    # The last millisecond there is still makes a download, named after it.
    response, _ = await download(client, auth(), to="9999-12-31T23:59:59.999Z")
    assert 'filename="usage_all-accounts_start_99991231T235959Z.csv"' in response.headers["Content-Disposition"]


async def test_export_takes_epoch_milliseconds_like_the_dashboard(client: TestClient, settings: Settings) -> None:
    acme = await provision(client)
    for day in range(4):
        insert_usage(settings, acme.account_id, JAN_1 + day * DAY, 2)

    _, body = await download(client, auth(), **{"from": str(JAN_1 + DAY), "to": str(JAN_1 + 3 * DAY)})

    assert from_csv(body) == stored(settings, "created_at >= ? AND created_at < ?", (JAN_1 + DAY, JAN_1 + 3 * DAY))
    assert len(from_csv(body)) == 4


async def test_a_third_export_at_once_is_told_to_retry(client: TestClient, settings: Settings) -> None:
    acme = await provision(client)
    # About 25 MB of CSV: far more than socket buffers hold, so an export nobody reads stays in progress.
    insert_usage(settings, acme.account_id, JAN_1, 100_000)
    owner = auth("owner", acme.account_id)
    held = [await client.get(EXPORT, headers=owner) for _ in range(2)]
    assert [r.status for r in held] == [200, 200]

    refused = await client.get(EXPORT, params={"format": "ndjson"}, headers=owner)

    body = await expect(refused, 429)
    assert body["error"]["code"] == "rate_limited" and refused.headers["Retry-After"] == "5"
    for response in held:
        response.close()  # the downloads are abandoned: their slots free
    deadline = time.monotonic() + 10
    while (answer := await client.get(EXPORT, params={"from": "2030-01-01"}, headers=owner)).status == 429:
        assert time.monotonic() < deadline, "the abandoned exports never freed their slots"
        await asyncio.sleep(0.05)
    assert await expect(answer, 200) == ",".join(COLUMNS) + "\r\n"  # the header row only: nothing after 2030


async def test_the_feed_does_not_name_the_operator(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await client.patch(f"/api/admin/bots/{tenant.bot_id}", json={"persona": "New."}, headers=auth()), 200)
    await expect(await relay(client, tenant, "hi", user_id="to-erase"), 200)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]
    await expect(await client.delete(f"/api/conversations/{contact['id']}", headers=owner), 200)

    for role in ("owner", "viewer"):
        actions = (
            await expect(await client.get(f"{FEED}?kind=admin_action", headers=auth(role, tenant.account_id)), 200)
        )["activity"]
        by_path = {a["detail"]["path"]: a for a in actions}
        operator = by_path["/api/admin/bots/{bot_id}"]
        assert "actor" not in operator["detail"] and operator["detail"]["actor_role"] == "admin"
        assert operator["summary"] == f"The operator: update bot {tenant.bot_id}"
        # An owner's own action still says which of the account's people did it.
        assert by_path["/api/conversations/{contact_id}"]["detail"]["actor"] == "tester"
    # The audit trail, for the operator only, keeps who it was.
    entries = (await expect(await client.get(AUDIT, headers=auth()), 200))["entries"]
    patch = next(e for e in entries if e["action"] == "update_bot")
    assert (patch["actor"], patch["actor_role"]) == ("tester", "admin")


async def test_metrics_need_a_token_on_a_public_address(make_client: MakeClient, settings: Settings) -> None:
    public = await make_client(replace(settings, host=PUBLIC_HOST))

    answer = await public.get("/metrics")

    body = await expect(answer, 503)
    assert body["error"]["code"] == "not_configured"
    assert "set METRICS_TOKEN to expose /metrics on a non-loopback address" in body["error"]["message"]
    assert "relay_requests" not in str(body)


async def test_metrics_with_a_token_on_a_public_address_or_open_on_loopback(
    make_client: MakeClient, settings: Settings, tmp_path: Any
) -> None:
    public = await make_client(replace(settings, host=PUBLIC_HOST, metrics_token="scrape-me"))
    await expect(await public.get("/metrics"), 401)
    scraped = await public.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status == 200 and "# TYPE" in await scraped.text()
    (tmp_path / "v6").mkdir()
    loopback_v6 = await make_client(replace(settings, host="::1", database_url=database.scratch_url(tmp_path / "v6")))
    assert (await loopback_v6.get("/metrics")).status == 200


async def test_a_mutation_answered_5xx_is_audited_as_an_error(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, secrets_key=None))
    tenant = await provision(client)
    body = {"platform": "whatsapp", "external_id": "106540352242922", "access_token": "token-secret-value"}

    answer = await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth())

    assert (await expect(answer, 503))["error"]["code"] == "not_configured"
    entries = (await expect(await client.get(AUDIT, headers=auth()), 200))["entries"]
    [failed] = [e for e in entries if e["action"] == "connect_channel"]
    assert (failed["status"], failed["account_id"], failed["target_id"]) == (503, tenant.account_id, tenant.bot_id)
    assert failed["detail"] == {"outcome": "error", "fields": ["access_token", "external_id", "platform"]}
    assert "token-secret-value" not in str(entries)
    # The feed shows what happened to the account; an attempt that failed stays in the trail only.
    feed = (await expect(await client.get(f"{FEED}?kind=admin_action", headers=auth()), 200))["activity"]
    assert all(a["detail"]["path"] != "/api/admin/bots/{bot_id}/channels" for a in feed)
