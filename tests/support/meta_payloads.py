"""What the parser tests of the three platforms share: the fixtures' clock, Meta's documented samples, and the
mutations that check no malformed body makes a parser raise."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.events import InboundEvent
from tests.support.paths import META_SAMPLES

T = 1767225600000  # 2026-01-01T00:00:00Z, the fixtures' clock
# Meta's documented webhook bodies live in ../shared beside the checkout, not in this repository (they are not
# ours to copy): the tests that read them skip, saying so, where that folder is absent.
SAMPLES_MISSING = f"Meta's documented samples are not beside this checkout ({META_SAMPLES} is absent)"


def samples_dir() -> Path:
    if not META_SAMPLES.is_dir():
        pytest.skip(SAMPLES_MISSING)
    return META_SAMPLES


def digest(element: Any) -> str:
    return hashlib.sha256(json.dumps(element, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# The brief's replacements, plus a bool (an int subclass) and NaN (json.loads accepts it).
REPLACEMENTS: tuple[Any, ...] = (None, 42, "x", [], {}, True, math.nan)


def mutations(node: Any) -> Iterator[Any]:
    """Every copy of `node` with one key dropped or one value replaced, at every nesting level."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield {k: v for k, v in node.items() if k != key}
            for variant in (*REPLACEMENTS, *mutations(value)):
                yield {**node, key: variant}
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node[:index] + node[index + 1 :]
            for variant in (*REPLACEMENTS, *mutations(value)):
                yield [*node[:index], variant, *node[index + 1 :]]


def assert_well_formed(events: Any) -> None:
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, InboundEvent)
        assert isinstance(event.event_key, str) and event.event_key
        assert isinstance(event.channel_external_id, str) and isinstance(event.timestamp_ms, int)
        assert event.customer_id is None or isinstance(event.customer_id, str)
        assert event.message_id is None or isinstance(event.message_id, str)
        assert event.app_id is None or isinstance(event.app_id, str)
