"""Inbox codec benchmark: microseconds to encode and to decode one event, next to the previous codec as baseline.

    python -m bench.codec                          # best of 7 runs of 20,000 calls each
    python -m bench.codec --number 5000 --repeat 5

Every webhook event is encoded once when it is acknowledged (`event_to_json`, into the inbox) and decoded by the
worker that answers it (`event_from_json`). Measured on events parsed from the project's WhatsApp fixtures
(tests/fixtures/meta/whatsapp/):
  - text: one text message (text.json), the common case;
  - unicode: a text in Arabic with emoji and a non-ASCII profile name (unicode_text.json), which the baseline
    writes as ASCII escapes;
  - contacts: two shared contact cards with phones and emails (contacts.json), the largest single event: more
    nested parts and a larger `raw`.
New: adapters/events.py, pydantic's TypeAdapter over the event dataclasses (UTF-8 JSON). Baseline: the previous
implementation (tests/support/previous_codec.py, also read by the codec's compatibility tests): json.dumps
(ensure_ascii) of a walk of the dataclasses, and json.loads followed by a field-by-field rebuild. Each side decodes
what it encoded itself. Each figure is the best of --repeat timeit runs of --number calls, in microseconds per
call: the best run is the one least disturbed by
the rest of the machine. One process, one core; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

from adapters import whatsapp
from adapters.events import (
    InboundEvent,
    event_from_json,
    event_to_json,
)
from tests.support.previous_codec import previous_event_from_json, previous_event_to_json

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "meta" / "whatsapp"
EVENTS = {"text": "text.json", "unicode": "unicode_text.json", "contacts": "contacts.json"}


# --- measuring ----------------------------------------------------------------------------------------------------


def best_us(call: Callable[[], object], number: int, repeat: int) -> float:
    """Microseconds per call in the fastest of `repeat` runs of `number` calls (timeit turns gc off meanwhile)."""
    return min(timeit.Timer(call).repeat(repeat=repeat, number=number)) / number * 1e6


def load_event(filename: str) -> InboundEvent:
    [event] = whatsapp.parse(json.loads((FIXTURES / filename).read_text(encoding="utf-8")))
    return event


# event, bytes (baseline, new), encode (baseline, new, gain), decode (baseline, new, gain)
ROW = "{:<9} {:>6} {:>6}   {:>9} {:>7} {:>6}   {:>9} {:>7} {:>6}"


def measure(name: str, event: InboundEvent, number: int, repeat: int) -> str:
    old_text, new_text = previous_event_to_json(event), event_to_json(event)
    # A codec that answers wrong would be fast for nothing: both must give the event back before they are timed.
    for decoded in (previous_event_from_json(old_text), event_from_json(new_text), event_from_json(old_text)):
        if decoded != event or decoded.raw != event.raw:
            raise SystemExit(f"{name}: a codec did not give the event back")
    old_encode = best_us(lambda: previous_event_to_json(event), number, repeat)
    new_encode = best_us(lambda: event_to_json(event), number, repeat)
    old_decode = best_us(lambda: previous_event_from_json(old_text), number, repeat)
    new_decode = best_us(lambda: event_from_json(new_text), number, repeat)
    return ROW.format(
        name,
        len(old_text.encode()),
        len(new_text.encode()),
        f"{old_encode:.2f}",
        f"{new_encode:.2f}",
        f"{old_encode / new_encode:.1f}x",
        f"{old_decode:.2f}",
        f"{new_decode:.2f}",
        f"{old_decode / new_decode:.1f}x",
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timed run (20000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs; the fastest is reported (7)")
    args = parser.parse_args(argv)
    if args.number < 1 or args.repeat < 1:
        parser.error("--number and --repeat must be positive")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    print(f"inbox codec: us per event, best of {args.repeat} runs of {args.number:,} calls")
    print(ROW.format("", "bytes", "", "encode us", "", "", "decode us", "", "").rstrip())
    print(ROW.format("event", "base", "new", "baseline", "new", "gain", "baseline", "new", "gain"))
    for name, filename in EVENTS.items():
        print(measure(name, load_event(filename), args.number, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
