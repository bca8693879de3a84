"""The inbox codec: every fixture round-trips, and rows written before the pydantic codec still read the same.

Inbox rows outlive a deploy: pending events written by the previous encoder are decoded by the new one, and after
a rollback the previous decoder reads what the new encoder wrote. Both previous functions are copied here, as they
were, to pin that in both directions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import ValidationError

from adapters import instagram, messenger, whatsapp
from adapters.events import (
    ContentType,
    EventKind,
    InboundEvent,
    Location,
    Platform,
    PlatformError,
    SharedContact,
    event_from_json,
    event_to_json,
)
from tests.support.paths import META_FIXTURES
from tests.support.previous_codec import previous_event_from_json, previous_event_to_json

FIXTURES = META_FIXTURES
PARSERS: dict[str, Callable[[Any], list[InboundEvent]]] = {
    "messenger": messenger.parse,
    "instagram": instagram.parse,
    "whatsapp": whatsapp.parse,
}


# --- every fixture of the three platforms ------------------------------------------------------------------------


def fixture_events() -> list[tuple[str, InboundEvent]]:
    found = []
    for platform, parse in PARSERS.items():
        for path in sorted((FIXTURES / platform).glob("*.json")):
            events = parse(json.loads(path.read_text(encoding="utf-8")))
            found += [(f"{platform}/{path.stem}/{index}", event) for index, event in enumerate(events)]
    return found


EVENTS = fixture_events()
IDS = [name for name, _ in EVENTS]
TEXT = next(e for name, e in EVENTS if name == "whatsapp/text/0")


def same(decoded: InboundEvent, event: InboundEvent) -> None:
    assert decoded == event
    assert decoded.raw == event.raw  # `raw` takes no part in ==
    assert type(decoded.raw) is dict


def test_the_fixtures_cover_every_platform_and_the_nested_parts() -> None:
    assert {name.split("/")[0] for name in IDS} == set(PARSERS)
    assert any(e.contacts and e.contacts[0].phones for _, e in EVENTS) and any(e.status for _, e in EVENTS)


@pytest.mark.parametrize("event", [e for _, e in EVENTS], ids=IDS)
def test_every_fixture_event_round_trips(event: InboundEvent) -> None:
    same(event_from_json(event_to_json(event)), event)


@pytest.mark.parametrize("event", [e for _, e in EVENTS], ids=IDS)
def test_a_row_written_by_the_previous_encoder_decodes_to_the_same_event(event: InboundEvent) -> None:
    same(event_from_json(previous_event_to_json(event)), event)


@pytest.mark.parametrize("event", [e for _, e in EVENTS], ids=IDS)
def test_after_a_rollback_the_previous_decoder_reads_what_the_new_encoder_wrote(event: InboundEvent) -> None:
    same(previous_event_from_json(event_to_json(event)), event)


# A WhatsApp text row as the previous encoder stored it: ASCII escapes for the emoji (a surrogate pair) and for
# the lone surrogate that the `raw` payload carried.
OLD_ROW = (
    '{"platform":"whatsapp","kind":"message","channel_external_id":"110200300400500","customer_id":"447700900123",'
    '"event_key":"wamid.TXT001","message_id":"wamid.TXT001","timestamp_ms":1767225600000,"content_type":"text",'
    '"text":"Caf\\u00e9? \\ud83d\\udc4d","attachments":[],"location":{"latitude":38.0,"longitude":-9.1393,'
    '"name":null,"address":null},"contacts":[{"name":"Grace","phones":["+1 202"],"emails":[]}],"button":null,'
    '"reaction":null,"status":null,"referral":null,"reply_to_message_id":null,"app_id":null,"echo_metadata":null,'
    '"customer_name":"Ada Lovelace","standby":false,"errors":[{"code":131051,"title":"t","message":null}],'
    '"raw":{"from":"447700900123","id":"wamid.TXT001","text":{"body":"Caf\\u00e9? \\ud83d\\udc4d \\ud800"}}}'
)


def test_a_pinned_row_of_the_previous_encoder_decodes_field_for_field() -> None:
    event = event_from_json(OLD_ROW)

    assert event == InboundEvent(
        platform=Platform.WHATSAPP,
        kind=EventKind.MESSAGE,
        channel_external_id="110200300400500",
        customer_id="447700900123",
        event_key="wamid.TXT001",
        message_id="wamid.TXT001",
        timestamp_ms=1767225600000,
        content_type=ContentType.TEXT,
        text="Café? 👍",
        location=Location(38.0, -9.1393),
        contacts=(SharedContact("Grace", ("+1 202",)),),
        customer_name="Ada Lovelace",
        errors=(PlatformError(131051, "t", None),),
    )
    assert event.raw == {"from": "447700900123", "id": "wamid.TXT001", "text": {"body": "Café? 👍 \ud800"}}
    assert event == previous_event_from_json(OLD_ROW) and event.raw == previous_event_from_json(OLD_ROW).raw
    assert previous_event_to_json(event) == OLD_ROW  # the literal is what the previous encoder wrote


def test_an_old_row_with_a_lone_surrogate_in_an_id_decodes_as_before() -> None:
    """Decoding restores what was stored; cleaning belongs to the parsers, which wrote no such row since."""
    event = replace(TEXT, customer_id="4477\ud800", raw={"from": "4477\ud800"})
    same(event_from_json(previous_event_to_json(event)), event)


# --- what only `raw` can hold -------------------------------------------------------------------------------------


def test_new_rows_are_utf8_not_ascii_escaped() -> None:
    event = replace(TEXT, text="Café 👍")
    assert '"text":"Café 👍"' in event_to_json(event)


def test_a_lone_surrogate_kept_in_raw_is_written_escaped_and_read_back() -> None:
    event = replace(TEXT, raw={**TEXT.raw, "from": "4477\ud800"})

    stored = event_to_json(event)

    assert stored.isascii() and "\\ud800" in stored
    same(event_from_json(stored), event)


def test_a_raw_mapping_that_is_not_a_dict_is_stored_as_a_dict() -> None:
    event = replace(TEXT, raw=MappingProxyType({"from": "447700900123", "note": "\ud800"}))
    assert event_from_json(event_to_json(event)).raw == {"from": "447700900123", "note": "\ud800"}
    event = replace(TEXT, raw=MappingProxyType({"from": "447700900123"}))
    assert event_from_json(event_to_json(event)).raw == {"from": "447700900123"}


def test_nan_in_raw_is_written_as_null_and_an_old_row_with_nan_still_reads() -> None:
    event = replace(TEXT, raw={"x": math.nan, "y": math.inf})
    assert event_from_json(event_to_json(event)).raw == {"x": None, "y": None}  # standard JSON, unlike before
    assert math.isnan(event_from_json(previous_event_to_json(event)).raw["x"])


@pytest.mark.parametrize("row", ["{}", '{"platform": "fax"}', '{"platform": "whatsapp", "raw": "\\udc00"}'])
def test_a_row_that_is_not_an_event_raises_a_validation_error(row: str) -> None:
    with pytest.raises(ValidationError):
        event_from_json(row)


def test_a_row_that_is_not_json_raises_a_value_error() -> None:
    with pytest.raises(ValueError, match="Expecting value"):
        event_from_json("not json")
