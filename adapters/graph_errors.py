"""Classifying a failed Graph API call into what the sender should do next.

The decision keys on the Graph `error.code` (+ `error_subcode`), never on the HTTP status alone: WhatsApp answers
400 to throttling, and one status covers codes that need opposite handling. The HTTP status only decides when the
body carries no Graph error at all (an HTML 502 from a proxy, an empty 429). Codes and actions follow
meta-platforms.md §8 (Graph "Handling Errors", Messenger "Common Error Codes", WhatsApp error codes, Rate Limits).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class GraphAction(StrEnum):
    RETRY = "retry"  # transient or throttled: back off (at least `retry_after` when given) and try again
    REAUTHORIZE = "reauthorize"  # the token is dead: stop sending on this channel and alert its owner
    WINDOW_CLOSED = "window_closed"  # outside the 24-hour window: record it; retrying cannot succeed
    RECIPIENT_UNAVAILABLE = "recipient_unavailable"  # blocked, gone or not on WhatsApp: mark unreachable, no retry
    THREAD_OWNED_ELSEWHERE = "thread_owned_elsewhere"  # handover protocol: another app owns the thread; stay quiet
    FAIL = "fail"  # our request or our standing is wrong: log and alert, never retry


@dataclass(frozen=True, slots=True)
class GraphFailure:
    action: GraphAction
    code: int | None
    subcode: int | None
    message: str
    retry_after: float | None  # seconds; only for RETRY, and only when Meta said (or the code implies) how long


# Throttling and transient codes: 1/2 unknown/temporary; 4 app, 17 user, 32 Page, 613 custom rate limits; 8000x
# Business Use Case limits (80001 Pages, 80002 Instagram, 80006 Messenger, 80008 WhatsApp Business Management,
# 80007 WhatsApp account); 130429 WhatsApp throughput; 131056 pair rate limit; 131000/135000 WhatsApp generic.
_RETRY_CODES = frozenset({1, 2, 4, 17, 32, 613, 80001, 80002, 80006, 80007, 80008, 130429, 131056, 131000, 135000})
# Codes that say "this will not work later either", even though some of them read like rate limits.
_NO_RETRY = frozenset({(2, 2018344), (4, 2018354)})  # Privacy ToS not accepted; marketing-message frequency cap
_REAUTH_CODES = frozenset({190, 102})  # 190 invalid/expired token (any subcode); 102 API session expired
_WINDOW_SUBCODES = frozenset({2018278, 2534022, 2018065})  # with code 10: sent outside the allowed window
_UNAVAILABLE = frozenset({(200, 1545041), (100, 2018001), (100, 2534014)})  # blocked / no matching user
_UNAVAILABLE_CODES = frozenset({551, 131026})  # "This person isn't available right now"; WhatsApp undeliverable
# Listed so that no status or transient flag can turn them into retries: bad or missing parameters (100, 131009,
# 131008), policy blocks (368, 131031), spam and messaging limits (131048, 131064, 131049: retrying makes it worse),
# media and template errors.
_KNOWN_FAIL_CODES = frozenset(
    {100, 368, 131008, 131009, 131031, 131048, 131049, 131050, 131051, 131052, 131053, 131064}
    | set(range(132000, 132017))
)
_THREAD_OWNED = 2018300  # another app controls the thread; seen as a code and as a subcode (10/2018300)
_PAIR_RATE_LIMIT = 131056
_PAIR_MIN_WAIT = 6.0  # Meta: about one message per 6 s to the same WhatsApp user
_DIGITS = re.compile(r"[0-9]{1,15}")
_MAX_MESSAGE = 500  # keeps a multi-kilobyte HTML error page out of logs and storage


def classify(http_status: int, body: Any, headers: Mapping[str, str] | None = None) -> GraphFailure:
    """What to do about a failed Graph call. Never raises, whatever `body` is (dict, JSON text, bytes, HTML, None).

    `body` is the decoded JSON, or its raw text/bytes. A WhatsApp webhook error element (`{"code", "title",
    "message", "error_data"}`, from `statuses[].errors[]` or `value.errors[]`) is accepted as well.
    """
    error = _error_object(body)
    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    message = _message(error, http_status)
    action = _action(http_status, code, subcode, error.get("is_transient") is True)
    retry_after = None
    if action is GraphAction.RETRY:
        retry_after = _retry_after(headers)
        if code == _PAIR_RATE_LIMIT:
            retry_after = max(retry_after or 0.0, _PAIR_MIN_WAIT)
    return GraphFailure(action, code, subcode, message, retry_after)


def _action(http_status: int, code: int | None, subcode: int | None, transient: bool) -> GraphAction:
    if code is None:
        # No Graph error to read: a gateway/proxy failure or a bare throttle is worth another try; anything else is
        # a request problem that will not fix itself.
        return GraphAction.RETRY if http_status == 429 or http_status >= 500 else GraphAction.FAIL
    if code in _REAUTH_CODES:
        return GraphAction.REAUTHORIZE
    if _THREAD_OWNED in (code, subcode):
        return GraphAction.THREAD_OWNED_ELSEWHERE
    if (code == 10 and subcode in _WINDOW_SUBCODES) or code == 131047:
        return GraphAction.WINDOW_CLOSED
    if code in _UNAVAILABLE_CODES or (code, subcode) in _UNAVAILABLE:
        return GraphAction.RECIPIENT_UNAVAILABLE
    if (code, subcode) in _NO_RETRY:
        return GraphAction.FAIL
    if code in _RETRY_CODES:
        return GraphAction.RETRY
    if code in _KNOWN_FAIL_CODES or 200 <= code <= 299 or code == 10:
        return GraphAction.FAIL
    # An unlisted code: trust Meta's own transient flag, or a 5xx status, for a bounded number of retries.
    return GraphAction.RETRY if transient or http_status >= 500 else GraphAction.FAIL


def _error_object(body: Any) -> Mapping[str, Any]:
    """The Graph `error` object of a body, or {} when there is none."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):  # HTML, text, truncated or absurdly nested JSON
            return {}
    if not isinstance(body, Mapping):
        return {}
    error = body.get("error")
    if isinstance(error, Mapping):
        return error
    return body if "code" in body else {}  # a WhatsApp webhook error element carries its code at top level


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):  # bool is an int subclass; `true` is not an error code
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # Bounded ASCII digits only: int() raises past 4300 digits and on digits like "²" that str.isdigit() accepts.
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    return None


