"""Instagram messaging webhook parsing: our own fixtures per event type, Meta's documented samples, malformed bodies.

The fixtures under tests/fixtures/meta/instagram/ are written from the documented formats with invented ids and
text. The mutation helpers come from the Messenger tests: both parsers share one walker and one contract.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters import instagram, messenger
from adapters.events import Attachment, ButtonReply, ContentType, EventKind, Platform, Reaction, Referral
from tests.support.event_text import assert_storable
from tests.support.meta_payloads import REPLACEMENTS, T, assert_well_formed, digest, mutations, samples_dir
from tests.support.paths import META_FIXTURES

FIXTURES = META_FIXTURES / "instagram"

IGID, IGID_B = "17841400000000001", "17841400000000002"
IGSID, IGSID_B = "6543000000000001", "6543000000000002"
CDN = "https://lookaside.example.test"

MESSAGE, ECHO = EventKind.MESSAGE, EventKind.ECHO


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def expect(kind: EventKind, key: str, **fields: Any) -> dict[str, Any]:
    """The typed fields every case pins; unlisted ones must keep their defaults."""
    base = {
        "platform": Platform.INSTAGRAM,
        "kind": kind,
        "event_key": key,
        "channel_external_id": IGID,
        "customer_id": IGSID,
        "message_id": None,
        "timestamp_ms": T,
        "content_type": None,
        "text": None,
        "button": None,
        "reaction": None,
        "standby": False,
    }
    return base | fields


def message(mid: str, content_type: ContentType, **fields: Any) -> dict[str, Any]:
    return expect(MESSAGE, mid, message_id=mid, content_type=content_type, **fields)


def media(kind: str, ext: str, offset: int) -> dict[str, Any]:
    attachment = Attachment(type=kind, url=f"{CDN}/ig_messaging_cdn/{kind}/0001.{ext}")
    return message(f"aWdfZAG1_{kind}_0001", ContentType(kind), timestamp_ms=T + offset, attachments=(attachment,))


# fmt: off
CASES: dict[str, dict[str, Any]] = {
    "text": message("aWdfZAG1_text_0001", ContentType.TEXT, text="Do you have this in blue?", attachments=(),
                    reply_to_message_id=None, referral=None, app_id=None),
    "image": media("image", "jpg", 10),
    "audio": media("audio", "mp4", 11),
    "video": media("video", "mp4", 12),
    "file": media("file", "pdf", 13),
    # Instagram documents `image` as "image or sticker"; a sticker_id tells them apart, as on Messenger.
    "sticker": message("aWdfZAG1_sticker_0001", ContentType.STICKER,
                       attachments=(Attachment("image", url=f"{CDN}/sticker/heart.png"),)),
    "share": message("aWdfZAG1_share_0001", ContentType.SHARE,
                     attachments=(Attachment("share", url=f"{CDN}/share/post.jpg"),)),
    "ig_reel": message("aWdfZAG1_reel_0001", ContentType.SHARE,
                       attachments=(Attachment("ig_reel", url=f"{CDN}/reel/0001.mp4", title="How we dye our wool"),)),
    "reel": message("aWdfZAG1_reel_0002", ContentType.SHARE,
                    attachments=(Attachment("reel", url=f"{CDN}/reel/0002.mp4"),)),
    # Disappearing media: no url, no way to know what it was.
    "ephemeral": message("aWdfZAG1_ephemeral_0001", ContentType.OTHER, attachments=(Attachment("ephemeral"),)),
    "story_mention": message("aWdfZAG1_mention_0001", ContentType.STORY_MENTION,
                             attachments=(Attachment("story_mention", url=f"{CDN}/story/0001.jpg"),)),
    # A story reply is text; the story it answers is kept as a "story" attachment (it is not a message).
    "story_reply": message("aWdfZAG1_storyreply_0001", ContentType.TEXT, text="Love this colour!",
                           reply_to_message_id=None,
                           attachments=(Attachment("story", url=f"{CDN}/story/0002.jpg"),)),
    "reply_to": message("aWdfZAG1_reply_0002", ContentType.TEXT, text="and this one?",
                        reply_to_message_id="aWdfZAG1_reply_0001"),
    "quick_reply": message("aWdfZAG1_qr_0001", ContentType.BUTTON, text="Blue",
                           button=ButtonReply(payload="COLOUR_BLUE", title="Blue")),
    "ads_referral_message": message("aWdfZAG1_ad_0001", ContentType.TEXT, text="Price?",
                                    referral=Referral(source="ADS", type="OPEN_THREAD", ref="ctd-1",
                                                      ad_id="120200000000001")),
    "postback_icebreaker": expect(EventKind.POSTBACK, f"postback:{IGSID}:{T}:ICEBREAKER_ORDER",
                                  text="Where is my order?",
                                  button=ButtonReply(payload="ICEBREAKER_ORDER", title="Where is my order?")),
    "postback": expect(EventKind.POSTBACK, "aWdfZAG1_postback_0001", message_id="aWdfZAG1_postback_0001",
                       text="See prices", button=ButtonReply(payload="PRICES", title="See prices")),
    "reaction": expect(EventKind.REACTION, f"reaction:aWdfZAG1_text_0001:react:love:{IGSID}",
                       message_id="aWdfZAG1_text_0001",
                       reaction=Reaction(target_message_id="aWdfZAG1_text_0001", emoji="\u2764\ufe0f", removed=False)),
    # Instagram un-reactions name neither the reaction nor the emoji.
    "unreact": expect(EventKind.REACTION, f"reaction:aWdfZAG1_text_0001:unreact::{IGSID}",
                      message_id="aWdfZAG1_text_0001", timestamp_ms=T + 60,
                      reaction=Reaction(target_message_id="aWdfZAG1_text_0001", emoji=None, removed=True)),
    "seen": expect(EventKind.READ, f"read:{IGSID}:aWdfZAG1_out_0001", message_id="aWdfZAG1_out_0001",
                   timestamp_ms=T + 5),
    "echo": expect(ECHO, "aWdfZAG1_echo_0001", message_id="aWdfZAG1_echo_0001", content_type=ContentType.TEXT,
                   text="Yes, in blue and green.", app_id=None),
    "self_echo": expect(ECHO, "aWdfZAG1_self_0001", message_id="aWdfZAG1_self_0001", customer_id=IGSID_B,
                        content_type=ContentType.TEXT, text="testing my own automation"),
    # Self messaging: the received side is an ordinary message (the account previews its own automation).
    "self_message": message("aWdfZAG1_self_0002", ContentType.TEXT, customer_id=IGSID_B,
                            text="testing my own automation"),
    "deleted": expect(EventKind.DELETED, "deleted:aWdfZAG1_text_0001", message_id="aWdfZAG1_text_0001",
                      timestamp_ms=T + 90),
    "unsupported": expect(EventKind.UNSUPPORTED, "aWdfZAG1_unsupported_0001",
                          message_id="aWdfZAG1_unsupported_0001"),
    "referral": expect(EventKind.REFERRAL, f"referral:{IGSID}:{T}",
                       referral=Referral(source="SHORTLINKS", type="OPEN_THREAD", ref="bio-link")),
    "standby": message("aWdfZAG1_standby_0001", ContentType.TEXT, text="still waiting", standby=True),
    # The App Dashboard Test button: changes[] instead of messaging[], seconds (as a string) instead of ms.
    "dashboard_test": message("random_mid", ContentType.TEXT, text="random_text", channel_external_id="23245",
                              customer_id="12334", timestamp_ms=T - 1000),
    "unicode": message("aWdfZAG1_unicode_0001", ContentType.TEXT, text="السلام عليكم 🌙✨ ¿talla M?"),
}
# fmt: on


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parses_to_one_typed_event(name: str) -> None:
    [event] = instagram.parse(load(name))
    assert {field: getattr(event, field) for field in CASES[name]} == CASES[name]
    assert event.raw


def test_every_fixture_is_covered() -> None:
    special = {"batch_two_accounts", "comment_change"}
    assert {path.stem for path in FIXTURES.glob("*.json")} == set(CASES) | special


def test_echoes_and_deletions_are_never_answered() -> None:
    for name in ("echo", "self_echo", "deleted", "unsupported", "standby", "seen", "reaction"):
        assert not instagram.parse(load(name))[0].answerable, name
    for name in ("text", "story_mention", "story_reply", "quick_reply", "postback_icebreaker", "self_message"):
        assert instagram.parse(load(name))[0].answerable, name


def test_batch_of_two_accounts_yields_every_event_of_every_entry() -> None:
    events = instagram.parse(load("batch_two_accounts"))
    got = [(e.kind, e.channel_external_id, e.customer_id, e.event_key, e.timestamp_ms) for e in events]
    assert got == [
        (MESSAGE, IGID, IGSID, "aWdfZAG1_batch_a1", T),
        (MESSAGE, IGID_B, IGSID_B, "aWdfZAG1_batch_b1", T + 1),
        (EventKind.REACTION, IGID_B, IGSID_B, f"reaction:aWdfZAG1_batch_b0:react:like:{IGSID_B}", T + 2),
    ]
    assert events[2].reaction == Reaction(target_message_id="aWdfZAG1_batch_b0", emoji="👍", removed=False)


def test_comment_changes_are_kept_as_unknown_events() -> None:
    body = load("comment_change")
    [event] = instagram.parse(body)
    change = body["entry"][0]["changes"][0]
    assert (event.kind, event.channel_external_id, event.customer_id) == (EventKind.UNKNOWN, IGID, None)
    assert (event.event_key, event.raw) == (f"unknown:{digest(change)}", change)


def test_dashboard_test_shape_is_only_a_message_on_instagram() -> None:
    assert [e.kind for e in messenger.parse(load("dashboard_test"))] == [EventKind.UNKNOWN]


@pytest.mark.parametrize("name", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_event_keys_survive_a_retry(name: str) -> None:
    body = load(name)
    retried = {**body, "entry": [{**entry, "time": entry["time"] + 30_000} for entry in body["entry"]]}
    assert [e.event_key for e in instagram.parse(retried)] == [e.event_key for e in instagram.parse(body)]


def test_lone_surrogate_in_a_story_reply_is_replaced_so_the_event_can_be_stored_and_answered() -> None:
    """Regression: a signed message whose ids or text held a lone surrogate was acknowledged, then failed every
    worker attempt (it cannot be encoded for OpenAI, Graph or PostgreSQL) and was dead-lettered."""
    body = load("story_reply")
    element = body["entry"][0]["messaging"][0]
    element["sender"]["id"] = "\ud800" + IGSID
    element["message"].update({"mid": "aWdf\x00", "text": "Love \udc00this"})
    element["message"]["reply_to"]["story"]["url"] = f"{CDN}/story/\x00.jpg"

    [event] = instagram.parse(body)

    assert event.kind is MESSAGE and event.answerable
    assert (event.customer_id, event.event_key, event.text) == ("\ufffd" + IGSID, "aWdf\ufffd", "Love \ufffdthis")
    assert event.attachments == (Attachment("story", url=f"{CDN}/story/\ufffd.jpg"),)
    assert event.raw["message"]["mid"] == "aWdf\x00"  # raw keeps what was received
    assert_storable(event)


def test_nul_and_lone_surrogates_in_a_postback_are_replaced() -> None:
    body = load("postback")
    body["entry"][0]["messaging"][0]["postback"].update({"title": "See\x00prices", "payload": "PRICES\udbff"})

    [event] = instagram.parse(body)

    assert (event.kind, event.text) == (EventKind.POSTBACK, "See\ufffdprices")
    assert event.button == ButtonReply("PRICES\ufffd", "See\ufffdprices")
    assert_storable(event)


@pytest.mark.parametrize("body", [None, "x", [], {}, {"object": "instagram", "entry": "nope"}])
def test_a_body_without_an_entry_list_is_one_unknown_event(body: Any) -> None:
    [event] = instagram.parse(body)
    assert (event.kind, event.platform, event.channel_external_id) == (EventKind.UNKNOWN, Platform.INSTAGRAM, "")


@pytest.mark.parametrize("name", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_no_mutation_of_a_fixture_makes_the_parser_raise(name: str) -> None:
    variants = [*REPLACEMENTS, *mutations(load(name))]
    assert len(variants) > 50
    for variant in variants:
        assert_well_formed(instagram.parse(variant))


# --- Meta's documented samples (shared/data/meta-samples) ---------------------------------------------------------

SAMPLE_KINDS: dict[str, list[EventKind]] = {
    "instagram_dashboard_test_changes.json": [MESSAGE],
    "instagram_deleted.json": [EventKind.DELETED],
    "instagram_ephemeral_media.json": [MESSAGE],
    "instagram_icebreaker_postback.json": [EventKind.POSTBACK],
    "instagram_messaging_seen.json": [EventKind.READ],
    "instagram_postback_generic_template.json": [EventKind.POSTBACK],
    "instagram_quick_reply.json": [MESSAGE],
    "instagram_reaction.json": [EventKind.REACTION],
    "instagram_referral_igme.json": [EventKind.REFERRAL],
    "instagram_self_echo.json": [ECHO],
    "instagram_share_attachment.json": [MESSAGE],
    "instagram_standby.json": [MESSAGE],
    "instagram_story_mention.json": [MESSAGE],
    "instagram_story_reply.json": [MESSAGE],
    "instagram_text_chatwoot.json": [MESSAGE],
    "instagram_unsupported.json": [EventKind.UNSUPPORTED],
}


def load_sample(name: str) -> dict[str, Any]:
    return json.loads((samples_dir() / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "kinds"), sorted(SAMPLE_KINDS.items()))
def test_documented_sample_parses_to_its_kinds(name: str, kinds: list[EventKind]) -> None:
    events = instagram.parse(load_sample(name))
    assert [event.kind for event in events] == kinds
    assert_well_formed(events)


def test_every_sample_parses_without_error_with_both_parsers() -> None:
    paths = sorted(samples_dir().glob("instagram_*.json"))
    assert paths
    for path in paths:
        body = json.loads(path.read_text(encoding="utf-8"))
        events = instagram.parse(body)
        assert events, path.name
        assert_well_formed(events)
        assert_well_formed(messenger.parse(body))  # a misrouted body must not raise either


def test_sample_content_types_and_sides() -> None:
    def one(name: str) -> Any:
        [event] = instagram.parse(load_sample(name))
        return event

    assert one("instagram_story_mention.json").content_type == ContentType.STORY_MENTION
    assert one("instagram_share_attachment.json").content_type == ContentType.SHARE
    assert one("instagram_ephemeral_media.json").content_type == ContentType.OTHER
    assert one("instagram_standby.json").standby
    echo = one("instagram_self_echo.json")
    assert (echo.channel_external_id, echo.customer_id) == ("<YOUR_APP_USERS_IG_USER_ID>", "<INSTAGRAM_SCOPED_ID>")
    test = one("instagram_dashboard_test_changes.json")
    assert (test.channel_external_id, test.customer_id, test.timestamp_ms) == ("23245", "12334", 1527459824000)
    # Chatwoot's factories use ISO-8601 times; real payloads use epoch ms.
    assert one("instagram_text_chatwoot.json").timestamp_ms == 1631082844000
