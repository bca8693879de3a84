"""Messenger webhook parsing: our own fixtures per event type, Meta's documented samples, and malformed bodies.

The fixtures under tests/fixtures/meta/messenger/ are written from the documented formats with invented ids and
text; the mutation helpers they share with the Instagram tests are in tests/support/meta_payloads.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from adapters import instagram, messenger
from adapters.events import Attachment, ButtonReply, ContentType, EventKind, Platform, Reaction, Referral
from tests.support.event_text import assert_storable
from tests.support.meta_payloads import REPLACEMENTS, T, assert_well_formed, digest, mutations, samples_dir
from tests.support.paths import META_FIXTURES

FIXTURES = META_FIXTURES / "messenger"

PAGE, PAGE_B = "104857600000001", "104857600000002"
PSID, PSID_B = "7391000000000001", "7391000000000002"
OUR_APP, INBOX_APP, OTHER_APP = "900000000000001", "263902037430900", "777000000000003"

MESSAGE, ECHO = EventKind.MESSAGE, EventKind.ECHO


def load(name: str, folder: Path = FIXTURES) -> dict[str, Any]:
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


def expect(kind: EventKind, key: str, **fields: Any) -> dict[str, Any]:
    """The typed fields every case pins; unlisted ones must keep their defaults."""
    base = {
        "platform": Platform.MESSENGER,
        "kind": kind,
        "event_key": key,
        "channel_external_id": PAGE,
        "customer_id": PSID,
        "message_id": None,
        "timestamp_ms": T,
        "content_type": None,
        "text": None,
        "button": None,
        "reaction": None,
        "standby": False,
    }
    return base | fields


def media(kind: str, ext: str, offset: int) -> dict[str, Any]:
    mid = f"m_{kind}_0001"
    url = f"https://cdn.example.test/{kind}/0001.{ext}"
    attachments = (Attachment(type=kind, url=url),)
    return expect(
        MESSAGE, mid, message_id=mid, timestamp_ms=T + offset, content_type=ContentType(kind), attachments=attachments
    )


# fmt: off
CASES: dict[str, dict[str, Any]] = {
    "text": expect(MESSAGE, "m_text_0001", message_id="m_text_0001", content_type=ContentType.TEXT,
                   text="Do you ship to Lyon?", attachments=(), reply_to_message_id=None, referral=None),
    "image": media("image", "jpg", 10),
    "audio": media("audio", "mp4", 11),
    "video": media("video", "mp4", 12),
    "file": media("file", "pdf", 13),
    "image_multiple": expect(MESSAGE, "m_images_0001", message_id="m_images_0001", content_type=ContentType.IMAGE,
                             attachments=(Attachment("image", url="https://cdn.example.test/image/a.jpg"),
                                          Attachment("image", url="https://cdn.example.test/image/b.jpg"))),
    "sticker": expect(MESSAGE, "m_sticker_0001", message_id="m_sticker_0001", content_type=ContentType.STICKER,
                      attachments=(Attachment("sticker", url="https://cdn.example.test/sticker/like.png"),)),
    # Until 2026-08-30 a sticker comes as both an `image` (with sticker_id) and a `sticker` attachment.
    "sticker_transition": expect(MESSAGE, "m_sticker_0002", message_id="m_sticker_0002",
                                 content_type=ContentType.STICKER),
    # A link preview comes with the text it previews: the attachment decides the type, the text is kept.
    "fallback": expect(MESSAGE, "m_fallback_0001", message_id="m_fallback_0001", content_type=ContentType.FALLBACK,
                       text="Look at this: https://example.test/shoes",
                       attachments=(Attachment("fallback", url="https://example.test/shoes",
                                               title="Red shoes - Example Store"),)),
    "reel": expect(MESSAGE, "m_reel_0001", message_id="m_reel_0001", content_type=ContentType.SHARE,
                   attachments=(Attachment("ig_reel", url="https://cdn.example.test/reel/0001.mp4",
                                           title="Spring collection"),)),
    "quick_reply": expect(MESSAGE, "m_qr_0001", message_id="m_qr_0001", content_type=ContentType.BUTTON,
                          text="Medium", button=ButtonReply(payload="SIZE_M", title="Medium")),
    "reply_to": expect(MESSAGE, "m_reply_0002", message_id="m_reply_0002", content_type=ContentType.TEXT,
                       text="Yes, this one", reply_to_message_id="m_reply_0001"),
    "ads_referral_message": expect(MESSAGE, "m_ad_0001", message_id="m_ad_0001", content_type=ContentType.TEXT,
                                   text="Is this still available?",
                                   referral=Referral(source="ADS", type="OPEN_THREAD", ref="ad-ref-1",
                                                     ad_id="6001234567890")),
    "postback": expect(EventKind.POSTBACK, "m_postback_0001", message_id="m_postback_0001", text="Track my order",
                       button=ButtonReply(payload="TRACK_ORDER", title="Track my order")),
    "postback_get_started": expect(EventKind.POSTBACK, f"postback:{PSID}:{T}:GET_STARTED", text="Get Started",
                                   button=ButtonReply(payload="GET_STARTED", title="Get Started"),
                                   referral=Referral(source="SHORTLINK", type="OPEN_THREAD", ref="spring-promo")),
    "reaction": expect(EventKind.REACTION, f"reaction:m_text_0001:react:love:{PSID}", message_id="m_text_0001",
                       reaction=Reaction(target_message_id="m_text_0001", emoji="\u2764\ufe0f", removed=False)),
    "unreact": expect(EventKind.REACTION, f"reaction:m_text_0001:unreact:love:{PSID}", message_id="m_text_0001",
                      timestamp_ms=T + 60,
                      reaction=Reaction(target_message_id="m_text_0001", emoji="\u2764\ufe0f", removed=True)),
    "read": expect(EventKind.READ, f"read:{PSID}:{T - 1000}", timestamp_ms=T + 5),
    # Deliveries often carry no timestamp: the entry's `time` stands in.
    "delivery": expect(EventKind.DELIVERY, f"delivery:{PSID}:{T - 2000}", timestamp_ms=T + 500),
    "echo_ours": expect(ECHO, "m_echo_0001", message_id="m_echo_0001", content_type=ContentType.TEXT,
                        text="We ship to Lyon in 2 days.", app_id=OUR_APP),
    "echo_inbox": expect(ECHO, "m_echo_0002", message_id="m_echo_0002", content_type=ContentType.TEXT,
                         text="Hi, Camille here from the shop.", app_id=INBOX_APP),
    "echo_template": expect(ECHO, "m_echo_0003", message_id="m_echo_0003", content_type=ContentType.TEMPLATE,
                            app_id=OUR_APP, attachments=(Attachment("template"),)),
    "referral": expect(EventKind.REFERRAL, f"referral:{PSID}:{T}",
                       referral=Referral(source="SHORTLINK", type="OPEN_THREAD", ref="winter-sale")),
    "standby_message": expect(MESSAGE, "m_standby_0001", message_id="m_standby_0001", content_type=ContentType.TEXT,
                              text="Hello? anyone there?", standby=True),
    # Standby postbacks carry no payload.
    "standby_postback": expect(EventKind.POSTBACK, f"postback:{PSID}:{T}:", text="Talk to a human",
                               button=ButtonReply(payload=None, title="Talk to a human"), standby=True),
    "handover_pass": expect(EventKind.HANDOVER, f"handover:{PSID}:{T}", app_id=OUR_APP),
    "handover_take": expect(EventKind.HANDOVER, f"handover:{PSID}:{T}", app_id=INBOX_APP),
    "handover_request": expect(EventKind.HANDOVER, f"handover:{PSID}:{T}", app_id=OTHER_APP),
    "app_roles": expect(EventKind.HANDOVER, f"handover::{T}", customer_id=None, app_id=None),
    "message_edit": expect(EventKind.EDITED, "edited:m_text_0001:1", message_id="m_text_0001",
                           text="Do you ship to Lille?"),
    "unicode": expect(MESSAGE, "m_unicode_0001", message_id="m_unicode_0001", content_type=ContentType.TEXT,
                      text="مرحبا! هل لديكم مقاس ٤٢؟ 👟🔥 café"),
}
# fmt: on


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parses_to_one_typed_event(name: str) -> None:
    events = messenger.parse(load(name))
    assert len(events) == 1
    event = events[0]
    assert {field: getattr(event, field) for field in CASES[name]} == CASES[name]
    entry = load(name)["entry"][0]
    assert event.raw == (entry.get("messaging") or entry["standby"])[0]  # the element as received


def test_every_fixture_is_covered() -> None:
    special = {"batch_two_pages", "feed_change"}
    assert {path.stem for path in FIXTURES.glob("*.json")} == set(CASES) | special


def test_only_customer_messages_and_taps_outside_standby_are_answerable() -> None:
    answerable = {name for name in CASES if messenger.parse(load(name))[0].answerable}
    expected_kinds = (EventKind.MESSAGE, EventKind.POSTBACK)
    assert answerable == {n for n, c in CASES.items() if c["kind"] in expected_kinds and not c["standby"]}
    assert "echo_inbox" not in answerable and "standby_message" not in answerable


def test_echoes_put_the_page_first_and_tell_our_app_from_the_inbox() -> None:
    ours, inbox = messenger.parse(load("echo_ours"))[0], messenger.parse(load("echo_inbox"))[0]
    assert (
        (ours.channel_external_id, ours.customer_id) == (inbox.channel_external_id, inbox.customer_id) == (PAGE, PSID)
    )
    assert ours.app_id == OUR_APP != inbox.app_id


def test_batch_of_two_pages_yields_every_event_of_every_entry() -> None:
    events = messenger.parse(load("batch_two_pages"))
    got = [(e.kind, e.channel_external_id, e.customer_id, e.event_key, e.timestamp_ms, e.text) for e in events]
    assert got == [
        (MESSAGE, PAGE, PSID, "m_batch_a1", T, "first page"),
        (MESSAGE, PAGE_B, PSID_B, "m_batch_b1", T + 1, "second page"),
        (EventKind.READ, PAGE_B, PSID_B, f"read:{PSID_B}:{T}", T + 2, None),
    ]


def test_page_feed_changes_become_unknown_events_keyed_by_content() -> None:
    body = load("feed_change")
    [event] = messenger.parse(body)
    change = body["entry"][0]["changes"][0]
    assert (event.kind, event.channel_external_id, event.customer_id) == (EventKind.UNKNOWN, PAGE, None)
    assert event.event_key == f"unknown:{digest(change)}"
    assert event.raw == change and event.timestamp_ms == T + 500 and not event.answerable


@pytest.mark.parametrize("name", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_event_keys_survive_a_retry(name: str) -> None:
    """Meta resends the same elements in a new envelope with a new `time`: the dedupe keys must not move."""
    body = load(name)
    retried = {**body, "entry": [{**entry, "time": entry["time"] + 30_000} for entry in body["entry"]]}
    assert [e.event_key for e in messenger.parse(retried)] == [e.event_key for e in messenger.parse(body)]


def test_lone_surrogate_in_the_sender_is_replaced_so_the_event_can_be_stored_and_answered() -> None:
    """Regression: a signed message whose ids or text held a lone surrogate was acknowledged, then failed every
    worker attempt (it cannot be encoded for OpenAI, Graph or PostgreSQL) and was dead-lettered."""
    body = load("quick_reply")
    element = body["entry"][0]["messaging"][0]
    element["sender"]["id"] = PSID + "\ud800"
    element["recipient"]["id"] = "\x00" + PAGE
    element["message"].update({"mid": "m_\udc00", "text": "Medium\x00"})
    element["message"]["quick_reply"]["payload"] = "SIZE_\ud83d"

    [event] = messenger.parse(body)

    assert event.kind is MESSAGE and event.answerable
    assert (event.channel_external_id, event.customer_id) == ("\ufffd" + PAGE, PSID + "\ufffd")
    assert event.event_key == event.message_id == "m_\ufffd"
    assert event.text == "Medium\ufffd" and event.button == ButtonReply("SIZE_\ufffd", "Medium\ufffd")
    assert event.raw["sender"]["id"] == PSID + "\ud800"  # raw keeps what was received
    assert_storable(event)


def test_nul_and_lone_surrogates_in_echoes_referrals_and_reactions_are_replaced() -> None:
    echo, referral, reaction = load("echo_ours"), load("ads_referral_message"), load("reaction")
    echo["entry"][0]["messaging"][0]["message"].update({"metadata": "nexus:\x00reply", "app_id": "9\ud800"})
    referral["entry"][0]["messaging"][0]["message"]["referral"].update({"ref": "ad-\udfff", "ad_id": "\x00"})
    reaction["entry"][0]["messaging"][0]["reaction"].update({"emoji": "\ud83d", "mid": "m_text_\x00"})

    [echoed], [referred], [reacted] = messenger.parse(echo), messenger.parse(referral), messenger.parse(reaction)

    assert (echoed.echo_metadata, echoed.app_id) == ("nexus:\ufffdreply", "9\ufffd")
    assert (referred.referral.ref, referred.referral.ad_id) == ("ad-\ufffd", "\ufffd")
    assert reacted.reaction == Reaction("m_text_\ufffd", "\ufffd", removed=False)
    assert reacted.event_key == f"reaction:m_text_\ufffd:react:love:{PSID}"
    for event in (echoed, referred, reacted):
        assert_storable(event)


# --- malformed input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, 42, "x", [], [{"entry": []}], True])
def test_a_body_that_is_not_an_object_is_one_unknown_event(body: Any) -> None:
    [event] = messenger.parse(body)
    assert (event.kind, event.channel_external_id, event.raw) == (EventKind.UNKNOWN, "", {"body": body})


@pytest.mark.parametrize("body", [{}, {"object": "page"}, {"object": "page", "entry": None}, {"entry": {"id": "1"}}])
def test_an_object_without_an_entry_list_is_one_unknown_event(body: dict[str, Any]) -> None:
    [event] = messenger.parse(body)
    assert (event.kind, event.raw, event.event_key) == (EventKind.UNKNOWN, body, f"unknown:{digest(body)}")


def test_an_empty_batch_is_no_event() -> None:
    assert messenger.parse({"object": "page", "entry": []}) == []


def test_broken_entries_and_elements_become_unknown_and_the_rest_still_parses() -> None:
    good = load("text")["entry"][0]
    body = {"object": "page", "entry": [None, {"id": 55, "messaging": [None, "x", {"message": "hi"}]}, good]}
    events = messenger.parse(body)
    assert [(e.kind, e.channel_external_id) for e in events] == [(EventKind.UNKNOWN, "")] + [
        (EventKind.UNKNOWN, "55")
    ] * 3 + [(MESSAGE, PAGE)]
    assert events[0].raw == {"entry": None} and events[1].raw == {"element": None}


def test_numbers_for_ids_become_strings_and_a_missing_mid_gets_a_content_key() -> None:
    element = {"sender": {"id": 7391}, "recipient": {"id": 1048}, "timestamp": T, "message": {"text": "hi"}}
    [event] = messenger.parse({"object": "page", "entry": [{"id": 1048, "time": T, "messaging": [element]}]})
    assert (event.kind, event.channel_external_id, event.customer_id) == (MESSAGE, "1048", "7391")
    assert event.event_key == f"message:{digest(element)}" and event.message_id is None


@pytest.mark.parametrize(
    ("event_time", "entry_time", "expected"),
    [
        (T, 1, T),
        (None, T, T),
        (None, 1767225600, T),  # entry time in seconds
        ("1767225600", None, T),  # seconds as a string (dashboard Test)
        ("2026-01-01T00:00:00+0000", None, T),  # ISO-8601 (Chatwoot fixtures)
        ("2026-01-01T00:00:00", None, T),  # naive ISO: Meta's clocks are UTC
        (math.nan, math.inf, 0),
        ("soon", [], 0),
        (-5, None, 0),
        (True, None, 0),
        (10**400, None, 0),
    ],
)
def test_timestamps_are_normalised_to_epoch_ms(event_time: Any, entry_time: Any, expected: int) -> None:
    element = {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "message": {"mid": "m1", "text": "t"}}
    if event_time is not None:
        element["timestamp"] = event_time
    [event] = messenger.parse({"object": "page", "entry": [{"id": PAGE, "time": entry_time, "messaging": [element]}]})
    assert event.timestamp_ms == expected


# --- robustness: every fixture, every key dropped, every value replaced ------------------------------------------


def test_mutation_helper_drops_and_replaces_at_every_level() -> None:
    variants = list(mutations({"a": {"b": 1}}))
    assert {} in variants and {"a": {}} in variants and {"a": None} in variants and {"a": {"b": "x"}} in variants


@pytest.mark.parametrize("name", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_no_mutation_of_a_fixture_makes_the_parser_raise(name: str) -> None:
    variants = [*REPLACEMENTS, *mutations(load(name))]
    assert len(variants) > 50
    for variant in variants:
        assert_well_formed(messenger.parse(variant))


# --- Meta's documented samples (shared/data/meta-samples) ---------------------------------------------------------

SAMPLE_KINDS: dict[str, list[EventKind]] = {
    "messenger_ads_referral_message.json": [MESSAGE],
    "messenger_batch_two_entries.json": [MESSAGE, MESSAGE],
    "messenger_delivery.json": [EventKind.DELIVERY],
    "messenger_echo.json": [ECHO],
    "messenger_fallback_link.json": [MESSAGE],
    "messenger_image_attachment.json": [MESSAGE],
    "messenger_pass_thread_control.json": [EventKind.HANDOVER],
    "messenger_postback.json": [EventKind.POSTBACK],
    "messenger_quick_reply.json": [MESSAGE],
    "messenger_reaction.json": [EventKind.REACTION],
    "messenger_read.json": [EventKind.READ],
    "messenger_referral_mme.json": [EventKind.REFERRAL],
    "messenger_reply_to.json": [MESSAGE],
    "messenger_standby_echo.json": [ECHO],
    "messenger_sticker.json": [MESSAGE],
    "messenger_text.json": [MESSAGE],
}


@pytest.mark.parametrize(("name", "kinds"), sorted(SAMPLE_KINDS.items()))
def test_documented_sample_parses_to_its_kinds(name: str, kinds: list[EventKind]) -> None:
    events = messenger.parse(json.loads((samples_dir() / name).read_text(encoding="utf-8")))
    assert [event.kind for event in events] == kinds
    assert_well_formed(events)


def test_every_sample_parses_without_error_with_both_parsers() -> None:
    paths = sorted(samples_dir().glob("messenger_*.json"))
    assert paths
    for path in paths:
        body = json.loads(path.read_text(encoding="utf-8"))
        events = messenger.parse(body)
        assert events, path.name
        assert_well_formed(events)
        assert_well_formed(instagram.parse(body))  # a misrouted body must not raise either


def test_batch_sample_yields_events_for_both_entries() -> None:
    body = json.loads((samples_dir() / "messenger_batch_two_entries.json").read_text(encoding="utf-8"))
    events = messenger.parse(body)
    assert [e.text for e in events] == ["test 1", "test 2"]
    assert len({e.event_key for e in events}) == 2


def test_sample_standby_echo_is_a_standby_template_echo() -> None:
    body = json.loads((samples_dir() / "messenger_standby_echo.json").read_text(encoding="utf-8"))
    [event] = messenger.parse(body)
    assert (event.kind, event.standby, event.content_type, event.app_id) == (
        ECHO,
        True,
        ContentType.TEMPLATE,
        "<APPID>",
    )
    assert (event.channel_external_id, event.customer_id) == ("<PAGE_ID>", "<PSID>")
