"""GET /api/dashboard/metrics: figures of relayed turns (exact usage from the fake OpenAI) and of rows stored at
past times, compared with values computed by hand; scoping by role and account; parameter errors."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import INBOX_RETENTION_MS
from gateway.keys import STORAGE
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI, Fault
from tests.conftest import MakeClient
from tests.support import database
from tests.support.harness import Tenant, auth, connect_channel, expect, provision, relay, signed
from tests.support.reporting_rows import (
    conversation,
    dead_letter_row,
    failure_row,
    feedback_row,
    inbox_row,
    insert,
    ms,
    usage_row,
)

MARCH = {"from": "2025-03-01T00:00:00Z", "to": str(ms("2025-04-01T00:00:00"))}  # ISO and epoch ms both accepted


async def metrics(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return await expect(await client.get("/api/dashboard/metrics", params=params, headers=headers), 200)


async def test_relayed_turns_are_counted_exactly(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    fake_openai.cached_tokens = 7
    for user, text in (("alice", "Hi"), ("bob", "Are you open on Sunday?"), ("alice", "Do you have oat milk?")):
        await expect(await relay(client, tenant, text, user_id=user), 200)
    fake_openai.script(Fault.insufficient_quota())  # a billing failure upstream: not retried, nothing charged
    failed = await relay(client, tenant, "hello?", user_id="carol")
    assert failed.status in (502, 503)

    body = await metrics(client, auth("owner", tenant.account_id))

    served = [c.usage for c in fake_openai.calls if c.status == 200 and c.usage is not None]
    assert len(served) == 3
    prompt = sum(u["prompt_tokens"] for u in served)
    completion = sum(u["completion_tokens"] for u in served)
    cached = sum(u["prompt_tokens_details"]["cached_tokens"] for u in served)
    assert cached == 21
    assert body["account_id"] == tenant.account_id
    assert body["messages"] == {"inbound": 3, "outbound": 3}  # carol's failed turn stored nothing
    assert body["conversations"] == 2
    assert body["active_contacts"] == 2
    assert body["requests"] == 4
    assert body["quota_refusals"] == 0
    assert body["tokens"] == {
        "prompt": prompt,
        "cached": cached,
        "completion": completion,
        "reasoning": 0,
        "total": prompt + completion,
    }
    # gpt-4o-mini: $0.15 per 1M input tokens, $0.075 cached, $0.60 output.
    expected = Decimal(prompt - cached) * Decimal("0.15") + cached * Decimal("0.075") + completion * Decimal("0.60")
    assert Decimal(body["cost_usd"]) == expected / 1_000_000
    assert body["cost_known"] is True
    assert body["errors"] == 1
    assert body["errors_by_outcome"] == {"upstream_error": 1}
    assert body["latency_ms"]["samples"] == 3
    assert body["latency_ms"]["p95"] >= body["latency_ms"]["average"] > 0
    assert body["fallbacks"] == 0
    assert body["fallbacks_by_cause"] == {"dead_letter": 0, "empty_reply": 0}
    assert body["feedback"] == {"up": 0, "down": 0}
    quota = body["quota"]
    assert quota["limit_tokens"] == 100_000
    assert quota["used_tokens"] == prompt + completion
    assert quota["remaining_tokens"] == 100_000 - prompt - completion
    assert quota["reserved_tokens"] == 0


async def seed_march(client: TestClient, settings: Settings, tenant: Tenant, page_id: str) -> None:
    """Past activity of one account: 100 served calls with latencies 1..100 ms (one unpriced), 2 failed calls, an
    empty reply, a quota refusal, 3 conversations (2 in March, one the day before the end), feedback and dead
    letters (their activity rows; the inbox rows of finished events are purged after days, and only some remain)."""
    a, bot = tenant.account_id, tenant.bot_id
    start = ms("2025-03-01T00:00:00")
    rows = [
        usage_row(a, bot, start + i * 3_600_000, cached=10, reasoning=5, latency=i, cost=None if i == 100 else 1000)
        for i in range(1, 101)
    ]
    outcomes = ("upstream_error", "upstream_error", "empty_reply", "quota_exceeded")
    rows += [failure_row(a, bot, start + 5_000, o) for o in outcomes]
    # Just outside the range on both sides: the end is exclusive.
    rows += [usage_row(a, bot, start - 1, latency=9999), usage_row(a, bot, ms("2025-04-01T00:00:00"), latency=9999)]
    insert(settings, "usage_records", rows)
    first = conversation(settings, a, bot, "c1", [ms("2025-03-02T10:00:00"), ms("2025-03-02T10:05:00")])
    conversation(settings, a, bot, "c2", [ms("2025-03-31T12:00:00")])
    conversation(settings, a, bot, "c3", [ms("2025-02-20T12:00:00")])
    insert(
        settings,
        "feedback",
        [feedback_row(a, bot, first, r, ms("2025-03-03T00:00:00")) for r in ("up", "up", "up", "down")]
        + [feedback_row(a, bot, first, "up", ms("2025-02-03T00:00:00"))],
    )
    channel = await connect_channel(client, tenant, "messenger", page_id)
    insert(
        settings,
        "activity",
        [
            dead_letter_row(a, bot, channel["id"], ms("2025-03-10T00:00:00")),
            dead_letter_row(a, bot, channel["id"], ms("2025-03-11T00:00:00")),
            dead_letter_row(a, bot, channel["id"], ms("2025-04-02T00:00:00")),
        ],
    )
    # Only one dead inbox row left after the purge, and a done one: neither is what the figure counts.
    insert(
        settings,
        "inbox",
        [
            inbox_row(channel["id"], "dead", ms("2025-03-11T00:00:00")),
            inbox_row(channel["id"], "done", ms("2025-03-12")),
        ],
    )


async def test_past_rows_give_hand_computed_figures(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    await seed_march(client, settings, tenant, "1000001")

    body = await metrics(client, auth("owner", tenant.account_id), **MARCH)

    assert (body["from"], body["to"]) == ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    assert body["requests"] == 103  # the quota refusal made no model call
    assert body["quota_refusals"] == 1
    assert body["tokens"] == {"prompt": 10_000, "cached": 1_000, "completion": 2_000, "reasoning": 500, "total": 12_000}
    assert body["cost_usd"] == "0.000099"  # 99 priced calls at 1,000 nano-dollars; the unpriced one is flagged
    assert body["cost_known"] is False
    assert body["unpriced_requests"] == 1
    assert body["latency_ms"] == {"average": 50.5, "p95": 95, "samples": 100}
    assert body["errors"] == 3
    assert body["errors_by_outcome"] == {"empty_reply": 1, "upstream_error": 2}
    assert body["messages"] == {"inbound": 3, "outbound": 3}
    assert body["conversations"] == 2
    assert body["active_contacts"] == 1  # only c2 wrote in the 24 hours before the end
    assert body["fallbacks"] == 3  # two dead letters in March, one empty reply
    assert body["fallbacks_by_cause"] == {"dead_letter": 2, "empty_reply": 1}
    assert body["feedback"] == {"up": 3, "down": 1}


async def test_accounts_are_isolated_and_admin_totals_are_their_sum(client: TestClient, settings: Settings) -> None:
    a = await provision(client, name="Alpha")
    b = await provision(client, name="Beta")
    await seed_march(client, settings, a, "1000001")
    insert(
        settings,
        "usage_records",
        [usage_row(b.account_id, b.bot_id, ms("2025-03-05T00:00:00"), prompt=7, completion=3, latency=400)] * 1
        + [failure_row(b.account_id, b.bot_id, ms("2025-03-06T00:00:00"), "upstream_error")],
    )
    b_contact = conversation(settings, b.account_id, b.bot_id, "b1", [ms("2025-03-31T20:00:00")])
    insert(settings, "feedback", [feedback_row(b.account_id, b.bot_id, b_contact, "down", ms("2025-03-07T00:00:00"))])
    b_channel = await connect_channel(client, b, "messenger", "1000002")
    insert(settings, "activity", [dead_letter_row(b.account_id, b.bot_id, b_channel["id"], ms("2025-03-15"))])

    alpha = await metrics(client, auth("owner", a.account_id), **MARCH)
    beta = await metrics(client, auth("viewer", b.account_id), **MARCH)  # a viewer reads too
    total = await metrics(client, auth(), **MARCH)

    assert beta["requests"] == 2
    assert beta["tokens"]["prompt"] == 7
    assert beta["feedback"] == {"up": 0, "down": 1}
    assert beta["fallbacks"] == 1
    assert alpha["requests"] == 103  # nothing of Beta's
    assert total["account_id"] is None
    assert total["quota"] is None  # a quota belongs to one account
    keys = (
        "requests",
        "quota_refusals",
        "conversations",
        "active_contacts",
        "errors",
        "fallbacks",
        "unpriced_requests",
    )
    for key in keys:
        assert total[key] == alpha[key] + beta[key], key
    for group in ("messages", "tokens", "feedback", "fallbacks_by_cause"):
        for key in alpha[group]:
            assert total[group][key] == alpha[group][key] + beta[group][key], (group, key)
    assert Decimal(total["cost_usd"]) == Decimal(alpha["cost_usd"]) + Decimal(beta["cost_usd"])
    assert total["errors_by_outcome"] == {"empty_reply": 1, "upstream_error": 3}
    assert total["latency_ms"]["samples"] == 101
    # An admin may narrow to one account and sees exactly the owner's figures.
    assert await metrics(client, auth(), account_id=a.account_id, **MARCH) == alpha
    # Another account's id is a 404 for an owner or viewer, like an id that does not exist.
    for role in ("owner", "viewer"):
        response = await client.get(
            "/api/dashboard/metrics", params={"account_id": b.account_id}, headers=auth(role, a.account_id)
        )
        assert (await expect(response, 404))["error"]["code"] == "not_found"
    # Their own id is fine.
    assert await metrics(client, auth("owner", a.account_id), account_id=a.account_id, **MARCH) == alpha


async def test_unknown_account_for_admin_is_404(client: TestClient) -> None:
    response = await client.get("/api/dashboard/metrics", params={"account_id": "acc_nope"}, headers=auth())
    assert (await expect(response, 404))["error"]["code"] == "not_found"


async def test_bad_parameters_are_400_with_the_envelope(client: TestClient) -> None:
    tenant = await provision(client)
    headers = auth("owner", tenant.account_id)
    cases = [
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-01"}, "to"),
        ({"from": "-5"}, "from"),
        ({"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from"),
        ({"from": "2025-03-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "from"),
        ({"to": "99999999999999999999"}, "to"),
    ]
    for params, field in cases:
        body = await expect(await client.get("/api/dashboard/metrics", params=params, headers=headers), 400)
        assert body["error"]["code"] == "bad_request", params
        assert body["error"]["details"]["field"] == field, params


@pytest.mark.parametrize("path", ["/api/dashboard/metrics", "/api/dashboard/usage", "/api/dashboard/bots"])
async def test_a_range_ending_in_the_last_month_of_9999_is_answered_not_500(client: TestClient, path: str) -> None:
    """Was 500: with `to` alone the range starts at its month, and December 9999 had no next month to end it."""
    tenant = await provision(client)
    headers = auth("owner", tenant.account_id)
    body = await expect(await client.get(path, params={"to": "9999-12-31T23:59:59Z"}, headers=headers), 200)
    assert (body["from"], body["to"]) == ("9999-12-01T00:00:00Z", "9999-12-31T23:59:59Z")


async def test_metrics_need_a_token(client: TestClient) -> None:
    body = await expect(await client.get("/api/dashboard/metrics"), 401)
    assert body["error"]["code"] == "unauthorized"


async def test_default_range_is_the_current_month_and_offsets_are_converted(client: TestClient) -> None:
    tenant = await provision(client)
    headers = auth("owner", tenant.account_id)
    body = await metrics(client, headers)
    assert body["from"][8:] == "01T00:00:00Z"
    converted = await metrics(client, headers, **{"from": "2025-03-01T02:00:00+02:00", "to": "2025-03-02"})
    assert (converted["from"], converted["to"]) == ("2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z")


async def test_quota_refusals_are_not_counted_as_model_calls_or_errors(client: TestClient) -> None:
    """Regression: a turn refused for quota (a usage row with 0 attempts) was counted in `requests`, `errors`,
    the usage series and the bots' `requests`, though no model was called."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "Hi", user_id="alice"), 200)
    await expect(
        await client.patch(f"/api/admin/plans/{tenant.plan_id}", json={"monthly_token_limit": 1}, headers=auth()), 200
    )
    for user in ("bob", "carol"):
        refused = await expect(await relay(client, tenant, "Anyone there?", user_id=user), 429)
        assert refused["error"]["code"] == "quota_exceeded"
    headers = auth("owner", tenant.account_id)

    body = await metrics(client, headers)
    usage = await expect(await client.get("/api/dashboard/usage", params={"bucket": "hour"}, headers=headers), 200)
    [bot] = (await expect(await client.get("/api/dashboard/bots", headers=headers), 200))["bots"]

    assert body["requests"] == 1
    assert body["quota_refusals"] == 2
    assert body["errors"] == 0
    assert body["errors_by_outcome"] == {}
    assert body["latency_ms"]["samples"] == 1
    [series] = usage["series"]
    assert series["totals"]["requests"] == sum(series["requests"]) == 1
    assert series["totals"]["quota_refusals"] == sum(series["quota_refusals"]) == 2
    assert (bot["requests"], bot["quota_refusals"]) == (1, 2)
    # bob and carol have contacts (made before the quota check) but no answered turn: not counted.
    assert (bot["contacts"], bot["messages"]) == (1, 2)


