"""GET /api/dashboard/usage: a bucketed time series with every bucket present, grouped by model, bot or platform,
checked against rows stored at known instants and against a relayed turn; scoping and parameter errors."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.harness import Tenant, auth, expect, provision, relay
from tests.support.reporting_rows import failure_row, insert, ms, usage_row

MAY = {"from": "2025-05-01T00:00:00Z", "to": "2025-05-04T00:00:00Z"}
DAYS = ["2025-05-01T00:00:00Z", "2025-05-02T00:00:00Z", "2025-05-03T00:00:00Z"]


async def usage(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return await expect(await client.get("/api/dashboard/usage", params=params, headers=headers), 200)


async def second_bot(client: TestClient, tenant: Tenant, name: str) -> str:
    body = {"name": name, "persona": "You sell shoes."}
    response = await client.post(f"/api/admin/accounts/{tenant.account_id}/bots", json=body, headers=auth())
    return (await expect(response, 201))["id"]


async def seed_may(client: TestClient, settings: Settings, tenant: Tenant) -> str:
    """Day 1: two relay calls of bot 1 on gpt-4o-mini. Day 2: nothing. Day 3: one messenger call of bot 1 and an
    unpriced WhatsApp call of bot 2 on gpt-4.1. Returns bot 2's id."""
    a, bot1 = tenant.account_id, tenant.bot_id
    bot2 = await second_bot(client, tenant, "Shoe bot")
    insert(
        settings,
        "usage_records",
        [
            usage_row(a, bot1, ms("2025-05-01T01:15:00"), prompt=100, cached=40, completion=10, cost=1500),
            usage_row(a, bot1, ms("2025-05-01T01:45:00"), prompt=200, completion=20, cost=2500),
            usage_row(a, bot1, ms("2025-05-03T09:00:00"), channel="messenger", prompt=50, completion=5, cost=700),
            usage_row(a, bot2, ms("2025-05-03T23:59:59"), model="gpt-4.1", channel="whatsapp", prompt=10, cost=None),
            usage_row(a, bot1, ms("2025-05-04T00:00:00"), prompt=999),  # the end is exclusive
            usage_row(a, bot1, ms("2025-04-30T23:59:59"), prompt=999),
        ],
    )
    return bot2


