"""NUL characters and lone surrogates never leave the adapter edge: the rule, and every parser.

The per-platform regressions (a poisoned `from`, sender, mid, text...) live in tests/adapters/test_parse_*.py; here
the same contract is checked for every string of every fixture of the three platforms, so a parser that one day
reads a string without `as_str` / `as_id` fails here, whatever field it fills. That such a message is then answered
rather than dead-lettered is the channel worker's to show (tests/core/test_channel_worker.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import instagram, messenger, whatsapp
from adapters.events import InboundEvent
from adapters.text_clean import clean_text
from tests.support.event_text import assert_storable, event_strings
from tests.support.paths import META_FIXTURES

FIXTURES = META_FIXTURES
PARSERS: dict[str, Callable[[Any], list[InboundEvent]]] = {
    "messenger": messenger.parse,
    "instagram": instagram.parse,
    "whatsapp": whatsapp.parse,
}


@pytest.mark.parametrize(
    ("received", "cleaned"),
    [
        ("plain ascii", "plain ascii"),
        ("café 👟 مرحبا", "café 👟 مرحبا"),
        ("nul\x00inside", "nul\ufffdinside"),
        ("\x00", "\ufffd"),  # still a value: a "missing" check decides as it did on what was received
        ("lead \ud83d alone", "lead \ufffd alone"),
        ("trail \udc4d alone", "trail \ufffd alone"),
        ("\udc4d\ud83d", "\ufffd\ufffd"),  # reversed halves are two lone surrogates, not a pair
        ("emoji 👍 kept, \ud800 not", "emoji 👍 kept, \ufffd not"),
    ],
)
def test_nul_and_lone_surrogates_become_the_replacement_character(received: str, cleaned: str) -> None:
    assert clean_text(received) == cleaned
    clean_text(received).encode("utf-8")


def test_clean_text_returns_the_same_object_when_nothing_needs_cleaning() -> None:
    for text in ("447700900123", "café crème"):
        assert clean_text(text) is text


def test_json_joins_an_escaped_surrogate_pair_so_only_lone_ones_are_replaced() -> None:
    assert clean_text(json.loads('"\\ud83d\\udc4d \\ud83d"')) == "👍 \ufffd"


def poisoned_strings(node: Any) -> Iterator[Any]:
    """Copies of `node` with one string leaf, at any depth, given a NUL and a lone surrogate."""
    if isinstance(node, str):
        yield f"{node[:1]}\x00{node[1:]}\ud800"
    elif isinstance(node, dict):
        for key, value in node.items():
            for variant in poisoned_strings(value):
                yield {**node, key: variant}
    elif isinstance(node, list):
        for index, value in enumerate(node):
            for variant in poisoned_strings(value):
                yield [*node[:index], variant, *node[index + 1 :]]


def fixtures() -> list[tuple[str, Path]]:
    return [(platform, path) for platform in PARSERS for path in sorted((FIXTURES / platform).glob("*.json"))]


@pytest.mark.parametrize(("platform", "path"), fixtures(), ids=lambda v: v if isinstance(v, str) else v.stem)
def test_every_string_of_every_fixture_reaches_the_event_clean(platform: str, path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    variants = list(poisoned_strings(body))
    assert variants
    for variant in variants:
        for event in PARSERS[platform](variant):
            assert_storable(event)


@pytest.mark.parametrize(("platform", "path"), fixtures(), ids=lambda v: v if isinstance(v, str) else v.stem)
def test_a_clean_fixture_parses_to_the_same_strings_as_before(platform: str, path: Path) -> None:
    """Cleaning is a no-op on what Meta normally sends: the same string objects come through."""
    body = json.loads(path.read_text(encoding="utf-8"))
    for event in PARSERS[platform](body):
        assert all(clean_text(text) is text for _, text in event_strings(event))
