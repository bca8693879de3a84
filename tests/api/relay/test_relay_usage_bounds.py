"""A provider's `usage` is charged only as far as the request could have cost (core/usage_bounds.py).

Regressions: 10**16 completion tokens were charged in full against an allowance of 10**12; 10**17 made the relay
answer 500 after the model had answered (the cost overflowed a 64-bit column); a provider ignoring `max_tokens`
pushed an account to 6,600 used tokens against a limit of 3,000.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from gateway.logging import configure_logging
from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import Tenant, auth, expect, provision, relay

Usage = dict[str, Any]


def reporting(fake: FakeOpenAI, *, reasoning_tokens: int | None = None, **figures: int) -> list[Usage]:
    """Make the fake report `figures` instead of its own count; returns the honest counts, one per call."""
    honest: list[Usage] = []

    def report(usage: Usage, body: dict[str, Any]) -> Usage:
        honest.append(usage)
        reported = {**usage, **figures}
        reported["total_tokens"] = reported["prompt_tokens"] + reported["completion_tokens"]
        if reasoning_tokens is not None:  # inside completion_tokens_details, as the API sends it
            details = {**usage["completion_tokens_details"], "reasoning_tokens": reasoning_tokens}
            reported["completion_tokens_details"] = details
        return reported

    fake.usage_with(report)
    return honest


def usage_row(settings: Settings) -> Any:
    [row] = database.rows(
        settings,
        "SELECT prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, cost_nanousd,"
        " outcome, reported_usage FROM usage_records",
    )
    return row


def assert_ledger_consistent(settings: Settings, tenant: Tenant) -> None:
    quota = database.quota_row(settings, tenant.account_id)
    [charged] = database.rows(
        settings,
        "SELECT COALESCE(SUM(total_tokens), 0) AS n FROM usage_records WHERE account_id = ?",
        (tenant.account_id,),
    )
    assert quota["used_tokens"] == charged["n"]
    assert quota["reserved_tokens"] == 0


async def test_an_absurd_completion_count_is_charged_as_the_reply_the_customer_got(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, plan={"monthly_token_limit": 10**12})
    honest = reporting(fake_openai, completion_tokens=10**16)
    body = await expect(await relay(client, tenant, "hello there"), 200)
    [counted] = honest
    assert body["reply"] == "You said: hello there"
    # Charged what the gateway sent and received (the fake's own count, which the provider should have sent).
    assert body["usage"] == {
        "prompt_tokens": counted["prompt_tokens"],
        "completion_tokens": counted["completion_tokens"],
        "cached_tokens": 0,
        "total_tokens": counted["total_tokens"],
    }
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == counted["total_tokens"]
    assert_ledger_consistent(settings, tenant)
    row = usage_row(settings)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (counted["prompt_tokens"], counted["completion_tokens"])
    assert row["outcome"] == "ok"
    assert json.loads(row["reported_usage"]) == {
        "prompt_tokens": counted["prompt_tokens"],
        "completion_tokens": 10**16,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    # gpt-4o-mini: 0.15 in / 0.60 out per million, on the charged tokens.
    expected = (counted["prompt_tokens"] * Decimal("0.15") + counted["completion_tokens"] * Decimal("0.60")) / 10**6
    assert Decimal(body["cost_usd"]) == expected
    assert Decimal(row["cost_nanousd"]) / 10**9 == expected


@pytest.mark.parametrize(
    "figures",
    [
        {"completion_tokens": 10**17},
        {"completion_tokens": 2**63},
        {"completion_tokens": 10**30, "reasoning_tokens": 10**29},
        {"prompt_tokens": 10**30},
        {"prompt_tokens": 2**64, "completion_tokens": 2**64},
    ],
    ids=["1e17-completion", "2^63-completion", "1e30-with-reasoning", "1e30-prompt", "2^64-both"],
)
async def test_counts_beyond_64_bits_never_make_a_500_after_the_model_answered(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings, figures: dict[str, int]
) -> None:
    tenant = await provision(client)
    reasoning = figures.pop("reasoning_tokens", None)
    honest = reporting(fake_openai, reasoning_tokens=reasoning, **figures)
    body = await expect(await relay(client, tenant, "hi"), 200)
    [counted] = honest
    assert body["reply"] == "You said: hi"
    assert body["usage"]["total_tokens"] == counted["total_tokens"]
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == counted["total_tokens"]
    assert_ledger_consistent(settings, tenant)
    row = usage_row(settings)
    assert row["total_tokens"] == counted["total_tokens"] and row["reasoning_tokens"] == 0
    reported = json.loads(row["reported_usage"])  # kept exactly, past what a BIGINT column holds
    assert {k: reported[k] for k in figures} == figures
    if reasoning is not None:
        assert reported["reasoning_tokens"] == reasoning


async def test_a_provider_that_ignores_max_tokens_cannot_push_an_account_past_its_limit(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, plan={"monthly_token_limit": 3000}, bot={"max_reply_tokens": 50})
    fake_openai.ignores_max_tokens = True
    long_answer = "We open at nine, close at six, and deliver on weekdays. " * 30  # about 400 tokens
    fake_openai.reply_with(lambda body: long_answer)
    statuses = []
    for n in range(20):
        response = await relay(client, tenant, f"question {n}")
        statuses.append(response.status)
        if response.status != 200:
            break
        body = await response.json()
        assert body["reply"] == long_answer.strip()  # the customer still gets what the model wrote
        assert body["usage"]["completion_tokens"] == 50  # but the account pays for no more than it asked for
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200} and len(statuses) > 2
    quota = database.quota_row(settings, tenant.account_id)
    assert quota["used_tokens"] <= 3000
    assert_ledger_consistent(settings, tenant)
    rows = database.rows(settings, "SELECT completion_tokens, reported_usage FROM usage_records WHERE outcome = 'ok'")
    assert {r["completion_tokens"] for r in rows} == {50}
    assert all(json.loads(r["reported_usage"])["completion_tokens"] > 400 for r in rows)


async def test_a_prompt_count_within_the_tolerance_is_charged_as_reported(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    """The provider's count is authoritative where the estimate can simply differ from it (framing, tokenizer)."""
    tenant = await provision(client)
    await expect(await relay(client, tenant, "hi"), 200)
    prompt = fake_openai.calls[0].usage["prompt_tokens"]  # the gateway's estimate of "hi" is the same count
    database.execute(settings, "DELETE FROM usage_records")
    database.execute(settings, "DELETE FROM messages")  # the next turn's prompt is the same as the first's
    database.execute(settings, "UPDATE quota_state SET used_tokens = 0")
    ceiling = prompt + prompt // 4 + 64
    reporting(fake_openai, prompt_tokens=ceiling)
    body = await expect(await relay(client, tenant, "hi"), 200)
    assert body["usage"]["prompt_tokens"] == ceiling
    row = usage_row(settings)
    assert row["prompt_tokens"] == ceiling and row["reported_usage"] is None
    # One token more is no longer a difference of counting: the gateway's own count is charged.
    database.execute(settings, "DELETE FROM usage_records")
    database.execute(settings, "DELETE FROM messages")
    database.execute(settings, "UPDATE quota_state SET used_tokens = 0")
    reporting(fake_openai, prompt_tokens=ceiling + 1)
    body = await expect(await relay(client, tenant, "hi"), 200)
    assert body["usage"]["prompt_tokens"] == prompt
    row = usage_row(settings)
    assert row["prompt_tokens"] == prompt and json.loads(row["reported_usage"])["prompt_tokens"] == ceiling + 1
    assert_ledger_consistent(settings, tenant)


