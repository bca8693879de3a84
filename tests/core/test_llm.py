"""The OpenAI client (core/llm.py): built on the SDK's async client, and safe against an upstream that misbehaves in
ways the SDK does not catch: a body trickled a byte at a time, answers whose content or usage cannot be trusted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import yarl
from aiohttp import web

from core.chat import ChatMessage
from core.errors import UpstreamUnavailable
from core.llm import LLMClient, LLMRequest, custom_headers, env_proxy
from tests.support.gateway_process import free_port

REQUEST = LLMRequest("gpt-4o-mini", [ChatMessage(role="user", content="hi")], 50)


@pytest.fixture
async def odd_upstream(aiohttp_server: Any) -> AsyncIterator[tuple[list[Any], str]]:
    """An OpenAI-compatible server that answers whatever the test queues: a body, or a trickle."""
    answers: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        answer = answers.pop(0)
        if answer == "trickle":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(40):
                await response.write(b" ")
                await asyncio.sleep(0.1)
            return response
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    server = await aiohttp_server(app)
    yield answers, str(server.make_url("/v1"))


def client_for(url: str, **kwargs: Any) -> LLMClient:
    options = {"attempt_timeout": 0.5, "max_attempts": 1, "total_budget": 1.0, **kwargs}
    return LLMClient.create(api_key="sk-test", base_url=url, **options)


async def test_a_trickling_upstream_is_cut_at_the_attempt_timeout(odd_upstream: tuple[list[Any], str]) -> None:
    """Was: the SDK timeout is per read, so a server sending a byte every 100 ms kept the call alive for 4 s."""
    answers, url = odd_upstream
    answers.append("trickle")
    llm = client_for(url)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamUnavailable) as failed:
        await llm.complete(REQUEST)
    assert failed.value.code == "timeout"
    assert asyncio.get_running_loop().time() - started < 2.0
    await llm.close()


def completion(**overrides: Any) -> dict[str, Any]:
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    "body",
    [
        completion(choices=[{"index": 0, "message": None}]),
        completion(usage=None),
        completion(usage="lots"),
        completion(usage={"prompt_tokens": -50000, "completion_tokens": 1}),
        completion(usage={"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 9}}),
        completion(usage={"prompt_tokens": 5.5, "completion_tokens": 1}),
        completion(choices=[]),
    ],
    ids=["null-message", "null-usage", "string-usage", "negative", "cached-over-prompt", "float", "no-choices"],
)
async def test_untrustworthy_bodies_are_upstream_failures_not_charges(
    odd_upstream: tuple[list[Any], str], body: dict[str, Any]
) -> None:
    """Was: a null message was a 500; a negative usage was charged, handing tokens back to the account."""
    answers, url = odd_upstream
    answers.append(body)
    llm = client_for(url)
    with pytest.raises(UpstreamUnavailable) as failed:
        await llm.complete(REQUEST)
    assert failed.value.code == "malformed_response"
    await llm.close()


def test_the_llm_client_uses_the_async_openai_sdk() -> None:
    assert isinstance(client_for("http://127.0.0.1:9/v1").sdk, openai.AsyncOpenAI)


async def test_a_chat_completion_carries_the_key_organization_and_project_the_sdk_would_send(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat path posts without the SDK: the headers a server reads are still the SDK's (its key as a bearer
    token, OPENAI_ORG_ID and OPENAI_PROJECT_ID from the environment), and the embeddings path sends the same."""
    seen: list[Any] = []  # each request's headers, looked up by name in any case

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.json_response(completion())

    async def embeddings(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        data = [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}]
        return web.json_response({"object": "list", "data": data, "model": "e", "usage": {"prompt_tokens": 1}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    server = await aiohttp_server(app)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-acme")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_bots")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Proxy-Team: bots\nX-Route: eu-1")
    llm = client_for(str(server.make_url("/v1")))
    assert (await llm.complete(REQUEST)).text == "ok"
    await llm.embed("e", ["hello"])
    await llm.close()
    for headers in seen:
        assert headers["Authorization"] == "Bearer sk-test"
        assert headers["OpenAI-Organization"] == "org-acme"
        assert headers["OpenAI-Project"] == "proj_bots"
        assert (headers["X-Proxy-Team"], headers["X-Route"]) == ("bots", "eu-1")
    assert seen[0]["Content-Type"] == "application/json"


def test_custom_headers_are_read_as_the_sdk_reads_them_but_never_replace_the_key() -> None:
    assert custom_headers("X-A: 1\nbroken line\n X-B :two words \nAuthorization: Bearer other\n") == {
        "X-A": "1",
        "X-B": "two words",
    }
    assert custom_headers(None) == {}


def test_a_process_that_only_chats_never_imports_the_sdk() -> None:
    """About 20 MB of resident memory a gateway answering chats alone does not need: the SDK is imported when an
    embedding, a transcription or the status probe first needs it."""
    script = f"""
import asyncio, sys
from core.chat import ChatMessage
from core.errors import UpstreamUnavailable
from core.llm import LLMClient, LLMRequest

async def main():
    llm = LLMClient.create(api_key="k", base_url="http://127.0.0.1:{free_port()}/v1",
                           attempt_timeout=0.5, max_attempts=1, total_budget=1.0)
    try:
        await llm.complete(LLMRequest("gpt-4o-mini", [ChatMessage(role="user", content="hi")], 50))
    except UpstreamUnavailable as exc:
        print(exc.code)
    print("openai" in sys.modules)
    llm.sdk
    print("openai" in sys.modules)
    await llm.close()

asyncio.run(main())
"""
    out = subprocess.run(  # noqa: S603 - this interpreter, with the script above
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split()[-3:] == ["connection_error", "False", "True"]  # after the attempt's log lines


@pytest.mark.parametrize(
    ("env", "proxy"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "http://proxy.corp:3128"),  # no scheme: http://, as httpx reads it
        ({"https_proxy": "http://bob:pw@p:8080"}, "http://bob:pw@p:8080"),
        ({"ALL_PROXY": "http://all:1"}, "http://all:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.openai.com"}, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".openai.com"}, None),
        ({"HTTP_PROXY": "http://plain:1"}, None),  # the https endpoint is not proxied by the http variable
    ],
)
def test_chat_completions_follow_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxy: str | None
) -> None:
    """Chat completions leave the SDK's transport: the proxy variables must still mean what they meant to it."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = env_proxy(yarl.URL("https://api.openai.com/v1/chat/completions"))
    assert (str(found) if found else None) == proxy
