"""The fake OpenAI server is faithful: the real `openai` SDK parses its answers and maps its faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from sandbox.fakes.openai_faults import Fault, FaultKind
from sandbox.fakes.openai_server import FakeOpenAI

HI = [{"role": "user", "content": "hi there"}]


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI(seed=7)


@pytest.fixture
async def base_url(fake: FakeOpenAI, aiohttp_server) -> str:
    server = await aiohttp_server(fake.app)
    return str(server.make_url("/v1"))


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
    yield sdk
    await sdk.close()


async def _ask(client: AsyncOpenAI, model: str = "gpt-4o-mini", **kwargs):
    return await client.chat.completions.create(model=model, messages=HI, **kwargs)


# ---- happy path ---------------------------------------------------------------------------------


async def test_completion_parses_with_usage_details(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    completion = raw.parse()
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == "You said: hi there"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens == 3 + 3 + 1 + 2  # priming + framing + "user" + "hi there"
    assert usage.completion_tokens == 5  # You / said / : / hi / there
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert re.fullmatch(r"req_[0-9a-f]{32}", raw.headers["x-request-id"])
    assert completion._request_id == raw.headers["x-request-id"]
    for name in ("limit", "remaining", "reset"):
        for kind in ("requests", "tokens"):
            assert raw.headers[f"x-ratelimit-{name}-{kind}"]
    assert int(raw.headers["openai-processing-ms"]) >= 0

    [call] = fake.calls
    assert (call.model, call.status, call.fault, call.stream) == ("gpt-4o-mini", 200, None, False)
    assert call.messages == HI and call.params["model"] == "gpt-4o-mini"
    assert call.headers == {"x-stainless-retry-count": "0"}
    assert call.usage == usage.model_dump(exclude_none=True)
    assert call.request_id == raw.headers["x-request-id"]
    assert call.ended_at is not None and call.ended_at >= call.started_at
    assert fake.successful_usage_total() == {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


async def test_streaming_with_include_usage_ends_with_usage_chunk(client: AsyncOpenAI) -> None:
    stream = await _ask(client, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hi there"
    assert [c.choices[0].finish_reason for c in chunks[-2:-1]] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 5 and last.usage.completion_tokens_details is not None
    assert all(c.usage is None and "usage" in c.model_fields_set for c in chunks[:-1])
    assert {c.model for c in chunks} == {"gpt-4o-mini-2024-07-18"}


async def test_streaming_without_include_usage_has_no_usage_field(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    stream = await _ask(client, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)
    assert not any("usage" in c.model_fields_set for c in chunks)
    assert fake.calls[0].usage is not None  # still billed server-side


async def test_max_completion_tokens_truncates_with_length(client: AsyncOpenAI) -> None:
    completion = await _ask(client, max_completion_tokens=2)
    assert completion.choices[0].message.content == "You said"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


async def test_a_provider_that_ignores_max_tokens_answers_and_bills_in_full(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.ignores_max_tokens = True
    completion = await _ask(client, max_completion_tokens=2)
    assert completion.choices[0].message.content == "You said: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


async def test_scripted_usage_is_sent_as_given_and_recorded(fake: FakeOpenAI, base_url: str) -> None:
    fake.usage_with(lambda usage, body: {**usage, "completion_tokens": 10**30, "prompt_tokens": -1})
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": HI},
            headers={"Authorization": "Bearer sk-test"},
        ) as response,
    ):
        body = json.loads(await response.text())  # a number past 64 bits, exactly as the wire carries it
    assert body["choices"][0]["message"]["content"] == "You said: hi there"
    assert (body["usage"]["completion_tokens"], body["usage"]["prompt_tokens"]) == (10**30, -1)
    assert fake.calls[0].usage == body["usage"]


async def test_reasoning_and_cached_tokens(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.reasoning_tokens, fake.cached_tokens = 64, 10_000
    completion = await _ask(client, model="gpt-5-mini", max_completion_tokens=100)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details and usage.prompt_tokens_details
    assert usage.completion_tokens == 5 + 64 and usage.completion_tokens_details.reasoning_tokens == 64
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens  # capped
    assert completion.model == "gpt-5-mini"
    # all budget eaten by reasoning: empty text, still billed
    empty = await _ask(client, model="o4-mini", max_completion_tokens=64)
    assert empty.choices[0].message.content == "" and empty.choices[0].finish_reason == "length"
    assert empty.usage is not None and empty.usage.completion_tokens == 64
    # non-reasoning models never report reasoning tokens
    plain = await _ask(client, model="gpt-4o")
    assert plain.model == "gpt-4o-2024-08-06"
    assert plain.usage and plain.usage.completion_tokens_details
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0


async def test_injected_counters_and_scripted_reply(aiohttp_server) -> None:
    fake = FakeOpenAI(count_text_tokens=lambda model, text: len(text), count_prompt_tokens=lambda m, msgs: 42)
    fake.reply_with(lambda body: body["messages"][0]["content"].upper())
    server = await aiohttp_server(fake.app)
    sdk = AsyncOpenAI(api_key="sk-test", base_url=str(server.make_url("/v1")), max_retries=0)
    try:
        completion = await _ask(sdk, max_completion_tokens=4)
    finally:
        await sdk.close()
    assert completion.choices[0].message.content == "HI T"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (42, 4)


async def test_models_endpoint(client: AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "gpt-4o-mini-2024-07-18" in ids


async def test_raw_sse_wire_format(base_url: str) -> None:
    auth = {"Authorization": "Bearer sk-test"}

    async def events(**extra) -> list[str]:
        body = {"model": "gpt-4o-mini", "messages": HI, "stream": True, **extra}
        url = f"{base_url}/chat/completions"
        async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=auth) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            text = await resp.text()
        assert text.endswith("data: [DONE]\n\n")
        return [block.removeprefix("data: ") for block in text.strip().split("\n\n")]

    with_usage = await events(stream_options={"include_usage": True})
    *chunks, usage_chunk, done = [json.loads(e) for e in with_usage[:-1]] + [with_usage[-1]]
    assert done == "[DONE]"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 9 + 5
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    without = [json.loads(e) for e in (await events())[:-1]]
    assert all("usage" not in c and c["choices"] for c in without)


# ---- validation -----------------------------------------------------------------------------------


async def test_wrong_api_key_is_401(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.api_key = "sk-other"
    with pytest.raises(openai.AuthenticationError) as info:
        await _ask(client)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert fake.calls[0].status == 401 and fake.calls[0].usage is None


async def test_missing_key_and_missing_fields(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{base_url}/chat/completions"
        async with http.post(url, json={"model": "gpt-4o-mini", "messages": HI}) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert set(body["error"]) == {"message", "type", "param", "code"}
            assert body["error"]["code"] == "invalid_api_key"
        auth = {"Authorization": "Bearer sk-test"}
        async with http.post(url, json={"messages": HI}, headers=auth) as resp:
            assert resp.status == 400
        async with http.post(url, json={"model": "gpt-4o-mini"}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "messages"


async def test_reasoning_model_rejects_temperature(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await _ask(client, model="gpt-5-mini", temperature=0.7)
    assert (info.value.code, info.value.param, info.value.type) == (
        "unsupported_value",
        "temperature",
        "invalid_request_error",
    )
    assert info.value.body == {
        "message": "'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "unsupported_value",
    }
    assert (await _ask(client, model="gpt-5-mini", temperature=1)).choices


async def test_reasoning_model_rejects_max_tokens(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await _ask(client, model="o3", max_tokens=10)
    assert (info.value.code, info.value.param) == ("unsupported_parameter", "max_tokens")
    assert "Use 'max_completion_tokens' instead." in info.value.message
    assert (await _ask(client, model="gpt-4o-mini", max_tokens=10)).choices


async def test_context_window(aiohttp_server) -> None:
    fake = FakeOpenAI(context_windows={"gpt-4o-mini": 8})
    server = await aiohttp_server(fake.app)
    sdk = AsyncOpenAI(api_key="sk-test", base_url=str(server.make_url("/v1")), max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError) as info:
            await _ask(sdk)
        assert info.value.code == "context_length_exceeded"
        assert "maximum context length is 8 tokens" in info.value.message
    finally:
        await sdk.close()


# ---- faults ---------------------------------------------------------------------------------------


async def test_rate_limit(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Fault.rate_limit(retry_after=1.5))
    with pytest.raises(openai.RateLimitError) as info:
        await _ask(client)
    err = info.value
    assert (err.status_code, err.code, err.type) == (429, "rate_limit_exceeded", "tokens")
    assert err.response.headers["retry-after"] == "2"  # whole seconds, rounded up
    assert err.response.headers["retry-after-ms"] == "1500"
    assert err.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "Please try again in 1.5s" in err.message
    assert fake.calls[0].fault == Fault.rate_limit(retry_after=1.5) and fake.calls[0].usage is None


async def test_insufficient_quota(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.insufficient_quota())
    with pytest.raises(openai.RateLimitError) as info:
        await _ask(client)
    assert (info.value.code, info.value.type) == ("insufficient_quota", "insufficient_quota")


@pytest.mark.parametrize(
    ("fault", "status", "type_"),
    [
        (Fault.server_error(), 500, "server_error"),
        (Fault.overloaded(), 503, "service_unavailable_error"),
    ],
)
async def test_server_errors(client: AsyncOpenAI, fake: FakeOpenAI, fault: Fault, status: int, type_: str) -> None:
    fake.script(fault)
    with pytest.raises(openai.InternalServerError) as info:
        await _ask(client)
    assert (info.value.status_code, info.value.type) == (status, type_)


async def test_injected_bad_request(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.bad_request(code="context_length_exceeded"))
    with pytest.raises(openai.BadRequestError) as info:
        await _ask(client)
    assert (info.value.code, info.value.param) == ("context_length_exceeded", "messages")


async def test_reset_is_connection_error(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.reset())
    with pytest.raises(openai.APIConnectionError) as info:
        await _ask(client)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert fake.calls[0].status is None
    assert (await _ask(client)).choices  # the next call works normally


async def test_hang_times_out_on_client(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.hang())
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await _ask(client, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    assert (await _ask(client)).choices


async def test_slow(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.slow(0.3), Fault.slow(5))
    started = time.monotonic()
    assert (await _ask(client)).choices
    assert time.monotonic() - started >= 0.3
    with pytest.raises(openai.APITimeoutError):
        await _ask(client, timeout=0.3)


async def test_malformed_body(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    # openai 3.57 does `json.loads` on the body and lets the JSONDecodeError escape unwrapped.
    fake.script(Fault.malformed())
    with pytest.raises(json.JSONDecodeError):
        await _ask(client)
    assert fake.calls[0].status == 200 and fake.calls[0].usage is None
    assert fake.successful_usage_total()["total_tokens"] == 0


async def test_malformed_stream_event(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.malformed())
    stream = await _ask(client, stream=True, stream_options={"include_usage": True})
    with pytest.raises(json.JSONDecodeError):  # raised from the SDK's SSE decoder, unwrapped
        async for _ in stream:
            pass


async def test_stream_faults_on_non_streaming_requests(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.stream_cut(), Fault.stream_error())
    with pytest.raises(json.JSONDecodeError):  # a non-streaming "cut" is a truncated body
        await _ask(client)
    with pytest.raises(openai.InternalServerError):  # a non-streaming "error event" is a plain 500
        await _ask(client)


async def test_stream_cut_has_no_usage_chunk(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.stream_cut(after_chunks=2))
    stream = await _ask(client, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: "
    assert all(c.usage is None for c in chunks)
    assert fake.calls[0].usage is None


async def test_stream_cut_abort_is_connection_error(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.stream_cut(after_chunks=1, abort=True))
    stream = await _ask(client, stream=True, stream_options={"include_usage": True})
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            seen.append(chunk)
    assert seen  # some content arrived before the cut


async def test_stream_error_event(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.stream_error(after_chunks=1))
    stream = await _ask(client, stream=True, stream_options={"include_usage": True})
    seen = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            seen.append(chunk)
    assert type(info.value) is openai.APIError
    assert info.value.type == "server_error" and len(seen) == 2


async def test_script_is_fifo(client: AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.server_error(), Fault.rate_limit(retry_after=0.1), Fault.insufficient_quota())
    raised = []
    for _ in range(4):
        try:
            await _ask(client)
            raised.append(None)
        except openai.APIStatusError as exc:
            raised.append((type(exc).__name__, exc.code))
    assert raised == [
        ("InternalServerError", None),
        ("RateLimitError", "rate_limit_exceeded"),
        ("RateLimitError", "insufficient_quota"),
        None,
    ]
    assert [c.fault.kind if c.fault else None for c in fake.calls] == [
        FaultKind.SERVER_ERROR,
        FaultKind.RATE_LIMIT,
        FaultKind.INSUFFICIENT_QUOTA,
        None,
    ]


async def _fault_sequence(aiohttp_server, seed: int) -> list[FaultKind | None]:
    fake = FakeOpenAI(seed=seed)
    fake.failure_rate = 0.3
    fake.random_faults = [Fault.server_error(), Fault.rate_limit(retry_after=0.1), Fault.overloaded()]
    server = await aiohttp_server(fake.app)
    sdk = AsyncOpenAI(api_key="sk-test", base_url=str(server.make_url("/v1")), max_retries=0)
    try:
        for _ in range(30):
            with contextlib.suppress(openai.APIStatusError):
                await _ask(sdk)
    finally:
        await sdk.close()
    assert len(fake.calls) == 30
    return [c.fault.kind if c.fault else None for c in fake.calls]


async def test_failure_rate_is_reproducible(aiohttp_server) -> None:
    first = await _fault_sequence(aiohttp_server, seed=3)
    assert first == await _fault_sequence(aiohttp_server, seed=3)
    assert 3 <= sum(kind is not None for kind in first) <= 20
    assert first != await _fault_sequence(aiohttp_server, seed=4)


async def test_retry_count_header_recorded(base_url: str, fake: FakeOpenAI) -> None:
    fake.script(Fault.server_error(), Fault.rate_limit(retry_after=0.01))
    sdk = AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=2)
    try:
        assert (await _ask(sdk)).choices
    finally:
        await sdk.close()
    assert [c.headers.get("x-stainless-retry-count") for c in fake.calls] == ["0", "1", "2"]
    assert [c.status for c in fake.calls] == [500, 429, 200]


# ---- recording under concurrency -------------------------------------------------------------------


async def test_concurrent_calls_are_recorded(aiohttp_server) -> None:
    fake = FakeOpenAI(latency=0.05)
    server = await aiohttp_server(fake.app)
    sdk = AsyncOpenAI(api_key="sk-test", base_url=str(server.make_url("/v1")), max_retries=0)
    try:
        results = await asyncio.gather(
            *(
                sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(20)
            )
        )
    finally:
        await sdk.close()
    assert fake.max_in_flight == 20 and fake.in_flight == 0
    assert len(fake.calls) == 20
    assert sorted(c.messages[0]["content"] for c in fake.calls) == sorted(f"n{i}" for i in range(20))
    assert all(c.ended_at is not None and c.ended_at - c.started_at >= 0.05 for c in fake.calls)
    total = fake.successful_usage_total()
    assert total["total_tokens"] == sum(r.usage.total_tokens for r in results if r.usage)
    assert total["prompt_tokens"] + total["completion_tokens"] == total["total_tokens"]
    fake.reset_records()
    assert fake.calls == [] and fake.max_in_flight == 0


# ---- standalone serving ---------------------------------------------------------------------------


async def test_serve_on_random_port_and_shutdown_with_hanging_request() -> None:
    fake = FakeOpenAI()
    fake.script(Fault.hang())
    sdk = AsyncOpenAI(api_key="sk-test", base_url="http://unused.invalid/v1", max_retries=0)
    try:
        async with fake.serve() as base_url:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url) and not base_url.endswith(":0/v1")
            sdk.base_url = base_url
            hanging = asyncio.create_task(_ask(sdk))  # no client timeout: only shutdown ends it
            while not fake.calls:  # noqa: ASYNC110 - wait until the hang has consumed the script
                await asyncio.sleep(0.01)
            assert (await _ask(sdk)).choices[0].message.content == "You said: hi there"
            shutdown_started = time.monotonic()
        assert time.monotonic() - shutdown_started < 2  # the hanging handler did not block shutdown
        with pytest.raises(openai.APIConnectionError):
            await hanging
    finally:
        await sdk.close()
    assert fake.in_flight == 0
    assert [c.status for c in fake.calls] == [None, 200]
