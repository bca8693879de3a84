"""Usage exports: what a download holds is exactly the stored records, in order, for the caller's account only;
bounds in ISO-8601 or epoch milliseconds, range-checked; at most two downloads at once."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.support import database
from tests.support.harness import Tenant, auth, expect, provision, relay

COLUMNS = [
    "id",
    "created_at",
    "account_id",
    "bot_id",
    "contact_id",
    "channel",
    "model",
    "response_model",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "latency_ms",
    "attempts",
    "outcome",
    "error_code",
    "request_id",
    "reported_usage",
]
INTEGERS = {"prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "total_tokens", "attempts"}
EXPORT = "/api/admin/logs/export"
JAN_1 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
DAY = 24 * 3600 * 1000


def insert_usage(settings: Settings, account_id: str, created_at: int, n: int, **overrides: Any) -> None:
    """Usage records as the engine writes them, at chosen times (a relay call can only write `now`)."""
    rows = []
    for i in range(n):
        row = {
            "id": f"use_t{created_at}_{i:05d}",
            "account_id": account_id,
            "bot_id": None,
            "contact_id": None,
            "channel": "relay",
            "model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18",
            "prompt_tokens": 10 + i,
            "cached_tokens": 0,
            "completion_tokens": 5,
            "reasoning_tokens": 0,
            "total_tokens": 15 + i,
            "cost_nanousd": 1234 * i,
            "latency_ms": 100 + i,
            "attempts": 1,
            "outcome": "ok",
            "error_code": None,
            "request_id": f"req_{i}",
            "created_at": created_at,
            **overrides,
        }
        rows.append(row)
    database.insert(settings, "usage_records", rows)


def stored(settings: Settings, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The records as the export must show them, computed independently of the gateway's code."""
    rows = database.rows(settings, f"SELECT * FROM usage_records WHERE {where} ORDER BY created_at, id", params)
    expected = []
    for r in rows:
        when = datetime.fromtimestamp(r["created_at"] / 1000, tz=UTC)
        expected.append(
            {
                **{c: r[c] for c in COLUMNS if c not in ("created_at", "cost_usd")},
                "created_at": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{r['created_at'] % 1000:03d}Z",
                "cost_usd": None if r["cost_nanousd"] is None else Decimal(r["cost_nanousd"]) / Decimal(10**9),
            }
        )
    return expected


def from_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert reader.fieldnames == COLUMNS
    rows = []
    for raw in reader:
        row: dict[str, Any] = {k: (None if v == "" else v) for k, v in raw.items()}
        for name in (*INTEGERS, "latency_ms"):
            row[name] = None if row[name] is None else int(row[name])
        row["cost_usd"] = None if row["cost_usd"] is None else Decimal(row["cost_usd"])
        rows.append(row)
    return rows


def from_ndjson(text: str) -> list[dict[str, Any]]:
    assert text == "" or text.endswith("\n")
    rows = [json.loads(line) for line in text.splitlines()]
    for row in rows:
        assert list(row) == COLUMNS
        assert all(isinstance(row[name], int) for name in INTEGERS)
        assert row["cost_usd"] is None or isinstance(row["cost_usd"], str)
        row["cost_usd"] = None if row["cost_usd"] is None else Decimal(row["cost_usd"])
    return rows


async def download(client: TestClient, headers: dict[str, str], **query: str) -> tuple[Any, str]:
    response = await client.get(EXPORT, params=query, headers=headers)
    body = await expect(response, 200)
    return response, body


async def two_tenants(client: TestClient) -> tuple[Tenant, Tenant]:
    acme, globex = await provision(client, name="Acme"), await provision(client, name="Globex")
    for text in ("Hello", "Do you open on Sundays?"):
        await expect(await relay(client, acme, text), 200)
    await expect(await relay(client, globex, "Hi"), 200)
    return acme, globex


async def test_csv_round_trips_to_the_stored_records_with_stable_columns(
    client: TestClient, settings: Settings
) -> None:
    acme, _ = await two_tenants(client)
    insert_usage(settings, acme.account_id, JAN_1, 3, cost_nanousd=None, latency_ms=None)  # unpriced, no latency
    response, body = await download(client, auth(), format="csv", account_id=acme.account_id)
    assert response.content_type == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"usage_{acme.account_id}_" in disposition
    assert disposition.endswith('.csv"')
    rows = from_csv(body)
    assert rows == stored(settings, "account_id = ?", (acme.account_id,))
    assert len(rows) == 5 and rows[0]["cost_usd"] is None and rows[-1]["cost_usd"] > 0
    assert body.startswith(",".join(COLUMNS) + "\r\n")


async def test_ndjson_of_all_accounts_for_an_admin(client: TestClient, settings: Settings) -> None:
    acme, globex = await two_tenants(client)
    response, body = await download(client, auth(), format="ndjson")
    assert response.content_type == "application/x-ndjson"
    assert 'filename="usage_all-accounts_start_now.ndjson"' in response.headers["Content-Disposition"]
    rows = from_ndjson(body)
    assert rows == stored(settings)
    assert {r["account_id"] for r in rows} == {acme.account_id, globex.account_id}


