"""What the relay does when OpenAI misbehaves: bounded retries, honest errors, and nothing charged."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI, Fault
from tests.conftest import MakeClient
from tests.support import database
from tests.support.harness import Tenant, expect, provision, relay


def assert_nothing_charged(settings: Settings, tenant: Tenant) -> None:
    row = database.quota_row(settings, tenant.account_id)
    assert row["used_tokens"] == 0
    assert row["reserved_tokens"] == 0
    assert database.rows(settings, "SELECT * FROM quota_reservations") == []
    assert database.rows(settings, "SELECT * FROM messages") == []  # a failed turn leaves no half conversation


async def test_rate_limit_is_retried_after_the_delay_openai_asks_for(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.script(Fault.rate_limit(retry_after=0.3))
    body = await expect(await relay(client, tenant, "hi"), 200)
    first, second = fake_openai.calls
    assert second.started_at - first.started_at >= 0.28  # retry-after-ms: 300
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == second.usage["total_tokens"]
    assert body["usage"]["total_tokens"] == second.usage["total_tokens"]


async def test_server_errors_then_success_is_charged_once(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.script(Fault.server_error(), Fault.overloaded())
    await expect(await relay(client, tenant, "hi"), 200)
    assert len(fake_openai.calls) == 3
    assert (
        database.quota_row(settings, tenant.account_id)["used_tokens"]
        == fake_openai.successful_usage_total()["total_tokens"]
    )
    [usage] = database.rows(settings, "SELECT outcome, attempts FROM usage_records")
    assert (usage["outcome"], usage["attempts"]) == ("ok", 3)


async def test_persistent_outage_gives_503_after_bounded_attempts_and_charges_nothing(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.script(*[Fault.server_error()] * 5)
    body = await expect(await relay(client, tenant, "hi"), 503)
    assert body["error"]["code"] == "upstream_unavailable"
    assert len(fake_openai.calls) == settings.llm_max_attempts == 3
    assert_nothing_charged(settings, tenant)
    [usage] = database.rows(settings, "SELECT outcome, error_code, total_tokens FROM usage_records")
    assert (usage["outcome"], usage["total_tokens"]) == ("upstream_error", 0)


async def test_insufficient_quota_is_never_retried(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.script(Fault.insufficient_quota())
    body = await expect(await relay(client, tenant, "hi"), 503)
    assert body["error"]["details"]["upstream_code"] == "insufficient_quota"
    assert len(fake_openai.calls) == 1
    assert_nothing_charged(settings, tenant)


async def test_bad_api_key_upstream_is_502_without_retry(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.api_key = "sk-the-real-one"
    body = await expect(await relay(client, tenant, "hi"), 502)
    assert body["error"]["code"] == "upstream_unavailable"
    assert len(fake_openai.calls) == 1
    assert_nothing_charged(settings, tenant)


async def test_hanging_upstream_is_cut_at_the_time_budget(
    make_client: MakeClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    # Attempts of a second: long enough for the request to reach the fake on a loaded machine (the whole suite on
    # two cores once let 0.3 s attempts run out before the fake heard anything), short enough for two in the budget.
    # Five attempts allowed: a budget that was not kept would show as more than three calls.
    client = await make_client(replace(settings, llm_attempt_timeout=1.0, llm_total_budget=2.5, llm_max_attempts=5))
    tenant = await provision(client)
    fake_openai.script(*[Fault.hang()] * 5)
    body = await expect(await relay(client, tenant, "hi"), 503)
    assert body["error"]["details"]["upstream_code"] == "timeout"
    assert 1 <= len(fake_openai.calls) <= 3
    assert_nothing_charged(settings, tenant)


async def test_malformed_body_and_dropped_connection_are_retried(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.script(Fault.malformed(), Fault.reset())
    await expect(await relay(client, tenant, "hi"), 200)
    assert len(fake_openai.calls) == 3
    assert (
        database.quota_row(settings, tenant.account_id)["used_tokens"]
        == fake_openai.successful_usage_total()["total_tokens"]
    )


async def test_reasoning_model_gets_max_completion_tokens_and_no_temperature(
    client: TestClient, fake_openai: FakeOpenAI
) -> None:
    tenant = await provision(client, bot={"model": "gpt-5-mini", "temperature": 0.7, "max_reply_tokens": 500})
    fake_openai.reasoning_tokens = 120
    body = await expect(await relay(client, tenant, "think hard"), 200)
    [call] = fake_openai.calls
    assert "temperature" not in call.params and "max_tokens" not in call.params
    assert call.params["max_completion_tokens"] == 500
    usage = call.usage
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 120
    # Reasoning tokens are billed as output: gpt-5-mini is 0.25 in / 2.00 out per million.
    expected = (Decimal(usage["prompt_tokens"]) * Decimal("0.25") + Decimal(usage["completion_tokens"]) * 2) / 10**6
    assert Decimal(body["cost_usd"]) == expected


async def test_classic_model_keeps_temperature_and_max_tokens(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client, bot={"temperature": 0.4, "max_reply_tokens": 120})
    await expect(await relay(client, tenant, "hi"), 200)
    [call] = fake_openai.calls
    assert call.params["temperature"] == 0.4
    assert call.params["max_tokens"] == 120


async def test_a_refused_temperature_is_dropped_and_remembered(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client, bot={"temperature": 0.4})
    fake_openai.script(Fault.bad_request("unsupported_value", param="temperature"))
    await expect(await relay(client, tenant, "hi"), 200)
    await expect(await relay(client, tenant, "again"), 200)
    refused, retried, later = fake_openai.calls
    assert refused.params["temperature"] == 0.4
    assert "temperature" not in retried.params and "temperature" not in later.params


async def test_context_overflow_retries_once_without_history(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, bot={"memory_tokens": 4000})
    for n in range(3):
        await expect(await relay(client, tenant, f"message number {n} " * 20), 200)
    fake_openai.context_windows["gpt-4o-mini"] = fake_openai.calls[-1].usage["prompt_tokens"] - 1
    body = await expect(await relay(client, tenant, "short one"), 200)
    overflow, bare = fake_openai.calls[-2:]
    assert overflow.usage is None and len(overflow.messages) > 2
    assert [m["role"] for m in bare.messages] == ["system", "user"]
    assert body["reply"] == "You said: short one"


async def test_empty_reply_from_a_reasoning_model_sends_the_fallback(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, bot={"fallback_message": "One moment, please ask again."})
    fake_openai.reply_with(lambda body: "")
    body = await expect(await relay(client, tenant, "hi"), 200)
    assert body["reply"] == "One moment, please ask again."
    # The provider billed the call, so it is charged and recorded as an empty reply.
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == fake_openai.calls[0].usage["total_tokens"]
    [usage] = database.rows(settings, "SELECT outcome FROM usage_records")
    assert usage["outcome"] == "empty_reply"


async def test_a_retry_after_beyond_the_budget_fails_at_once(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    fake_openai.script(Fault.rate_limit(retry_after=60))
    body = await expect(await relay(client, tenant, "hi"), 503)
    assert body["error"]["details"]["upstream_code"] == "rate_limit_exceeded"
    assert len(fake_openai.calls) == 1  # waiting 60 s would blow the 5 s budget: answer now instead
    assert_nothing_charged(settings, tenant)


async def test_a_model_without_a_price_is_served_and_its_cost_is_unknown(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, plan={"models": ["llama3.1:8b"], "default_model": "llama3.1:8b"})
    body = await expect(await relay(client, tenant, "hi"), 200)
    assert body["cost_usd"] == "0.000000" and body["cost_known"] is False
    assert body["usage"]["total_tokens"] == fake_openai.calls[0].usage["total_tokens"]
    [usage] = database.rows(settings, "SELECT cost_nanousd, price_version, total_tokens FROM usage_records")
    assert usage["cost_nanousd"] is None
    assert usage["price_version"] == "2026-12-06.2"
    assert usage["total_tokens"] == body["usage"]["total_tokens"]  # tokens still count against the quota
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == body["usage"]["total_tokens"]


async def test_cached_prompt_tokens_are_billed_at_the_cached_rate(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client, bot={"model": "gpt-4.1"})
    fake_openai.cached_tokens = 10
    body = await expect(await relay(client, tenant, "hi"), 200)
    usage = fake_openai.calls[0].usage
    assert body["usage"]["cached_tokens"] == 10
    # gpt-4.1: 2.00 in, 0.50 cached in, 8.00 out per million.
    expected = (
        (usage["prompt_tokens"] - 10) * Decimal("2.00") + 10 * Decimal("0.50") + usage["completion_tokens"] * 8
    ) / 10**6
    assert Decimal(body["cost_usd"]) == expected
    [row] = database.rows(settings, "SELECT cost_nanousd, cached_tokens FROM usage_records")
    assert Decimal(row["cost_nanousd"]) / 10**9 == expected
    assert row["cached_tokens"] == 10


async def test_an_endpoint_that_refuses_connections_is_reported_as_unreachable_not_slow(
    make_client: MakeClient, settings: Settings
) -> None:
    # Port 9 (discard) is closed here: the connection is refused at once. The SDK's aiohttp transport calls that a
    # connect timeout; the operator must read "could not connect", which points at the URL, not at the provider.
    client = await make_client(
        replace(settings, openai_base_url="http://127.0.0.1:9/v1", llm_attempt_timeout=2.0, llm_total_budget=3.0)
    )
    tenant = await provision(client)
    body = await expect(await relay(client, tenant, "hi"), 503)
    assert body["error"]["details"]["upstream_code"] == "connection_error"
    [usage] = database.rows(settings, "SELECT outcome, error_code FROM usage_records")
    assert (usage["outcome"], usage["error_code"]) == ("upstream_error", "connection_error")
    assert_nothing_charged(settings, tenant)


async def test_a_connection_dropped_mid_call_is_reported_as_a_connection_error(
    make_client: MakeClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    client = await make_client(replace(settings, llm_max_attempts=2))
    tenant = await provision(client)
    fake_openai.script(Fault.reset(), Fault.reset())
    body = await expect(await relay(client, tenant, "hi"), 503)
    assert body["error"]["details"]["upstream_code"] == "connection_error"  # not "timeout": nothing was slow
    assert len(fake_openai.calls) == 2
    assert_nothing_charged(settings, tenant)


async def test_a_reply_with_a_nul_or_a_lone_surrogate_is_delivered_not_a_500(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    """Was: JSON may spell "\\u0000" or "\\ud800" in the model's reply; neither database can store them, and the
    relay answered 500 after the model had been called and paid for."""
    tenant = await provision(client)
    fake_openai.reply_with(lambda body: "Open \ud800 today\x00")
    body = await expect(await relay(client, tenant, "hi"), 200)
    assert body["reply"] == "Open \ufffd today\ufffd"
    stored = database.rows(settings, "SELECT content FROM messages WHERE role = 'assistant'")
    assert [row["content"] for row in stored] == ["Open \ufffd today\ufffd"]
    assert database.quota_row(settings, tenant.account_id)["used_tokens"] == fake_openai.calls[0].usage["total_tokens"]
