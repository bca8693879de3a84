"""Graph error classification: every code of the reference table, keyed on the code, never on the HTTP status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import CIMultiDict

from adapters.graph_errors import GraphAction, GraphFailure, classify

RETRY, REAUTH, WINDOW = GraphAction.RETRY, GraphAction.REAUTHORIZE, GraphAction.WINDOW_CLOSED
UNAVAILABLE, OWNED, FAIL = GraphAction.RECIPIENT_UNAVAILABLE, GraphAction.THREAD_OWNED_ELSEWHERE, GraphAction.FAIL

# (code, subcode, action): meta-platforms.md §8, one row per code or code/subcode pair it names.
TABLE = [
    (1, None, RETRY),
    (2, None, RETRY),
    (4, None, RETRY),
    (17, None, RETRY),
    (32, None, RETRY),
    (613, None, RETRY),
    (613, 2534040, RETRY),
    (613, 2018338, RETRY),
    (80006, None, RETRY),
    (80007, None, RETRY),
    (130429, None, RETRY),
    (131056, None, RETRY),
    (131000, None, RETRY),
    (135000, None, RETRY),
    (190, None, REAUTH),
    (190, 458, REAUTH),
    (190, 460, REAUTH),
    (190, 463, REAUTH),
    (190, 467, REAUTH),
    (190, 492, REAUTH),
    (10, 2018278, WINDOW),
    (10, 2534022, WINDOW),
    (10, 2018065, WINDOW),
    (131047, None, WINDOW),
    (551, None, UNAVAILABLE),
    (551, 1545041, UNAVAILABLE),
    (200, 1545041, UNAVAILABLE),
    (131026, None, UNAVAILABLE),
    (100, 2018001, UNAVAILABLE),
    (100, 2534014, UNAVAILABLE),
    (2018300, None, OWNED),
    (10, 2018300, OWNED),
    (100, None, FAIL),
    (100, 33, FAIL),
    (131009, None, FAIL),
    (131008, None, FAIL),
    (368, None, FAIL),
    (131031, None, FAIL),
    (131048, None, FAIL),
    (131064, None, FAIL),
    (131049, None, FAIL),
    (131051, None, FAIL),
    (131052, None, FAIL),
    (131053, None, FAIL),
    (132000, None, FAIL),
    (132001, None, FAIL),
    (132015, None, FAIL),
    (10, None, FAIL),
    (200, None, FAIL),
    (230, None, FAIL),
    (299, None, FAIL),
    (2, 2018344, FAIL),
]


def graph_error(code: Any, subcode: Any = None, message: str = "An error", **extra: Any) -> dict[str, Any]:
    """A body shaped like Graph's, fbtrace_id and all."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error | extra}


@pytest.mark.parametrize(("code", "subcode", "action"), TABLE, ids=[f"{c}/{s}" for c, s, _ in TABLE])
@pytest.mark.parametrize("status", [400, 403, 429, 500])
def test_every_reference_code_is_classified_by_code_whatever_the_status(
    code: int, subcode: int | None, action: GraphAction, status: int
) -> None:
    failure = classify(status, graph_error(code, subcode))
    assert failure.action is action
    assert (failure.code, failure.subcode) == (code, subcode)


def test_real_shaped_bodies() -> None:
    expired = {
        "error": {
            "message": "Error validating access token: Session has expired on Tuesday, 02-Jun-26 10:00:00 PDT.",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 463,
            "fbtrace_id": "A8vJ3ZkQ2Lm",
        }
    }
    assert classify(400, expired) == GraphFailure(REAUTH, 190, 463, expired["error"]["message"], None)

    outside = graph_error(10, 2018278, "(#10) This message is sent outside of allowed window.")
    assert classify(400, outside).action is WINDOW

    whatsapp = graph_error(
        131047,
        message="Re-engagement message",
        error_data={"messaging_product": "whatsapp", "details": "More than 24 hours have passed since the reply."},
    )
    failure = classify(400, whatsapp)
    assert failure.action is WINDOW
    assert failure.message == "Re-engagement message: More than 24 hours have passed since the reply."


def test_whatsapp_throttling_arrives_as_400_and_is_still_retried() -> None:
    body = graph_error(130429, message="(#130429) Rate limit hit", error_data={"details": "Cloud API throughput"})
    assert classify(400, body).action is RETRY


def test_whatsapp_webhook_error_element_is_understood() -> None:
    element = {
        "code": 131026,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "Message Undeliverable."},
    }
    failure = classify(200, element)
    assert (failure.action, failure.code) == (UNAVAILABLE, 131026)