async def test_day_buckets_include_empty_days(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    await seed_may(client, settings, tenant)

    body = await usage(client, auth("viewer", tenant.account_id), **MAY)  # a viewer reads

    assert body["bucket"] == "day"
    assert body["bucket_seconds"] == 86_400
    assert body["group_by"] is None
    assert body["buckets"] == DAYS
    [series] = body["series"]
    assert (series["key"], series["label"]) == (None, "all")
    assert series["requests"] == [2, 0, 2]
    assert series["prompt_tokens"] == [300, 0, 60]
    assert series["cached_tokens"] == [40, 0, 0]
    assert series["completion_tokens"] == [30, 0, 25]
    assert series["cost_usd"] == ["0.000004", "0.000000", "0.0000007"]
    assert series["quota_refusals"] == [0, 0, 0]
    assert series["totals"] == {
        "requests": 4,
        "quota_refusals": 0,
        "prompt_tokens": 360,
        "cached_tokens": 40,
        "completion_tokens": 55,
        "cost_usd": "0.0000047",
        "cost_known": False,
        "unpriced_requests": 1,
    }


async def test_group_by_model_bot_and_platform(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client, name="Acme")
    bot2 = await seed_may(client, settings, tenant)
    headers = auth("owner", tenant.account_id)

    by_model = await usage(client, headers, group_by="model", **MAY)
    assert by_model["group_by"] == "model"
    assert [(s["key"], s["requests"]) for s in by_model["series"]] == [
        ("gpt-4o-mini", [2, 0, 1]),
        ("gpt-4.1", [0, 0, 1]),
    ]
    assert by_model["series"][1]["totals"]["cost_known"] is False
    assert by_model["series"][0]["totals"]["cost_usd"] == "0.0000047"

    by_bot = await usage(client, headers, group_by="bot", **MAY)
    assert [(s["key"], s["label"], s["requests"]) for s in by_bot["series"]] == [
        (tenant.bot_id, "Acme bot", [2, 0, 1]),
        (bot2, "Shoe bot", [0, 0, 1]),
    ]

    by_platform = await usage(client, headers, group_by="platform", **MAY)
    got = {s["key"]: s["requests"] for s in by_platform["series"]}
    assert got == {"relay": [2, 0, 0], "messenger": [0, 0, 1], "whatsapp": [0, 0, 1]}


async def test_hour_buckets_align_to_utc_hours(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    await seed_may(client, settings, tenant)
    headers = auth("owner", tenant.account_id)

    body = await usage(client, headers, bucket="hour", **{"from": "2025-05-01T00:00:00Z", "to": "2025-05-01T06:00:00Z"})
    assert body["bucket_seconds"] == 3600
    assert len(body["buckets"]) == 6
    assert body["series"][0]["requests"] == [0, 2, 0, 0, 0, 0]
    # A range ending inside an hour: that hour is the last bucket.
    body = await usage(client, headers, bucket="hour", **{"from": "2025-05-01T00:00:00Z", "to": "2025-05-01T01:20:00Z"})
    assert body["series"][0]["requests"] == [0, 1]

    # A range starting inside an hour: the first bucket starts on the hour but holds only calls from `from` on.
    body = await usage(client, headers, bucket="hour", **{"from": "2025-05-01T01:30:00Z", "to": "2025-05-01T03:00:00Z"})
    assert body["buckets"] == ["2025-05-01T01:00:00Z", "2025-05-01T02:00:00Z"]
    assert body["series"][0]["requests"] == [1, 0]
    assert body["series"][0]["prompt_tokens"] == [200, 0]


async def test_a_relayed_turn_lands_in_the_current_bucket(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "Do you sell gift cards?"), 200)
    [call] = fake_openai.calls

    body = await usage(client, auth("owner", tenant.account_id), bucket="hour", group_by="model")

    [series] = body["series"]
    assert series["key"] == "gpt-4o-mini"
    assert len(body["buckets"]) == len(series["requests"]) >= 1
    assert sum(series["requests"]) == 1
    hour = series["requests"].index(1)
    assert series["prompt_tokens"][hour] == call.usage["prompt_tokens"]
    assert series["completion_tokens"][hour] == call.usage["completion_tokens"]
    assert hour >= len(body["buckets"]) - 2  # the hour of the call, moments ago (or the one before, at :00)


async def test_accounts_are_isolated_and_admin_sees_the_sum(client: TestClient, settings: Settings) -> None:
    a = await provision(client, name="Alpha")
    b = await provision(client, name="Beta")
    await seed_may(client, settings, a)
    insert(settings, "usage_records", [usage_row(b.account_id, b.bot_id, ms("2025-05-02T12:00:00"), prompt=5)])

    alpha = await usage(client, auth("owner", a.account_id), **MAY)
    beta = await usage(client, auth("owner", b.account_id), **MAY)
    total = await usage(client, auth(), **MAY)

    assert alpha["series"][0]["requests"] == [2, 0, 2]
    assert beta["series"][0]["requests"] == [0, 1, 0]
    assert total["account_id"] is None
    assert total["series"][0]["requests"] == [2, 1, 2]
    assert total["series"][0]["prompt_tokens"] == [300, 5, 60]
    assert (await usage(client, auth(), account_id=b.account_id, **MAY)) == beta
    response = await client.get(
        "/api/dashboard/usage", params={"account_id": b.account_id}, headers=auth("owner", a.account_id)
    )
    assert (await expect(response, 404))["error"]["code"] == "not_found"


async def test_bad_parameters_are_400(client: TestClient) -> None:
    tenant = await provision(client)
    headers = auth("owner", tenant.account_id)
    two_years = {"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    cases = [
        ({"bucket": "week"}, "bucket"),
        ({"group_by": "colour"}, "group_by"),
        ({"bucket": "hour", **two_years}, "bucket"),
        ({"from": "soon"}, "from"),
    ]
    for params, field in cases:
        body = await expect(await client.get("/api/dashboard/usage", params=params, headers=headers), 400)
        assert body["error"]["code"] == "bad_request", params
        assert body["error"]["details"]["field"] == field, params
    # The same two years by day is fine: 731 buckets.
    assert len((await usage(client, headers, **two_years))["buckets"]) == 731


async def test_groups_beyond_top_are_summed_into_one_other_series(client: TestClient, settings: Settings) -> None:
    """Regression (DoS): group_by=bot had no bound on the number of series; one usage row per bot (even a quota
    refusal) made a series of 8,760 hourly entries each. Now the top groups by model calls get a series each and
    the database sums the rest into one `other` series."""
    tenant = await provision(client)
    a = tenant.account_id
    bots = [await second_bot(client, tenant, f"Bot {i}") for i in range(14)]
    rows = [failure_row(a, bot, ms("2025-06-01T00:30:00"), "quota_exceeded") for bot in [*bots, tenant.bot_id]]
    for i, bot in enumerate(bots):  # bot i makes i + 1 calls, an hour apart, from 2025-03-01
        rows += [usage_row(a, bot, ms("2025-03-01T00:00:00") + n * 3_600_000, cost=10) for n in range(i + 1)]
    insert(settings, "usage_records", rows)
    headers = auth("owner", a)
    year = {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "bucket": "hour"}

    body = await usage(client, headers, group_by="bot", **year)

    assert (body["top"], body["groups"], len(body["buckets"])) == (10, 15, 8760)
    assert len(body["series"]) == 11
    ranked, other = body["series"][:10], body["series"][10]
    assert [s["key"] for s in ranked] == bots[:3:-1]  # Bot 13 (14 calls) down to Bot 4 (5 calls)
    assert [s["label"] for s in ranked] == [f"Bot {i}" for i in range(13, 3, -1)]
    assert not any(s["other"] for s in ranked)
    assert (other["key"], other["label"], other["other"]) == (None, "other", True)
    # Bots 0..3 (4 + 3 + 2 + 1 calls) and the tenant's own bot (a refusal only); their calls by hour from March 1.
    march = body["buckets"].index("2025-03-01T00:00:00Z")
    assert other["requests"][march : march + 5] == [4, 3, 2, 1, 0]
    assert other["totals"]["requests"] == 10
    assert other["totals"]["quota_refusals"] == 5
    assert other["totals"]["cost_usd"] == "0.0000001"  # 10 calls at 10 nano-dollars
    # Nothing is lost: the series add up to the ungrouped totals.
    [whole] = (await usage(client, headers, **year))["series"]
    for figure, expected in (("requests", 105), ("quota_refusals", 15)):
        assert sum(s["totals"][figure] for s in body["series"]) == whole["totals"][figure] == expected

    wide = await usage(client, headers, group_by="bot", top="20", **year)
    assert (wide["top"], len(wide["series"])) == (20, 15)
    assert not any(s["other"] for s in wide["series"])
    last = wide["series"][-1]
    assert last["key"] == tenant.bot_id  # a refusal only: ranked last
    assert (last["totals"]["requests"], last["totals"]["quota_refusals"]) == (0, 1)
    for bad in ("0", "21", "ten", "-1", "9" * 5000):
        response = await client.get("/api/dashboard/usage", params={"group_by": "bot", "top": bad}, headers=headers)
        assert (await expect(response, 400))["error"]["details"]["field"] == "top", bad


async def test_a_year_of_hours_by_many_groups_stays_a_bounded_response(client: TestClient, settings: Settings) -> None:
    """40 models each called once over a year of hours: at most top + 1 = 21 series (183,960 cells, a few MB),
    where every model used to get its own 8,760-entry series."""
    tenant = await provision(client)
    a, bot = tenant.account_id, tenant.bot_id
    rows = [usage_row(a, bot, ms("2025-02-01T00:00:00") + i * 86_400_000, model=f"m-{i:02d}") for i in range(40)]
    insert(settings, "usage_records", rows)
    params = {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "bucket": "hour", "group_by": "model"}

    response = await client.get("/api/dashboard/usage", params={**params, "top": "20"}, headers=auth("owner", a))
    raw = await response.read()
    body = await expect(response, 200)

    assert body["groups"] == 40
    assert len(body["series"]) == 21
    assert len(body["series"]) * len(body["buckets"]) <= 200_000
    assert len(raw) < 8_000_000  # 5.2 MB measured
    assert [s["key"] for s in body["series"][:20]] == [f"m-{i:02d}" for i in range(20)]  # ties: by key
    assert body["series"][20]["totals"]["requests"] == 20