async def test_figures_within_bounds_are_charged_as_reported_and_recorded_once(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, bot={"model": "gpt-5-mini", "max_reply_tokens": 500})
    fake_openai.reasoning_tokens, fake_openai.cached_tokens = 120, 5
    body = await expect(await relay(client, tenant, "think"), 200)
    usage = fake_openai.calls[0].usage
    assert body["usage"]["total_tokens"] == usage["total_tokens"]
    row = usage_row(settings)
    assert (row["reasoning_tokens"], row["cached_tokens"], row["reported_usage"]) == (120, 5, None)


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure_logging("INFO", "json")
    yield
    structlog.reset_defaults()


async def test_the_operator_is_told_what_the_provider_reported(
    client: TestClient,
    fake_openai: FakeOpenAI,
    settings: Settings,
    json_logs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = await provision(client)
    honest = reporting(fake_openai, completion_tokens=10**30)
    capsys.readouterr()
    await expect(await relay(client, tenant, "my card is 4111 1111 1111 1111"), 200)
    lines = capsys.readouterr().out.splitlines()
    [line] = [line for line in lines if "usage_out_of_bounds" in line]
    record = json.loads(line)
    [counted] = honest
    assert record["level"] == "warning" and record["alert"] is True
    assert record["reported_completion_tokens"] == 10**30
    assert record["reported_prompt_tokens"] == counted["prompt_tokens"]
    assert record["max_completion_tokens"] == 300  # the bot's max_reply_tokens, sent as max_tokens
    assert record["charged_completion_tokens"] == counted["completion_tokens"]
    assert record["upstream_request_id"] == fake_openai.calls[0].request_id
    assert record["account_id"] == tenant.account_id
    assert "4111" not in line  # context, never content


async def test_the_export_and_the_metrics_show_which_calls_were_charged_at_the_bound(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client)
    await expect(await relay(client, tenant, "an honest one"), 200)
    reporting(fake_openai, completion_tokens=10**30)
    await expect(await relay(client, tenant, "an absurd one"), 200)
    export = await client.get("/api/admin/logs/export", params={"format": "ndjson"}, headers=auth())
    records = [json.loads(line) for line in (await expect_text(export)).splitlines()]
    assert [r["reported_usage"] is None for r in records] == [True, False]
    assert json.loads(records[1]["reported_usage"])["completion_tokens"] == 10**30  # exactly as the provider said
    scraped = await (await client.get("/metrics")).text()
    assert 'nexus_llm_usage_bounded_total{model="gpt-4o-mini"} 1.0' in scraped


async def expect_text(response: Any) -> str:
    assert response.status == 200, await response.text()
    return str(await response.text())
