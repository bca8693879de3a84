"""Where the tests find the project's files: its data directory, the Meta payload fixtures, Meta's own samples."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PROJECT_ROOT = TESTS.parent
PROJECT_DATA = PROJECT_ROOT / "data"
# Our own payloads per event type, written from Meta's documented formats (tests/fixtures/meta/<platform>/).
META_FIXTURES = TESTS / "fixtures" / "meta"
# Meta's documented samples, checked out beside the repository (not part of it): the parser tests skip without them.
META_SAMPLES = PROJECT_ROOT.parent / "shared" / "data" / "meta-samples"
