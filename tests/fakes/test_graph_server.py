"""The fake Graph server is faithful: our real GraphClient parses its answers and classifies its faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from adapters import graph_client
from adapters.graph_client import GraphClient, GraphResult
from adapters.graph_errors import GraphAction
from adapters.replies import GraphRequest, text_requests, typing_request
from sandbox.fakes.graph_server import FakeGraph, GraphFault, is_text_send

VERSION = "v25.0"
TOKEN = "EAAG-page-token"
PAGE, IG_ACCOUNT, PHONE_ID = "1001", "1784", "5550001"
PSID, IGSID, WA_ID = "24000001", "17840000009", "15551234567"


@pytest.fixture
def fake() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
async def base_url(fake: FakeGraph, aiohttp_server: Any) -> str:
    server = await aiohttp_server(fake.app)
    return str(server.make_url(""))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def graph(session: aiohttp.ClientSession, base_url: str) -> GraphClient:
    return GraphClient(session, base_url=base_url, version=VERSION)


def messenger_text(text: str = "hello", psid: str = PSID) -> GraphRequest:
    [request] = text_requests("messenger", PAGE, psid, text)
    return request


def whatsapp_text(text: str = "hola", wa_id: str = WA_ID) -> GraphRequest:
    [request] = text_requests("whatsapp", PHONE_ID, wa_id, text)
    return request


async def send_all(graph: GraphClient, requests: list[GraphRequest], token: str = TOKEN) -> list[GraphResult]:
    return [await graph.send(request, token) for request in requests]


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(300):  # up to 3 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


# ---- successful sends ---------------------------------------------------------------------------


async def test_messenger_text_and_typing(fake: FakeGraph, graph: GraphClient) -> None:
    typing = typing_request("messenger", PAGE, PSID, None)
    assert typing is not None
    first, second = await send_all(graph, [typing, messenger_text("hello")])
    assert first == GraphResult(True, None)
    assert second == GraphResult(True, "m_1")
    typing_call, text_call = fake.requests
    assert (typing_call.kind, typing_call.recipient, typing_call.response) == ("typing", PSID, {"recipient_id": PSID})
    assert text_call.kind == "text" and text_call.text == "hello" and text_call.recipient == PSID
    assert (text_call.version, text_call.object_id, text_call.token, text_call.status) == (VERSION, PAGE, TOKEN, 200)
    assert text_call.body["messaging_type"] == "RESPONSE"
    assert text_call.response == {"recipient_id": PSID, "message_id": "m_1"}
    assert text_call.fault is None and text_call.ended_at is not None and text_call.ended_at >= text_call.started_at


async def test_instagram_text_split_into_chunks(fake: FakeGraph, graph: GraphClient) -> None:
    fake.instagram_ids.add(IG_ACCOUNT)
    long_text = " ".join(["ünïcödé"] * 300)  # ~2400 UTF-8 bytes: over Instagram's 1000-byte limit
    requests = text_requests("instagram", IG_ACCOUNT, IGSID, long_text)
    assert len(requests) > 1
    results = await send_all(graph, requests)
    assert all(r.ok for r in results)
    assert [r.message_id for r in results] == [f"m_{i}" for i in range(1, len(requests) + 1)]
    assert fake.texts_to(IGSID) == [r.body["message"]["text"] for r in requests]
    assert all("messaging_type" not in call.body for call in fake.requests)


async def test_instagram_byte_limit_is_enforced(fake: FakeGraph, graph: GraphClient) -> None:
    fake.instagram_ids.add(IG_ACCOUNT)
    body = {"recipient": {"id": IGSID}, "message": {"text": "é" * 501}}  # 1002 bytes, 501 characters
    result = await graph.send(GraphRequest(f"{IG_ACCOUNT}/messages", body), TOKEN)
    assert result.failure is not None and result.failure.action is GraphAction.FAIL and result.failure.code == 100
    assert fake.sent_texts() == []


async def test_messenger_text_limit_is_enforced(graph: GraphClient) -> None:
    too_long = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "x" * 2000}}
    result = await graph.send(GraphRequest(f"{PAGE}/messages", too_long), TOKEN)
    assert result.failure is not None and result.failure.code == 100 and result.failure.action is GraphAction.FAIL
    assert (await graph.send(messenger_text("x" * 1999), TOKEN)).ok


async def test_whatsapp_text_with_context_and_typing(fake: FakeGraph, graph: GraphClient) -> None:
    typing = typing_request("whatsapp", PHONE_ID, WA_ID, "wamid.IN1")
    assert typing is not None
    [text] = text_requests("whatsapp", PHONE_ID, WA_ID, "hola", reply_to_message_id="wamid.IN1")
    typed, sent = await send_all(graph, [typing, text])
    assert typed == GraphResult(True, None)
    assert sent == GraphResult(True, "wamid.FAKE1")
    typing_call, text_call = fake.requests
    assert (typing_call.kind, typing_call.recipient, typing_call.response) == ("typing", None, {"success": True})
    assert text_call.recipient == "+" + WA_ID and text_call.body["context"] == {"message_id": "wamid.IN1"}
    assert text_call.response == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+" + WA_ID, "wa_id": WA_ID}],
        "messages": [{"id": "wamid.FAKE1"}],
    }


async def test_whatsapp_mark_read_without_typing(fake: FakeGraph, graph: GraphClient) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN2"}
    assert (await graph.send(GraphRequest(f"{PHONE_ID}/messages", body), TOKEN)).ok
    assert fake.requests[0].kind == "read"
    missing = {"messaging_product": "whatsapp", "status": "read"}
    result = await graph.send(GraphRequest(f"{PHONE_ID}/messages", missing), TOKEN)
    assert result.failure is not None and result.failure.code == 100
    assert "message_id" in result.failure.message


# ---- scripted faults, classified by our client --------------------------------------------------

FAULT_CASES = [
    ("messenger", GraphFault(190, 463), GraphAction.REAUTHORIZE, None),
    ("whatsapp", GraphFault(190), GraphAction.REAUTHORIZE, None),
    ("whatsapp", GraphFault(131047), GraphAction.WINDOW_CLOSED, None),
    ("messenger", GraphFault(10, 2018278), GraphAction.WINDOW_CLOSED, None),
    ("messenger", GraphFault(4, retry_after_minutes=2), GraphAction.RETRY, 120.0),
    ("messenger", GraphFault(4), GraphAction.RETRY, None),
    ("messenger", GraphFault(613, 2534040, retry_after_minutes=5), GraphAction.RETRY, 300.0),
    ("whatsapp", GraphFault(130429, retry_after_minutes=1), GraphAction.RETRY, 60.0),
    ("whatsapp", GraphFault(131056), GraphAction.RETRY, 6.0),
    ("messenger", GraphFault(551, 1545041), GraphAction.RECIPIENT_UNAVAILABLE, None),
    ("whatsapp", GraphFault(131026), GraphAction.RECIPIENT_UNAVAILABLE, None),
    ("messenger", GraphFault(100, 2018001), GraphAction.RECIPIENT_UNAVAILABLE, None),
    ("messenger", GraphFault(2, http_status=500, is_transient=True), GraphAction.RETRY, None),
    ("messenger", GraphFault(368), GraphAction.FAIL, None),
]


@pytest.mark.parametrize(("platform", "fault", "action", "retry_after"), FAULT_CASES)
async def test_fault_is_classified(
    fake: FakeGraph,
    graph: GraphClient,
    platform: str,
    fault: GraphFault,
    action: GraphAction,
    retry_after: float | None,
) -> None:
    fake.script(fault)
    request = whatsapp_text() if platform == "whatsapp" else messenger_text()
    result = await graph.send(request, TOKEN)
    assert not result.ok and result.failure is not None
    assert (result.failure.action, result.failure.code, result.failure.subcode) == (action, fault.code, fault.subcode)
    assert result.failure.retry_after == retry_after
    call = fake.requests[-1]
    assert call.fault == fault and call.status == fault.http_status and fake.sent_texts() == []
    assert call.response is not None
    error = call.response["error"]
    assert error["type"] == "OAuthException" and error["fbtrace_id"]
    assert ("error_data" in error) == (platform == "whatsapp")
    assert (await graph.send(request, TOKEN)).ok  # consumed: the next send goes through


async def test_whatsapp_error_body_and_throttle_headers(
    fake: FakeGraph, session: aiohttp.ClientSession, base_url: str
) -> None:
    fake.script(GraphFault(130429, retry_after_minutes=3, details="Cloud API message throughput has been reached."))
    request = whatsapp_text()
    url = f"{base_url}/{VERSION}/{request.path}"
    async with session.post(url, json=request.body, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 400
        body = await response.json()
        usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
        assert "X-App-Usage" in response.headers
    assert body["error"]["code"] == 130429 and "error_subcode" not in body["error"]
    assert body["error"]["message"] == "(#130429) Rate limit hit"
    assert body["error"]["error_data"] == {
        "messaging_product": "whatsapp",
        "details": "Cloud API message throughput has been reached.",
    }
    assert usage[PHONE_ID][0]["estimated_time_to_regain_access"] == 3


async def test_whatsapp_details_reach_the_failure_message(fake: FakeGraph, graph: GraphClient) -> None:
    fake.script(GraphFault(131047, message="Re-engagement message", details="More than 24 hours have passed."))
    result = await graph.send(whatsapp_text(), TOKEN)
    assert result.failure is not None
    assert result.failure.message == "Re-engagement message: More than 24 hours have passed."


async def test_reset_is_retried(fake: FakeGraph, graph: GraphClient) -> None:
    fake.script(GraphFault.reset())
    result = await graph.send(messenger_text(), TOKEN)
    assert result.failure is not None and result.failure.action is GraphAction.RETRY
    assert result.failure.code is None and result.failure.message.startswith("graph transport error")
    await wait_for(lambda: fake.in_flight == 0)
    assert fake.requests[0].status is None and fake.requests[0].response is None
    assert (await graph.send(messenger_text(), TOKEN)).ok
    assert fake.texts_to(PSID) == ["hello"]


async def test_hang_ends_when_the_client_gives_up(
    fake: FakeGraph, graph: GraphClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_client, "SEND_TIMEOUT_SECONDS", 0.3)
    fake.script(GraphFault.hang())
    result = await graph.send(messenger_text(), TOKEN)
    assert result.failure is not None and result.failure.action is GraphAction.RETRY
    await wait_for(lambda: fake.in_flight == 0)
    assert fake.requests[0].status is None and fake.requests[0].ended_at is not None


async def test_hang_does_not_block_shutdown(fake: FakeGraph, session: aiohttp.ClientSession) -> None:
    fake.script(GraphFault.hang())
    async with fake.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.count("/") == 2
        graph = GraphClient(session, base_url=base_url, version=VERSION)
        pending = asyncio.create_task(graph.send(messenger_text(), TOKEN))
        await wait_for(lambda: fake.in_flight == 1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 2.0
    result = await pending
    assert result.failure is not None and result.failure.action is GraphAction.RETRY
    assert fake.in_flight == 0


async def test_serve_answers_real_sends(fake: FakeGraph, session: aiohttp.ClientSession) -> None:
    async with fake.serve() as base_url:
        graph = GraphClient(session, base_url=base_url, version=VERSION)
        assert await graph.send(whatsapp_text("hi"), TOKEN) == GraphResult(True, "wamid.FAKE1")
    assert fake.sent_texts() == [("+" + WA_ID, "hi")]


async def test_text_only_faults_skip_typing(fake: FakeGraph, graph: GraphClient) -> None:
    fake.fail_text_sends_with(GraphFault(131047))
    typing = typing_request("whatsapp", PHONE_ID, WA_ID, "wamid.IN1")
    assert typing is not None
    typed, failed, sent = await send_all(graph, [typing, whatsapp_text("one"), whatsapp_text("two")])
    assert typed.ok and sent.ok
    assert failed.failure is not None and failed.failure.action is GraphAction.WINDOW_CLOSED
    assert fake.texts_to(WA_ID) == ["two"]


async def test_script_is_fifo_and_match_picks_the_first_applicable(fake: FakeGraph, graph: GraphClient) -> None:
    fake.script(GraphFault(4, match=is_text_send), GraphFault(551), GraphFault(190))
    typing = typing_request("messenger", PAGE, PSID, None)
    assert typing is not None
    results = await send_all(graph, [typing, messenger_text("a"), messenger_text("b"), messenger_text("c")])
    assert [r.failure.code if r.failure else None for r in results] == [551, 4, 190, None]
    assert fake.texts_to(PSID) == ["c"]


async def test_slow_fault_and_fault_latency(fake: FakeGraph, graph: GraphClient) -> None:
    fake.script(GraphFault.slow(0.2), GraphFault(4, latency=0.2))
    slow, throttled = await send_all(graph, [messenger_text("late"), messenger_text("never")])
    assert slow.ok and throttled.failure is not None and throttled.failure.code == 4
    assert all(call.ended_at is not None and call.ended_at - call.started_at >= 0.2 for call in fake.requests)
    assert fake.texts_to(PSID) == ["late"]


# ---- validation ---------------------------------------------------------------------------------


async def test_missing_token_is_rejected_with_190(fake: FakeGraph, graph: GraphClient) -> None:
    result = await graph.send(messenger_text(), "")
    assert result.failure is not None and result.failure.action is GraphAction.REAUTHORIZE
    assert (result.failure.code, result.failure.subcode) == (190, None)
    assert result.failure.message.startswith("An active access token must be used")
    assert fake.requests[0].status == 400 and fake.requests[0].token is None


async def test_unknown_token_is_expired(fake: FakeGraph, graph: GraphClient) -> None:
    fake.valid_tokens = {"good"}
    fake.script(GraphFault(551))
    rejected = await graph.send(messenger_text(), "stale")
    assert rejected.failure is not None and rejected.failure.action is GraphAction.REAUTHORIZE
    assert (rejected.failure.code, rejected.failure.subcode) == (190, 463)
    assert "expired" in rejected.failure.message
    assert fake.requests[0].fault is None  # auth failures do not consume scripted faults
    failed = await graph.send(messenger_text(), "good")
    assert failed.failure is not None and failed.failure.code == 551
    assert (await graph.send(messenger_text(), "good")).ok
    assert [call.token for call in fake.requests] == ["stale", "good", "good"]


async def test_malformed_json_is_code_100(fake: FakeGraph, session: aiohttp.ClientSession, base_url: str) -> None:
    url = f"{base_url}/{VERSION}/{PAGE}/messages"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with session.post(url, data=b'{"recipient": ', headers=headers) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["code"] == 100 and body["error"]["type"] == "OAuthException"
    assert fake.requests[0].body == {} and fake.requests[0].kind == "other"


async def test_access_token_query_parameter_and_unknown_path(session: aiohttp.ClientSession, base_url: str) -> None:
    body = messenger_text().body
    async with session.post(f"{base_url}/{VERSION}/{PAGE}/messages?access_token={TOKEN}", json=body) as response:
        assert response.status == 200
    async with session.post(f"{base_url}/{VERSION}/{VERSION}/{PAGE}/messages", json=body) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == 2500


async def test_missing_recipient_is_code_100(graph: GraphClient) -> None:
    result = await graph.send(GraphRequest(f"{PAGE}/messages", {"message": {"text": "hi"}}), TOKEN)
    assert result.failure is not None and result.failure.code == 100 and result.failure.action is GraphAction.FAIL


# ---- recording ----------------------------------------------------------------------------------


async def test_recording_helpers(fake: FakeGraph, graph: GraphClient) -> None:
    other = "24000002"
    fake.fail_text_sends_with(GraphFault(551))
    await send_all(
        graph,
        [
            messenger_text("lost", other),
            messenger_text("one"),
            whatsapp_text("uno"),
            messenger_text("two"),
            messenger_text("hey", other),
        ],
    )
    assert fake.texts_to(PSID) == ["one", "two"]
    assert fake.texts_to(other) == ["hey"]
    assert fake.texts_to(WA_ID) == fake.texts_to("+" + WA_ID) == ["uno"]
    assert fake.sent_texts() == [(PSID, "one"), ("+" + WA_ID, "uno"), (PSID, "two"), (other, "hey")]
    fake.reset_records()
    assert fake.requests == [] and fake.sent_texts() == []


async def test_in_flight_and_latency(fake: FakeGraph, graph: GraphClient) -> None:
    fake.latency = 0.2
    started = time.monotonic()
    results = await asyncio.gather(*(graph.send(messenger_text(str(n)), TOKEN) for n in range(4)))
    assert all(r.ok for r in results)
    assert time.monotonic() - started < 0.6  # concurrent, not serialised
    assert fake.max_in_flight == 4 and fake.in_flight == 0
    assert all(call.ended_at is not None and call.ended_at - call.started_at >= 0.2 for call in fake.requests)
    assert sorted(text for _, text in fake.sent_texts()) == ["0", "1", "2", "3"]
