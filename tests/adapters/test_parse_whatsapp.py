"""WhatsApp webhook parsing: one typed event per element, never an exception, whatever the JSON.

The fixtures under tests/fixtures/meta/whatsapp/ are the project's own, written from Meta's documented shapes
(one body per message type and status, a batched body, unicode, a non-"messages" field). The shared real samples
are checked too when the checkout has them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from adapters.events import (
    Attachment,
    ButtonReply,
    ContentType,
    DeliveryStatus,
    EventKind,
    InboundEvent,
    Location,
    Platform,
    PlatformError,
    Reaction,
    Referral,
    SharedContact,
    event_from_json,
    event_to_json,
)
from adapters.whatsapp import parse
from tests.support.event_text import assert_storable
from tests.support.meta_payloads import SAMPLES_MISSING
from tests.support.paths import META_FIXTURES, META_SAMPLES

FIXTURES = META_FIXTURES / "whatsapp"
SAMPLES = META_SAMPLES
PNID, PNID2 = "110200300400500", "110200300400999"
WA, NAME = "447700900123", "Ada Lovelace"
OURS = "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQUJDMTIzT1VUQk9VTkQwMQA="


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def message(wamid: str, seconds: int, **fields: Any) -> InboundEvent:
    """The event a customer message in the fixtures should become; fields override the common values."""
    base = InboundEvent(
        platform=Platform.WHATSAPP,
        kind=EventKind.MESSAGE,
        channel_external_id=PNID,
        customer_id=WA,
        event_key=wamid,
        message_id=wamid,
        timestamp_ms=seconds * 1000,
        customer_name=NAME,
    )
    return replace(base, **fields)


def status(state: str, seconds: int, errors: tuple[PlatformError, ...] = (), **fields: Any) -> InboundEvent:
    base = InboundEvent(
        platform=Platform.WHATSAPP,
        kind=EventKind.STATUS,
        channel_external_id=PNID,
        customer_id=WA,
        event_key=f"status:{OURS}:{state}",
        message_id=OURS,
        timestamp_ms=seconds * 1000,
        status=DeliveryStatus(state, WA, errors),
        errors=errors,
    )
    return replace(base, **fields)


def media(kind: str, media_id: str, mime: str, caption: str | None = None, filename: str | None = None) -> Attachment:
    return Attachment(type=kind, media_id=media_id, mime_type=mime, caption=caption, filename=filename)


UNICODE = "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u0645\u0631\u062d\u0628\u0627 \u2014 café crème brûlée"
EXPECTED: dict[str, InboundEvent] = {
    "text": message("wamid.TXT001", 1767225600, content_type=ContentType.TEXT, text="Hello, do you ship to Lisbon?"),
    "text_reply": message(
        "wamid.TXT002",
        1767225660,
        content_type=ContentType.TEXT,
        text="Yes, that one please",
        reply_to_message_id=OURS,
    ),
    "image_caption": message(
        "wamid.IMG001",
        1767225720,
        content_type=ContentType.IMAGE,
        text="Broken hinge",
        attachments=(media("image", "9100000000000001", "image/jpeg", caption="Broken hinge"),),
    ),
    "audio_voice": message(
        "wamid.AUD001",
        1767225780,
        content_type=ContentType.AUDIO,
        attachments=(media("audio", "9100000000000002", "audio/ogg; codecs=opus"),),
    ),
    "video": message(
        "wamid.VID001",
        1767225840,
        content_type=ContentType.VIDEO,
        text="Unboxing",
        attachments=(media("video", "9100000000000003", "video/mp4", caption="Unboxing"),),
    ),
    "document": message(
        "wamid.DOC001",
        1767225900,
        content_type=ContentType.FILE,
        text="Invoice for March",
        attachments=(
            media("document", "9100000000000004", "application/pdf", "Invoice for March", "invoice-0042.pdf"),
        ),
    ),
    "sticker": message(
        "wamid.STK001",
        1767225960,
        content_type=ContentType.STICKER,
        attachments=(media("sticker", "9100000000000005", "image/webp"),),
    ),
    "location": message(
        "wamid.LOC001",
        1767226020,
        content_type=ContentType.LOCATION,
        location=Location(38.7223, -9.1393, "Praca do Comercio", "1100-148 Lisboa, Portugal"),
    ),
    "contacts": message(
        "wamid.CON001",
        1767226080,
        content_type=ContentType.CONTACTS,
        contacts=(
            SharedContact("Grace Hopper", ("+1 202 555 0142", "+1 202 555 0199"), ("grace@example.com",)),
            SharedContact("Alan Turing", ("+44 20 7946 0000",)),  # no formatted_name: first + last
        ),
    ),
    "interactive_button_reply": message(
        "wamid.INT001",
        1767226140,
        content_type=ContentType.BUTTON,
        text="Confirm",
        button=ButtonReply(payload="confirm-order-42", title="Confirm"),
        reply_to_message_id=OURS,
    ),
    "interactive_list_reply": message(
        "wamid.INT002",
        1767226200,
        content_type=ContentType.BUTTON,
        text="Tuesday 10:00",
        button=ButtonReply(payload="slot-tue-10", title="Tuesday 10:00"),
        reply_to_message_id=OURS,
    ),
    "interactive_nfm_reply": message(
        "wamid.INT003",
        1767226260,
        content_type=ContentType.BUTTON,
        text="Sent",
        button=ButtonReply(payload="flow", title="Sent"),
        reply_to_message_id=OURS,
    ),
    "button": message(
        "wamid.BTN001",
        1767226320,
        content_type=ContentType.BUTTON,
        text="Stop promotions",
        button=ButtonReply(payload="STOP_PROMOS", title="Stop promotions"),
        reply_to_message_id=OURS,
    ),
    "reaction": message(
        "wamid.REA001",
        1767226380,
        kind=EventKind.REACTION,
        reaction=Reaction(target_message_id=OURS, emoji="\u2764\ufe0f", removed=False),
    ),
    "reaction_removed": message(
        "wamid.REA002",
        1767226440,
        kind=EventKind.REACTION,
        reaction=Reaction(target_message_id=OURS, emoji=None, removed=True),
    ),
    "order": message("wamid.ORD001", 1767226500, content_type=ContentType.ORDER, text="Two of these, please"),
    "system": message(
        "wamid.SYS001",
        1767226560,
        kind=EventKind.SYSTEM,
        text="User Ada Lovelace changed from 447700900123 to 447700900456",
        customer_name=None,  # system messages come without `contacts`
    ),
    "unsupported": message(
        "wamid.UNS001",
        1767226620,
        kind=EventKind.UNSUPPORTED,
        errors=(PlatformError(131051, "Message type unknown", "Message type unknown"),),
    ),
    "revoke": message("wamid.REV001", 1767226680, kind=EventKind.DELETED, reply_to_message_id="wamid.TXT001"),
    "edit": message(
        "wamid.EDT001",
        1767226740,
        kind=EventKind.EDITED,
        content_type=ContentType.TEXT,
        text="Hello, do you ship to Porto?",
        reply_to_message_id="wamid.TXT001",
    ),
    "request_welcome": message("wamid.WEL001", 1767226800, content_type=ContentType.OTHER),
    "referral_ctwa": message(
        "wamid.REF001",
        1767226900,
        content_type=ContentType.TEXT,
        text="Is the summer offer still on?",
        referral=Referral(source="ad", type="video", ref="ARExampleClickId123", ad_id="120200000000000042"),
    ),
    "unicode_text": message(
        "wamid.UNI001",
        1767226960,
        content_type=ContentType.TEXT,
        text=UNICODE,
        customer_name="Zoë \u0623\u062d\u0645\u062f",
    ),
    "status_sent": status("sent", 1767226860),
    "status_delivered": status("delivered", 1767226870),
    "status_read": status("read", 1767226880, customer_name=NAME),
    "status_failed": status(
        "failed",
        1767226890,
        (PlatformError(131047, "Re-engagement message", "Re-engagement message"),),
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_becomes_one_typed_event(name: str) -> None:
    payload = load(name)
    [event] = parse(payload)

    assert event == EXPECTED[name]
    # raw is the element itself, kept for inspection and for what the typed fields leave out.
    element_list = payload["entry"][0]["changes"][0]["value"]
    assert event.raw == (element_list.get("messages") or element_list["statuses"])[0]
    assert event_from_json(event_to_json(event)) == event


def test_voice_note_and_flow_answers_stay_in_raw() -> None:
    [voice] = parse(load("audio_voice"))
    [flow] = parse(load("interactive_nfm_reply"))

    assert voice.raw["audio"]["voice"] is True
    assert json.loads(flow.raw["interactive"]["nfm_reply"]["response_json"])["flow_token"] == "tok-7"


def test_value_level_errors_become_error_events() -> None:
    [event] = parse(load("errors"))

    assert event.kind is EventKind.ERROR
    assert event.channel_external_id == PNID
    assert event.customer_id is None and event.message_id is None
    assert event.errors == (PlatformError(131000, "Something went wrong", "Something went wrong"),)
    assert event.event_key.startswith("error:131000:") and len(event.event_key) == len("error:131000:") + 64
    assert event.timestamp_ms == 0  # the documented error element carries no time, nor does its entry
    assert parse(load("errors"))[0].event_key == event.event_key  # a retry dedupes


def test_error_message_falls_back_to_details_and_its_own_timestamp_keys_it() -> None:
    payload = load("errors")
    error = payload["entry"][0]["changes"][0]["value"]["errors"][0]
    del error["message"]
    error["timestamp"] = "1767227000"

    [event] = parse(payload)

    assert event.event_key == "error:131000:1767227000"
    assert event.timestamp_ms == 1767227000_000
    assert event.errors[0].message == "Message failed to send because of an unknown error."


def test_non_messages_field_is_kept_as_one_unknown_event() -> None:
    payload = load("template_status_update")
    [event] = parse(payload)

    assert event.kind is EventKind.UNKNOWN
    assert event.channel_external_id == ""  # a template belongs to the WABA, not to a phone number
    assert event.raw == payload["entry"][0]["changes"][0]
    assert event.timestamp_ms == 1767227000_000  # entry.time
    assert event.event_key.startswith("unknown:") and len(event.event_key) == len("unknown:") + 64
    assert not event.answerable


def test_batch_yields_every_element_of_every_entry_and_change_in_order() -> None:
    events = parse(load("batch"))

    assert [(e.channel_external_id, e.kind, e.message_id) for e in events] == [
        (PNID, EventKind.MESSAGE, "wamid.B1"),
        (PNID, EventKind.MESSAGE, "wamid.B2"),
        (PNID, EventKind.STATUS, "wamid.OUT1"),
        (PNID, EventKind.STATUS, "wamid.OUT1"),
        (PNID2, EventKind.MESSAGE, "wamid.B3"),
        (PNID2, EventKind.REACTION, "wamid.B4"),
        (PNID2, EventKind.STATUS, "wamid.OUT2"),
        (PNID2, EventKind.STATUS, "wamid.OUT3"),
    ]
    assert [e.event_key for e in events[2:4]] == ["status:wamid.OUT1:delivered", "status:wamid.OUT1:read"]
    assert len({e.event_key for e in events}) == len(events)
    assert [e.text for e in events[:2]] == ["first", "second"]
    assert {e.customer_id for e in events[:2]} == {WA} and events[0].customer_name == NAME
    assert {e.customer_id for e in events[4:]} == {"351912345678"}
    assert events[4].customer_name == "Rui" and events[4].content_type is ContentType.IMAGE
    assert events[4].timestamp_ms == 1767227104_000
    assert events[5].reaction == Reaction("wamid.OUT2", "\U0001f44d", False)
    assert events[7].status == DeliveryStatus(
        "failed", "351912345678", (PlatformError(131026, "Message undeliverable", "Message undeliverable"),)
    )


def test_unicode_survives_the_inbox_round_trip() -> None:
    [event] = parse(load("unicode_text"))

    assert event.text == UNICODE
    assert "\u200d" in event.text  # the family emoji keeps its zero-width joiners
    assert event_from_json(event_to_json(event)).text == UNICODE


def test_numbers_as_ids_become_strings() -> None:
    payload = load("text")
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = 110200300400500
    value["contacts"][0]["wa_id"] = 447700900123
    value["messages"][0].update({"from": 447700900123, "id": 42, "timestamp": 1767225600})

    [event] = parse(payload)

    assert (event.channel_external_id, event.customer_id, event.message_id, event.event_key) == (PNID, WA, "42", "42")
    assert event.customer_name == NAME and event.timestamp_ms == 1767225600_000


@pytest.mark.parametrize("timestamp", ["soon", "", "-5", "1.5e9", "١٧٦٧٢٢٥٦٠٠", None, True, [], "9" * 5000])
def test_a_message_without_a_usable_timestamp_is_unknown(timestamp: Any) -> None:
    payload = load("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = timestamp

    [event] = parse(payload)

    assert event.kind is EventKind.UNKNOWN
    assert event.message_id == "wamid.TXT001" and event.customer_id == WA  # what is known is kept
    assert event.raw["text"] == {"body": "Hello, do you ship to Lisbon?"}


def test_unknown_type_is_unknown_with_a_canonical_key() -> None:
    payload = load("text")
    element = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    element.update({"type": "hologram", "hologram": {"id": "1"}})
    reordered = dict(reversed(list(element.items())))

    [first] = parse(payload)
    payload["entry"][0]["changes"][0]["value"]["messages"][0] = reordered
    [second] = parse(payload)

    assert first.kind is EventKind.UNKNOWN and first.raw is element
    assert first.event_key == second.event_key  # canonical JSON: key order does not matter


@pytest.mark.parametrize("body", [None, 42, "x", [], [{"entry": []}], {}, {"object": "whatsapp_business_account"}])
def test_a_wholly_malformed_body_is_one_unknown_event(body: Any) -> None:
    [event] = parse(body)

    assert event.kind is EventKind.UNKNOWN
    assert event.channel_external_id == ""
    assert event.raw == (body if isinstance(body, dict) else {"element": body})


def test_an_empty_batch_is_no_event() -> None:
    assert parse({"object": "whatsapp_business_account", "entry": []}) == []


def test_one_bad_element_does_not_cost_its_neighbours() -> None:
    payload = load("batch")
    payload["entry"].insert(1, "garbage")
    payload["entry"][0]["changes"][0]["value"]["messages"].insert(1, {"type": "text"})
    payload["entry"][0]["changes"][1]["value"]["statuses"] = {"id": "wamid.OUT1"}

    kinds = [e.kind for e in parse(payload)]

    assert kinds == [
        EventKind.MESSAGE,
        EventKind.UNKNOWN,  # the message without id, sender or time
        EventKind.MESSAGE,
        EventKind.UNKNOWN,  # `statuses` that is not a list
        EventKind.UNKNOWN,  # the entry that is not an object
        EventKind.MESSAGE,
        EventKind.REACTION,
        EventKind.STATUS,
        EventKind.STATUS,
    ]


def test_an_edit_of_a_caption_carries_the_new_media_and_caption() -> None:
    payload = load("edit")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["edit"]["message"] = {
        "type": "image",
        "image": {"caption": "New caption", "mime_type": "image/jpeg", "id": "9100000000000099"},
    }

    [event] = parse(payload)

    assert (event.kind, event.content_type, event.text) == (EventKind.EDITED, ContentType.IMAGE, "New caption")
    assert event.attachments == (media("image", "9100000000000099", "image/jpeg", caption="New caption"),)
    assert event.reply_to_message_id == "wamid.TXT001"


def test_lone_surrogate_in_from_is_replaced_so_the_event_can_be_stored_and_answered() -> None:
    """Regression: such a signed message was acknowledged, then failed every worker attempt (its sender cannot be
    encoded for OpenAI, Graph or PostgreSQL) and was dead-lettered after five retries."""
    payload = load("text")
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = PNID + "\x00"
    value["contacts"][0].update({"wa_id": WA + "\ud800", "profile": {"name": "Ada \udc00"}})
    value["messages"][0].update({"from": WA + "\ud800", "id": "wamid.\x00TXT001", "text": {"body": "Hi \ud83d\x00"}})

    [event] = parse(payload)

    assert event.kind is EventKind.MESSAGE and event.answerable
    assert (event.channel_external_id, event.customer_id) == (PNID + "\ufffd", WA + "\ufffd")
    assert event.event_key == event.message_id == "wamid.\ufffdTXT001"
    assert (event.text, event.customer_name) == ("Hi \ufffd\ufffd", "Ada \ufffd")  # the name still matches its sender
    assert event.raw["from"] == WA + "\ud800"  # raw keeps what was received
    assert_storable(event)


def test_nul_and_lone_surrogates_in_statuses_errors_and_shared_contacts_are_replaced() -> None:
    failed, contacts = load("status_failed"), load("contacts")
    status = failed["entry"][0]["changes"][0]["value"]["statuses"][0]
    status.update({"id": "wamid.\ud800", "recipient_id": "\x00" + WA})
    status["errors"][0].update({"title": "Re-engagement\x00", "message": "\udfff"})
    card = contacts["entry"][0]["changes"][0]["value"]["messages"][0]["contacts"][0]
    card["name"]["formatted_name"] = "Grace\x00Hopper"
    card["phones"][0]["phone"] = "+1 202\ud800"
    card["emails"][0]["email"] = "grace\udc00@example.com"

    [state], [shared] = parse(failed), parse(contacts)

    assert (state.event_key, state.customer_id) == ("status:wamid.\ufffd:failed", "\ufffd" + WA)
    assert state.status == DeliveryStatus(
        "failed", "\ufffd" + WA, (PlatformError(131047, "Re-engagement\ufffd", "\ufffd"),)
    )
    assert shared.contacts[0] == SharedContact(
        "Grace\ufffdHopper", ("+1 202\ufffd", "+1 202 555 0199"), ("grace\ufffd@example.com",)
    )
    assert_storable(state)
    assert_storable(shared)


# --- the shared real samples ---------------------------------------------------------------------------------

SAMPLE_KINDS: dict[str, list[EventKind]] = {
    "whatsapp_audio.json": [EventKind.MESSAGE],
    "whatsapp_button_template_quick_reply.json": [EventKind.MESSAGE],
    "whatsapp_contacts.json": [EventKind.MESSAGE],
    "whatsapp_document.json": [EventKind.MESSAGE],
    "whatsapp_edit.json": [EventKind.EDITED],
    "whatsapp_errors.json": [EventKind.ERROR],
    "whatsapp_image.json": [EventKind.MESSAGE],
    "whatsapp_interactive_button_reply.json": [EventKind.MESSAGE],
    "whatsapp_interactive_list_reply.json": [EventKind.MESSAGE],
    # Justified UNKNOWN: `type: interactive` with no `interactive` object at all; Meta flags the same body with a
    # value-level 131000 "Unsupported webhook payload" error, which becomes the ERROR event.
    "whatsapp_interactive_with_error.json": [EventKind.UNKNOWN, EventKind.ERROR],
    "whatsapp_location.json": [EventKind.MESSAGE],
    "whatsapp_order.json": [EventKind.MESSAGE],
    "whatsapp_reaction.json": [EventKind.REACTION],
    "whatsapp_reaction_removed.json": [EventKind.REACTION],
    "whatsapp_revoke_deleted.json": [EventKind.DELETED],
    "whatsapp_status_delivered.json": [EventKind.STATUS],
    "whatsapp_status_failed.json": [EventKind.STATUS],
    "whatsapp_status_read.json": [EventKind.STATUS],
    "whatsapp_status_sent.json": [EventKind.STATUS],
    "whatsapp_status_sent_minimal.json": [EventKind.STATUS],
    "whatsapp_sticker.json": [EventKind.MESSAGE],
    "whatsapp_sticker_animated.json": [EventKind.MESSAGE],
    "whatsapp_system_number_changed.json": [EventKind.SYSTEM],
    "whatsapp_text.json": [EventKind.MESSAGE],
    "whatsapp_text_ctwa_referral.json": [EventKind.MESSAGE],
    "whatsapp_text_reply_context.json": [EventKind.MESSAGE],
    "whatsapp_unsupported.json": [EventKind.UNSUPPORTED],
    "whatsapp_video.json": [EventKind.MESSAGE],
    "whatsapp_voice.json": [EventKind.MESSAGE],
}
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=SAMPLES_MISSING)


@needs_samples
def test_every_shared_sample_has_an_expectation() -> None:
    assert sorted(p.name for p in SAMPLES.glob("whatsapp_*.json")) == sorted(SAMPLE_KINDS)


@needs_samples
@pytest.mark.parametrize("name", sorted(SAMPLE_KINDS))
def test_shared_sample_parses_to_the_expected_kinds(name: str) -> None:
    payload = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    metadata = payload["entry"][0]["changes"][0]["value"]["metadata"]

    events = parse(payload)

    assert [e.kind for e in events] == SAMPLE_KINDS[name]
    for event in events:
        assert event.channel_external_id == metadata["phone_number_id"]
        assert event.timestamp_ms % 1000 == 0
        assert event_from_json(event_to_json(event)) == event


# --- robustness: mutate every fixture everywhere -------------------------------------------------------------

DROP = object()
# The brief's five values, plus what json.loads also produces: booleans, negatives, floats, NaN and Infinity.
REPLACEMENTS = (DROP, None, 42, "x", [], {}, True, -1, "", 1.5, float("nan"), float("inf"))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index, at every nesting level."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def mutated(node: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of node with the value at path dropped or replaced; only the nodes along the path are copied."""
    key, rest = path[0], path[1:]
    copy = dict(node) if isinstance(node, dict) else list(node)
    if rest:
        copy[key] = mutated(node[key], rest, new)
    elif new is DROP:
        del copy[key]
    else:
        copy[key] = new
    return copy


def check_invariants(events: Any) -> None:
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, InboundEvent)
        assert isinstance(event.channel_external_id, str) and isinstance(event.event_key, str) and event.event_key
        assert all(v is None or isinstance(v, str) for v in (event.customer_id, event.message_id))
        assert type(event.timestamp_ms) is int and event.timestamp_ms >= 0
        event_to_json(event)  # the inbox can store it


def test_no_mutation_of_any_fixture_raises() -> None:
    count = 0
    for fixture in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(fixture.read_text(encoding="utf-8"))
        for body in (None, 42, "x", [], {}):
            check_invariants(parse(body))
        for path in paths(payload):
            for new in REPLACEMENTS:
                check_invariants(parse(mutated(payload, path, new)))
                count += 1
    assert count > 10_000
