"""Reply splitting: limits met, preferred cut points, and no grapheme or surrogate ever cut in two."""

from __future__ import annotations

import random

import pytest
import regex

from adapters.text_split import (
    INSTAGRAM_MAX_CHARS,
    INSTAGRAM_MAX_UTF8_BYTES,
    MESSENGER_MAX_CHARS,
    WHATSAPP_MAX_CHARS,
    split_text,
)

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, 7 code points, 11 UTF-16 units, 25 UTF-8 bytes
FLAG = "🇫🇷"
THUMB = "👍🏽"
ACCENTED = "e\u0301"  # e + combining acute
HANGUL = "\u1112\u1161\u11ab"  # 한 as conjoining jamo: one grapheme, three code points
ARABIC = "مرحبا بك في متجرنا"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def squeeze(text: str) -> str:
    return "".join(text.split())


def boundaries(text: str) -> set[int]:
    offsets, at = {0}, 0
    for grapheme in regex.findall(r"\X", text):
        at += len(grapheme)
        offsets.add(at)
    return offsets


def assert_valid(text: str, chunks: list[str], max_chars: int | None = None, max_bytes: int | None = None) -> None:
    """Every invariant at once: limits, no empty or padded chunk, order and content kept, grapheme-aligned cuts."""
    assert all(chunk and chunk == chunk.strip() for chunk in chunks)
    if max_chars is not None:
        assert all(utf16_len(chunk) <= max_chars and len(chunk) <= max_chars for chunk in chunks)
    if max_bytes is not None:
        assert all(len(chunk.encode("utf-8")) <= max_bytes for chunk in chunks)
    assert squeeze(" ".join(chunks)) == squeeze(text)
    assert squeeze("\n".join(chunks)) == squeeze(text)
    allowed, position = boundaries(text), 0
    for chunk in chunks:
        start = text.index(chunk, position)
        assert start in allowed and start + len(chunk) in allowed, f"chunk cuts a grapheme: {chunk[:20]!r}"
        position = start + len(chunk)


def test_platform_limits_are_exported() -> None:
    assert MESSENGER_MAX_CHARS == 1999
    assert INSTAGRAM_MAX_UTF8_BYTES == 1000 and INSTAGRAM_MAX_CHARS == 999
    assert WHATSAPP_MAX_CHARS == 4096


@pytest.mark.parametrize("text", ["Hello!", "  Hello, world.\n\n", f"{FAMILY} {FLAG} {ARABIC}", "x" * 1999])
def test_text_within_limits_is_one_stripped_chunk(text: str) -> None:
    assert split_text(text, max_chars=1999, max_utf8_bytes=10_000) == [text.strip()]


def test_no_limits_means_one_chunk() -> None:
    text = "word " * 10_000
    assert split_text(text) == [text.strip()]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t "])
def test_blank_text_gives_no_chunks(text: str) -> None:
    assert split_text(text, max_chars=10) == []


@pytest.mark.parametrize("kwargs", [{"max_chars": 1}, {"max_utf8_bytes": 3}, {"max_chars": 0}])
def test_limits_too_small_for_any_character_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        split_text("hello", **kwargs)


def test_paragraph_break_is_preferred() -> None:
    text = "First paragraph. It has two sentences.\n\nSecond one.\nWith a line. And more words here"
    chunks = split_text(text, max_chars=70)
    assert chunks[0] == "First paragraph. It has two sentences."
    assert_valid(text, chunks, max_chars=70)


def test_line_break_beats_sentence_end() -> None:
    text = "Line one. Still line one\nLine two. And then a long tail of words"
    assert split_text(text, max_chars=40)[0] == "Line one. Still line one"


def test_sentence_end_beats_word_boundary() -> None:
    text = "One sentence here! Another sentence that goes on and on"
    assert split_text(text, max_chars=40) == ["One sentence here!", "Another sentence that goes on and on"]


@pytest.mark.parametrize("end", [".", "?", "…", '."', ".)", "?!"])
def test_sentence_ends(end: str) -> None:
    text = f"Short sentence{end} Then many more words after it"
    assert split_text(text, max_chars=35)[0] == f"Short sentence{end}"


def test_a_period_inside_a_number_is_not_a_sentence_end() -> None:
    chunks = split_text("Pi is 3.14159 and e is 2.71828 roughly", max_chars=20)
    assert chunks == ["Pi is 3.14159 and e", "is 2.71828 roughly"]


def test_cjk_full_stop_needs_no_space() -> None:
    text = "今日は晴れです。明日は雨が降るでしょう。週末は"
    chunks = split_text(text, max_chars=12)
    assert chunks[0] == "今日は晴れです。"
    assert_valid(text, chunks, max_chars=12)