async def test_a_dead_letter_stays_a_fallback_after_the_inbox_is_purged(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph, monkeypatch: Any
) -> None:
    """Regression: fallbacks were counted from inbox rows in state 'dead', which the hourly purge deletes after
    10 days: a past month's figure dropped to 0. The worker now records the fallback when it sends it."""
    monkeypatch.setattr("core.channel_worker._BACKOFF_MS", (20, 20, 20, 20, 20))  # retries in ms, not minutes
    client = await make_client(replace(settings, workers=2))
    tenant = await provision(client, bot={"fallback_message": "Sorry, try again later."})
    await connect_channel(client, tenant, "messenger", "1000001")
    fake_openai.failure_rate = 1.0
    fake_openai.random_faults = [Fault.insufficient_quota()]  # not retried inside a turn: five quick failures
    now_ms = int(time.time() * 1000)
    event = {"sender": {"id": "2900000000000001"}, "recipient": {"id": "1000001"}, "timestamp": now_ms}
    event["message"] = {"mid": "m_dead", "text": "Where is my parcel 42?"}
    raw, headers = signed({"object": "page", "entry": [{"id": "1000001", "time": now_ms, "messaging": [event]}]})
    await expect(await client.post("/webhooks/messenger", data=raw, headers=headers), 200)
    deadline = time.monotonic() + 20
    while database.rows(settings, "SELECT state FROM inbox")[0]["state"] == "pending":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert fake_graph.texts_to("2900000000000001") == ["Sorry, try again later."]
    owner = auth("owner", tenant.account_id)

    before = await metrics(client, owner)
    # Eleven days later the purge drops the finished event (the figure must not change with it).
    old = int(time.time() * 1000) - 11 * 24 * 3600 * 1000
    database.execute(settings, "UPDATE inbox SET received_at = ?, updated_at = ?", (old, old))
    assert await client.server.app[STORAGE].queue.purge(older_than_ms=INBOX_RETENTION_MS) == 1
    after = await metrics(client, owner)
    feed = await expect(await client.get("/api/dashboard/activity", params={"kind": "dead_letter"}, headers=owner), 200)

    assert before["fallbacks"] == after["fallbacks"] == 1
    assert after["fallbacks_by_cause"] == {"dead_letter": 1, "empty_reply": 0}
    [entry] = feed["activity"]
    assert entry["summary"] == "A Messenger customer got the fallback message after 5 failed attempts"
    assert entry["detail"] == {"platform": "messenger", "attempts": 5}
    assert entry["bot_id"] == tenant.bot_id and entry["contact_id"] is not None
    assert "2900000000000001" not in str(entry) and "parcel" not in str(entry)  # no customer id, no text


async def test_an_empty_model_reply_answered_with_the_fallback_is_a_fallback(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    """Regression: a reasoning model's empty reply is answered with the bot's fallback message (usage outcome
    empty_reply), but `fallbacks` only counted dead letters."""
    tenant = await provision(client, bot={"fallback_message": "One moment, please ask again."})
    fake_openai.reply_with(lambda body: "")
    assert (await expect(await relay(client, tenant, "hi"), 200))["reply"] == "One moment, please ask again."

    body = await metrics(client, auth("owner", tenant.account_id))

    assert body["fallbacks"] == 1
    assert body["fallbacks_by_cause"] == {"dead_letter": 0, "empty_reply": 1}
    assert (body["requests"], body["errors_by_outcome"]) == (1, {"empty_reply": 1})
