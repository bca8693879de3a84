"""Reply rendering: exact Graph bodies per platform, chunking within each platform's limit, order and quoting."""

from __future__ import annotations

import json

import pytest

from adapters.events import Platform
from adapters.replies import GraphRequest, text_limits, text_requests, typing_request

PAGE, IG_ACCOUNT, PHONE_ID = "104532198765432", "17841400000000000", "106540352242922"
PSID, IGSID, WA_ID = "6543210987654321", "987654321098765", "16505551234"
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdEQjY0OUQ4RUE1RjU0NDNEOQA="


def body_texts(requests: list[GraphRequest], platform: Platform) -> list[str]:
    if platform is Platform.WHATSAPP:
        return [r.body["text"]["body"] for r in requests]
    return [r.body["message"]["text"] for r in requests]


def long_reply(unit: str, size: int = 5000) -> str:
    """About `size` code points of numbered sentences, so order can be checked chunk by chunk."""
    parts, length, n = [], -1, 0  # -1: no separator before the first sentence
    while length < size:
        sentence = f"{n} {unit}."
        parts.append(sentence)
        length += len(sentence) + 1
        n += 1
    return " ".join(parts)


def test_messenger_typing_indicator() -> None:
    request = typing_request(Platform.MESSENGER, PAGE, PSID, "m_abc")
    assert request == GraphRequest(f"{PAGE}/messages", {"recipient": {"id": PSID}, "sender_action": "typing_on"})


def test_instagram_typing_indicator() -> None:
    request = typing_request(Platform.INSTAGRAM, IG_ACCOUNT, IGSID, None)
    assert request == GraphRequest(f"{IG_ACCOUNT}/messages", {"recipient": {"id": IGSID}, "sender_action": "typing_on"})


def test_whatsapp_typing_indicator_marks_the_message_read() -> None:
    request = typing_request(Platform.WHATSAPP, PHONE_ID, WA_ID, WAMID)
    assert request == GraphRequest(
        f"{PHONE_ID}/messages",
        {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID, "typing_indicator": {"type": "text"}},
    )


@pytest.mark.parametrize(
    ("platform", "customer", "message_id"),
    [(Platform.WHATSAPP, WA_ID, None), (Platform.WHATSAPP, WA_ID, ""), (Platform.MESSENGER, None, "m_1")],
)
def test_no_typing_indicator_without_what_it_needs(
    platform: Platform, customer: str | None, message_id: str | None
) -> None:
    assert typing_request(platform, PHONE_ID, customer, message_id) is None


def test_messenger_text_body() -> None:
    assert text_requests(Platform.MESSENGER, PAGE, PSID, "  Hi there!  ") == [
        GraphRequest(
            f"{PAGE}/messages",
            {
                "recipient": {"id": PSID},
                "messaging_type": "RESPONSE",
                "message": {"text": "Hi there!", "metadata": "nexus-gateway"},
            },
        )
    ]


def test_instagram_text_body() -> None:
    assert text_requests(Platform.INSTAGRAM, IG_ACCOUNT, IGSID, "Hi there!") == [
        GraphRequest(f"{IG_ACCOUNT}/messages", {"recipient": {"id": IGSID}, "message": {"text": "Hi there!"}})
    ]


def test_whatsapp_text_body_quotes_the_customer() -> None:
    assert text_requests(Platform.WHATSAPP, PHONE_ID, WA_ID, "Hi there!", reply_to_message_id=WAMID) == [
        GraphRequest(
            f"{PHONE_ID}/messages",
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+16505551234",
                "type": "text",
                "text": {"body": "Hi there!", "preview_url": False},
                "context": {"message_id": WAMID},
            },
        )
    ]


@pytest.mark.parametrize("wa_id", ["16505551234", "+16505551234", " +16505551234 "])
def test_whatsapp_recipient_has_exactly_one_plus(wa_id: str) -> None:
    (request,) = text_requests(Platform.WHATSAPP, PHONE_ID, wa_id, "Hi")
    assert request.body["to"] == "+16505551234"
    assert "context" not in request.body


def test_platform_given_as_plain_string() -> None:
    assert text_requests("messenger", PAGE, PSID, "Hi") == text_requests(Platform.MESSENGER, PAGE, PSID, "Hi")
    with pytest.raises(ValueError):
        text_requests("telegram", PAGE, PSID, "Hi")


def test_blank_reply_sends_nothing() -> None:
    assert text_requests(Platform.WHATSAPP, PHONE_ID, WA_ID, " \n ", reply_to_message_id=WAMID) == []


@pytest.mark.parametrize(
    "unit", ["The quick brown fox jumps", "مرحبا بك في متجرنا 👨\u200d👩\u200d👧\u200d👦", "🇯🇵 ありがとう"]
)
def test_a_5000_character_reply_fits_every_platform(unit: str) -> None:
    text = long_reply(unit)
    assert len(text) >= 5000
    limits = {
        Platform.MESSENGER: lambda chunk: len(chunk) < 2000,
        Platform.INSTAGRAM: lambda chunk: len(chunk.encode("utf-8")) <= 1000,
        Platform.WHATSAPP: lambda chunk: len(chunk) <= 4096,
    }
    for platform, fits in limits.items():
        requests = text_requests(platform, PAGE, PSID if platform is not Platform.WHATSAPP else WA_ID, text)
        chunks = body_texts(requests, platform)
        assert len(chunks) >= 2 and all(fits(chunk) for chunk in chunks), platform
        assert " ".join(chunks).split() == text.split(), platform  # nothing lost, nothing reordered
        assert all(request.path.endswith("/messages") for request in requests)


def test_instagram_multibyte_reply_is_split_by_bytes_not_characters() -> None:
    text = long_reply("مرحبا بك 😀")  # ~2-4 bytes per character: 5000 characters is far over 1000 bytes per chunk
    chunks = body_texts(text_requests(Platform.INSTAGRAM, IG_ACCOUNT, IGSID, text), Platform.INSTAGRAM)
    assert max(len(chunk.encode("utf-8")) for chunk in chunks) <= 1000
    assert max(len(chunk) for chunk in chunks) < 999  # a character count alone would have allowed far more bytes
    assert len(chunks) > len(text) // 999


def test_context_only_on_the_first_whatsapp_chunk() -> None:
    text = long_reply("A fairly ordinary sentence", 10_000)
    requests = text_requests(Platform.WHATSAPP, PHONE_ID, WA_ID, text, reply_to_message_id=WAMID)
    assert len(requests) >= 3
    assert requests[0].body["context"] == {"message_id": WAMID}
    assert all("context" not in request.body for request in requests[1:])
    assert all(request.body["to"] == "+16505551234" for request in requests)


def test_bodies_serialise_to_json() -> None:
    for request in text_requests(Platform.WHATSAPP, PHONE_ID, WA_ID, "Hi 😀", reply_to_message_id=WAMID):
        assert json.loads(json.dumps(request.body)) == request.body


def test_text_limits_per_platform() -> None:
    assert text_limits(Platform.MESSENGER) == {"max_chars": 1999}
    assert text_limits(Platform.INSTAGRAM) == {"max_chars": 999, "max_utf8_bytes": 1000}
    assert text_limits("whatsapp") == {"max_chars": 4096}