def test_word_boundary_beats_mid_word_cut() -> None:
    assert split_text("alpha beta gamma delta", max_chars=12) == ["alpha beta", "gamma delta"]


def test_a_word_longer_than_the_limit_is_cut_at_a_grapheme_boundary() -> None:
    text = "x" * 25
    assert split_text(text, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("grapheme", [FAMILY, FLAG, THUMB, ACCENTED, HANGUL, "ก\u0e31\u0e49"])
@pytest.mark.parametrize("limit", [13, 16, 27, 31])
def test_runs_of_clusters_are_never_cut_inside(grapheme: str, limit: int) -> None:
    text = grapheme * 40  # no whitespace at all: only grapheme boundaries are left
    for kwargs in ({"max_chars": limit}, {"max_utf8_bytes": limit + 12}):
        chunks = split_text(text, **kwargs)
        assert all(set(regex.findall(r"\X", chunk)) == {grapheme} for chunk in chunks)
        assert_valid(text, chunks, kwargs.get("max_chars"), kwargs.get("max_utf8_bytes"))


def test_astral_characters_count_two_units() -> None:
    chunks = split_text("😀" * 1999, max_chars=MESSENGER_MAX_CHARS)
    assert [len(chunk) for chunk in chunks] == [999, 999, 1]


def test_instagram_limit_counts_utf8_bytes() -> None:
    text = " ".join([ARABIC, FAMILY, "ü"] * 60)
    chunks = split_text(text, max_chars=INSTAGRAM_MAX_CHARS, max_utf8_bytes=INSTAGRAM_MAX_UTF8_BYTES)
    assert len(chunks) > 1 and max(len(chunk.encode()) for chunk in chunks) <= 1000
    assert_valid(text, chunks, INSTAGRAM_MAX_CHARS, INSTAGRAM_MAX_UTF8_BYTES)


def test_escaped_surrogate_pairs_are_joined_and_never_split() -> None:
    text = "ab" + "\ud83d\ude00" * 10  # what a lax decoder may hand over for 10 × 😀
    chunks = split_text(text, max_chars=5)
    assert chunks == ["ab😀", "😀😀", "😀😀", "😀😀", "😀😀", "😀"]


def test_a_lone_surrogate_does_not_raise() -> None:
    chunks = split_text("ab\ud800cd " * 5, max_chars=6, max_utf8_bytes=8)
    assert squeeze(" ".join(chunks)) == squeeze("ab\ud800cd " * 5)


def test_a_grapheme_over_the_limit_is_the_one_thing_split_at_code_points() -> None:
    zalgo = "Z" + "\u0336" * 800  # one grapheme of 1601 UTF-8 bytes: Instagram could never take it whole
    text = f"Hi {zalgo} there"
    chunks = split_text(text, max_utf8_bytes=1000)
    assert all(len(chunk.encode()) <= 1000 for chunk in chunks)
    assert squeeze("".join(chunks)) == squeeze(text)
    assert chunks[0] == "Hi"


def test_whitespace_only_graphemes_are_stripped_but_marks_on_spaces_are_kept() -> None:
    assert split_text("\u00a0\u2003 text \u3000\n") == ["text"]
    assert split_text(" \u0301 text") == [" \u0301 text"]  # the space carries a mark: one non-blank grapheme


def test_random_mixed_text_keeps_every_invariant() -> None:
    rng = random.Random(20240601)
    pieces = [
        "word",
        "Satz.",
        "ok?",
        "مرحبا",
        "שלום",
        FAMILY,
        FLAG,
        THUMB,
        ACCENTED,
        HANGUL,
        "漢字。",
        "\u200b",
        "\u200f",
        " ",
        " ",
        "\n",
        "\n\n",
        "😀",
    ]
    for _ in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 400)))
        max_chars = rng.choice([None, 11, 16, 50, 999])  # 11: the family emoji's size, so it still fits whole
        max_bytes = rng.choice([None, 30, 100, 1000])
        assert_valid(text, split_text(text, max_chars=max_chars, max_utf8_bytes=max_bytes), max_chars, max_bytes)


def test_fifty_thousand_characters_split_quickly_and_correctly() -> None:
    text = (f"Hello {FAMILY} world, {ARABIC}. {ACCENTED}{FLAG}\n" * 1500)[:50_000]
    for kwargs in ({"max_chars": 1999}, {"max_chars": 999, "max_utf8_bytes": 1000}, {"max_chars": 4096}):
        chunks = split_text(text, **kwargs)
        assert_valid(text, chunks, kwargs.get("max_chars"), kwargs.get("max_utf8_bytes"))