async def test_pages_cover_every_record_once_across_equal_timestamps(client: TestClient, settings: Settings) -> None:
    """2,600 records, 1,300 of them in one millisecond: page boundaries (1,000 rows) fall inside the tie."""
    acme = await provision(client)
    insert_usage(settings, acme.account_id, JAN_1, 1300)
    insert_usage(settings, acme.account_id, JAN_1 + 1, 1300, request_id="later")
    _, body = await download(client, auth("owner", acme.account_id), format="ndjson")
    rows = from_ndjson(body)
    assert len(rows) == 2600 and len({r["id"] for r in rows}) == 2600
    assert rows == stored(settings)


async def test_from_is_inclusive_and_to_exclusive(client: TestClient, settings: Settings) -> None:
    acme = await provision(client)
    for day in range(5):
        insert_usage(settings, acme.account_id, JAN_1 + day * DAY, 2)
    _, body = await download(client, auth(), format="csv", **{"from": "2025-01-02", "to": "2025-01-04T00:00:00Z"})
    rows = from_csv(body)
    assert rows == stored(settings, "created_at >= ? AND created_at < ?", (JAN_1 + DAY, JAN_1 + 3 * DAY))
    assert len(rows) == 4
    # An offset is honoured: 01:00+01:00 is midnight UTC.
    _, body = await download(client, auth(), format="ndjson", **{"from": "2025-01-05T01:00:00+01:00"})
    assert [r["created_at"] for r in from_ndjson(body)] == ["2025-01-05T00:00:00.000Z"] * 2
    response, _ = await download(client, auth(), **{"from": "2025-01-02", "to": "2025-01-04"})
    assert (
        'filename="usage_all-accounts_20250102T000000Z_20250104T000000Z.csv"' in response.headers["Content-Disposition"]
    )


async def test_from_and_to_take_epoch_milliseconds_like_the_dashboard(client: TestClient, settings: Settings) -> None:
    acme = await provision(client)
    for day in range(4):
        insert_usage(settings, acme.account_id, JAN_1 + day * DAY, 2)

    _, body = await download(client, auth(), **{"from": str(JAN_1 + DAY), "to": str(JAN_1 + 3 * DAY)})

    assert from_csv(body) == stored(settings, "created_at >= ? AND created_at < ?", (JAN_1 + DAY, JAN_1 + 3 * DAY))
    assert len(from_csv(body)) == 4


async def test_owners_and_viewers_export_their_own_account_only(client: TestClient, settings: Settings) -> None:
    acme, globex = await two_tenants(client)
    for role in ("owner", "viewer"):
        _, body = await download(client, auth(role, acme.account_id), format="ndjson")
        assert from_ndjson(body) == stored(settings, "account_id = ?", (acme.account_id,))
        _, body = await download(client, auth(role, acme.account_id), account_id=acme.account_id)
        assert len(from_csv(body)) == 2
        # Another account's id looks like one that does not exist.
        answer = await client.get(EXPORT, params={"account_id": globex.account_id}, headers=auth(role, acme.account_id))
        assert (await expect(answer, 404))["error"]["code"] == "not_found"
    answer = await client.get(EXPORT, params={"account_id": "acc_doesnotexist"}, headers=auth())
    await expect(answer, 404)
    await expect(await client.get(EXPORT), 401)


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


async def test_bad_parameters_are_400(client: TestClient) -> None:
    for query in (
        {"format": "xml"},
        {"from": "yesterday"},
        {"from": "2025-02-01", "to": "2025-01-01"},
        {"from": "2025-01-01", "to": "2025-01-01"},
        {"limit": "10"},
        {"account_id": ""},
    ):
        answer = await client.get(EXPORT, params=query, headers=auth())
        assert (await expect(answer, 400))["error"]["code"] == "bad_request", query


async def test_instants_out_of_range_are_400_not_500(client: TestClient) -> None:
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


async def test_csv_quotes_awkward_text_and_defuses_formulas(client: TestClient, settings: Settings) -> None:
    acme = await provision(client)
    insert_usage(settings, acme.account_id, JAN_1, 1, error_code='bad, "quoted"\nline', outcome="upstream_error")
    insert_usage(settings, acme.account_id, JAN_1 + 1, 1, error_code='=HYPERLINK("http://x")', outcome="error")
    _, body = await download(client, auth(), account_id=acme.account_id)
    first, second = from_csv(body)
    assert first["error_code"] == 'bad, "quoted"\nline'
    assert second["error_code"] == '\'=HYPERLINK("http://x")'  # a spreadsheet shows it as text, never runs it
    _, body = await download(client, auth(), format="ndjson", account_id=acme.account_id)
    assert from_ndjson(body)[1]["error_code"] == '=HYPERLINK("http://x")'  # JSON carries the value as stored