def test_json_text_and_bytes_bodies_are_parsed() -> None:
    body = graph_error(190, 460)
    assert classify(401, json.dumps(body)).action is REAUTH
    assert classify(401, json.dumps(body).encode()).action is REAUTH


def test_codes_as_strings_are_read() -> None:
    assert classify(400, graph_error("190", "463")) == GraphFailure(REAUTH, 190, 463, "An error", None)


@pytest.mark.parametrize(
    ("status", "action"), [(500, RETRY), (502, RETRY), (503, RETRY), (429, RETRY), (400, FAIL), (404, FAIL)]
)
@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        b"\xff\xfe\x00garbage",
        "null",
        "[]",
        [1, 2, 3],
        42,
        3.5,
        {},
        {"error": None},
        {"error": "Something went wrong"},
        {"error": {"message": "no code here"}},
        {"error": {"code": None}},
        {"error": {"code": True}},
        {"error": {"code": [190]}},
        {"error": {"code": "abc", "error_subcode": {"x": 1}}},
        {"error": {"code": "9" * 5000}},
        {"error": {"code": "²"}},
        "[" * 100_000,
        '{"error": {"code": 1',
        object(),
    ],
)
def test_junk_bodies_never_raise_and_fall_back_on_the_status(body: Any, status: int, action: GraphAction) -> None:
    failure = classify(status, body)
    assert failure.action is action
    assert failure.code is None
    assert isinstance(failure.message, str) and failure.message


def test_unlisted_codes_follow_the_status_and_the_transient_flag() -> None:
    assert classify(400, graph_error(99999)).action is FAIL
    assert classify(500, graph_error(99999)).action is RETRY
    assert classify(400, graph_error(99999, is_transient=True)).action is RETRY
    assert classify(400, graph_error(100, is_transient=True)).action is FAIL  # a listed failure stays one


def test_message_is_bounded_and_falls_back_on_error_user_fields() -> None:
    assert len(classify(400, graph_error(100, message="x" * 10_000)).message) == 500
    assert classify(400, {"error": {"code": 100, "message": 7}}).message == "HTTP 400 without a Graph error body"
    assert classify(400, {"error": {"code": 100, "error_user_msg": "Try again"}}).message == "Try again"
    assert classify(502, "<html>Bad Gateway</html>").message == "HTTP 502 without a Graph error body"


def buc(*regain_minutes: Any) -> str:
    usage = {
        f"10453219876543{i}": [
            {"type": "messenger", "call_count": 100, "total_cputime": 12, "total_time": 30, **minutes}
        ]
        for i, minutes in enumerate({"estimated_time_to_regain_access": m} for m in regain_minutes)
    }
    return json.dumps(usage)


def test_retry_after_from_business_use_case_usage_takes_the_longest_wait() -> None:
    headers = {"X-Business-Use-Case-Usage": buc(2, 0, 5)}
    assert classify(400, graph_error(32), headers).retry_after == 300.0


def test_retry_after_header_and_case_insensitive_names() -> None:
    assert classify(429, None, {"Retry-After": "30"}).retry_after == 30.0
    assert classify(429, None, {"retry-after": " 1.5 "}).retry_after == 1.5
    headers = CIMultiDict({"x-business-use-case-usage": buc(1), "RETRY-AFTER": "90"})
    assert classify(400, graph_error(4), headers).retry_after == 90.0


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"},  # an HTTP-date would need a clock: left to the caller
        {"Retry-After": "-5"},
        {"Retry-After": "nan"},
        {"Retry-After": "inf"},
        {"X-Business-Use-Case-Usage": "not json"},
        {"X-Business-Use-Case-Usage": "[]"},
        {"X-Business-Use-Case-Usage": '{"1": "x", "2": [1, null, {"estimated_time_to_regain_access": "soon"}]}'},
        {"X-Business-Use-Case-Usage": buc(0, 0)},
        {"X-Business-Use-Case-Usage": "[" * 100_000},
    ],
)
def test_unusable_rate_limit_headers_give_no_retry_after(headers: Any) -> None:
    assert classify(400, graph_error(4), headers).retry_after is None


def test_pair_rate_limit_waits_at_least_six_seconds() -> None:
    assert classify(400, graph_error(131056)).retry_after == 6.0
    assert classify(400, graph_error(131056), {"Retry-After": "2"}).retry_after == 6.0
    assert classify(400, graph_error(131056), {"X-Business-Use-Case-Usage": buc(1)}).retry_after == 60.0


def test_retry_after_only_accompanies_retries() -> None:
    headers = {"Retry-After": "30", "X-Business-Use-Case-Usage": buc(5)}
    assert classify(400, graph_error(190, 463), headers).retry_after is None
    assert classify(400, graph_error(131047), headers).retry_after is None
