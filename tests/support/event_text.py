"""Support for the parser tests: every string an `InboundEvent` carries, and the check that each can be stored.

"Storable" is what PostgreSQL text columns and the Graph API need: valid UTF-8 (no lone surrogate) and no NUL.
`raw`, the payload as received, is left out on purpose: it keeps what Meta sent, and the inbox codec escapes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any

from adapters.events import InboundEvent, event_from_json, event_to_json


def event_strings(value: Any, path: str = "event") -> Iterator[tuple[str, str]]:
    """(path, string) for every string field of an event and of its parts, at any depth, except `raw`."""
    if isinstance(value, str):
        yield path, value
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            if f.name != "raw":
                yield from event_strings(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from event_strings(item, f"{path}[{index}]")


def assert_storable(event: InboundEvent) -> None:
    """Every string of the event encodes to UTF-8 without NUL, and the event survives the inbox round trip."""
    for path, text in event_strings(event):
        assert "\x00" not in text, path
        text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate, naming the character
    stored = event_to_json(event)
    stored.encode("utf-8")
    back = event_from_json(stored)
    assert back == event
    assert back.raw == event.raw  # `raw` takes no part in ==; it must come back as received all the same