def _message(error: Mapping[str, Any], http_status: int) -> str:
    candidates = (error.get(key) for key in ("message", "error_user_msg", "title"))
    text = next((c for c in candidates if isinstance(c, str) and c), f"HTTP {http_status} without a Graph error body")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    if isinstance(details, str) and details and details not in text:
        text = f"{text}: {details}"  # WhatsApp puts the specific cause in error_data.details
    return text[:_MAX_MESSAGE]


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait, from `X-Business-Use-Case-Usage` and `Retry-After`, the longer of the two; or None."""
    if not headers:
        return None
    try:
        lowered = {str(name).lower(): value for name, value in headers.items()}
    except (AttributeError, TypeError, ValueError):
        return None
    waits = [_buc_wait(lowered.get("x-business-use-case-usage")), _seconds(lowered.get("retry-after"))]
    known = [wait for wait in waits if wait is not None]
    return max(known) if known else None


def _buc_wait(header: Any) -> float | None:
    """The largest `estimated_time_to_regain_access` (minutes) over every business object and type, in seconds."""
    try:
        usage = json.loads(header) if isinstance(header, str | bytes) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(usage, Mapping):
        return None
    minutes = [
        _seconds(entry.get("estimated_time_to_regain_access"))
        for entries in usage.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, Mapping)
    ]
    known = [m for m in minutes if m]  # 0 means "not throttled on this object", not "retry now"
    return max(known) * 60.0 if known else None


def _seconds(value: Any) -> float | None:
    """A non-negative finite number from a header or JSON value; None otherwise. (An HTTP-date Retry-After would
    need the current time, which this pure module does not read; Graph sends seconds.)"""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


# Graph's own "unknown" and "temporary" errors and WhatsApp's generic ones: the send may have been done all the same.
_OUTCOME_UNKNOWN_CODES = frozenset({1, 2, 131000, 135000})


def may_have_gone_out(failure: GraphFailure) -> bool:
    """Could the message have reached the customer despite this failure? A timeout or broken connection (no code),
    or an unknown or temporary server error: yes. A refusal or a rate limit: no."""
    return failure.code is None or failure.code in _OUTCOME_UNKNOWN_CODES
