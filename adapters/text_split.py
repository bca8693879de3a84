"""Splitting a reply into chunks each platform accepts, without ever cutting a grapheme in two.

Limits (meta-platforms.md §5): Messenger text "less than 2000 characters"; Instagram "1000 bytes or less" (UTF-8;
an older wording says "less than 1000 characters", so both are enforced); WhatsApp text body 4096 characters.

Meta never says what a "character" is. Counting code points under-counts astral characters (emoji, CJK
extension B) if Meta's counter is UTF-16 based, as JavaScript's and Java's are. `max_chars` is therefore counted in
UTF-16 code units: that count is never below the code-point count, so a chunk within it is within the limit under
either reading, at the cost of slightly shorter chunks for emoji-heavy text.

Cuts prefer, in order: a paragraph break, a line break, a sentence end, a word boundary (whitespace), and only then
any grapheme boundary (`regex`'s `\\X`: ZWJ sequences, flags, skin tones, combining marks and Hangul syllables stay
whole). Only a single grapheme that alone exceeds a limit (e.g. a "zalgo" letter with hundreds of combining marks) is
cut between its code points, because Meta would refuse it whole. Whitespace at chunk edges is dropped; nothing else.
"""

from __future__ import annotations

import bisect
import re

import regex

MESSENGER_MAX_CHARS = 1999  # "less than 2000 characters"
INSTAGRAM_MAX_UTF8_BYTES = 1000  # "1000 bytes or less"
INSTAGRAM_MAX_CHARS = 999  # the older wording, "less than 1000 characters": free to honour as well
WHATSAPP_MAX_CHARS = 4096

# A limit below one code point's worst case could never be met, whatever the cut.
_MIN_CHARS = 2  # an astral code point is 2 UTF-16 units
_MIN_UTF8_BYTES = 4

_GRAPHEME = regex.compile(r"\X")
# Latin-style sentence ends need whitespace (or the end) after them, else "3.14" or "e.g.x" would qualify; closing
# quotes and brackets stay with their sentence. CJK full stops are followed by no space, so they need none.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s|\Z)|[。！？]+[」』）”’]*")

_PARAGRAPH, _LINE, _SENTENCE, _WORD = range(4)


def split_text(text: str, *, max_chars: int | None = None, max_utf8_bytes: int | None = None) -> list[str]:
    """Chunks of `text`, in order, each within `max_chars` (UTF-16 units) and `max_utf8_bytes`; no empty chunk.

    Text within the limits comes back as one chunk, only stripped. Joining the chunks with whitespace gives back
    every non-whitespace character of `text` in order. Escaped surrogate pairs (e.g. from a lax JSON decoder) are
    first joined into the character they encode, so no cut can fall between the halves.
    """
    if max_chars is not None and max_chars < _MIN_CHARS:
        raise ValueError(f"max_chars must be at least {_MIN_CHARS}")
    if max_utf8_bytes is not None and max_utf8_bytes < _MIN_UTF8_BYTES:
        raise ValueError(f"max_utf8_bytes must be at least {_MIN_UTF8_BYTES}")
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if _fits_whole(text, max_chars, max_utf8_bytes):
        return [text]  # most replies: nothing to cut, nothing to strip, no need to find graphemes
    units = _units(text, max_chars, max_utf8_bytes)
    # Prefix sums over units: the size of units[i:j] is cum[j] - cum[i], so a window is found by bisection.
    offsets, cum16, cum8 = [0], [0], [0]
    for piece in units:
        offsets.append(offsets[-1] + len(piece))
        cum16.append(cum16[-1] + _utf16_len(piece))
        cum8.append(cum8[-1] + _utf8_len(piece))
    spaces = [piece.isspace() for piece in units]
    cuts = _cut_candidates(text, units, offsets, spaces)

    chunks: list[str] = []
    start, end = 0, len(units)
    while end > start and spaces[end - 1]:
        end -= 1
    while start < end:
        if spaces[start]:
            start += 1
            continue
        stop = _window_end(start, end, cum16, cum8, max_chars, max_utf8_bytes)
        if stop < end:
            stop = _best_cut(cuts, start, stop)
        last = stop
        while spaces[last - 1]:  # never reaches `start`, which is not a space
            last -= 1
        chunks.append(text[offsets[start] : offsets[last]])
        start = stop
    return chunks


def _fits_whole(text: str, max_chars: int | None, max_utf8_bytes: int | None) -> bool:
    """`text` within both limits and without whitespace at either end: its one chunk is itself (a grapheme that
    holds its first or last character is not whitespace)."""
    if not text or text[0].isspace() or text[-1].isspace():
        return False
    return (max_chars is None or _utf16_len(text) <= max_chars) and (
        max_utf8_bytes is None or _utf8_len(text) <= max_utf8_bytes
    )


def _utf16_len(piece: str) -> int:
    return len(piece.encode("utf-16-le", "surrogatepass")) // 2


def _utf8_len(piece: str) -> int:
    return len(piece.encode("utf-8", "surrogatepass"))  # a lone surrogate counts its 3-byte form instead of raising


def _units(text: str, max_chars: int | None, max_utf8_bytes: int | None) -> list[str]:
    """The indivisible pieces of `text`: its graphemes, except that an oversized grapheme falls apart into code
    points (the only case where a grapheme is cut: it could not be sent whole)."""
    units: list[str] = []
    for grapheme in _GRAPHEME.findall(text):
        too_long = max_chars is not None and _utf16_len(grapheme) > max_chars
        too_big = max_utf8_bytes is not None and _utf8_len(grapheme) > max_utf8_bytes
        units.extend(grapheme if too_long or too_big else (grapheme,))
    return units


def _cut_candidates(text: str, units: list[str], offsets: list[int], spaces: list[bool]) -> list[list[int]]:
    """Unit indices where a chunk may end, one sorted list per preference level."""
    cuts: list[list[int]] = [[], [], [], []]
    index = 0
    while index < len(units):
        if not spaces[index]:
            index += 1
            continue
        run_start = index
        while index < len(units) and spaces[index]:
            index += 1
        if run_start == 0:
            continue  # leading whitespace is stripped, never a cut
        run = text[offsets[run_start] : offsets[index]]
        breaks = len((run + "x").splitlines()) - 1  # counts \n, \r\n, \r, \u2028, ... once each
        level = _PARAGRAPH if breaks >= 2 or "\u2029" in run else _LINE if breaks else _WORD
        cuts[level].append(run_start)
    at_offset = {offset: i for i, offset in enumerate(offsets)}
    for match in _SENTENCE_END.finditer(text):
        unit = at_offset.get(match.end())  # None when the match ends inside a grapheme: not a place to cut
        if unit is not None and 0 < unit < len(units):
            cuts[_SENTENCE].append(unit)
    return cuts


def _window_end(
    start: int, end: int, cum16: list[int], cum8: list[int], max_chars: int | None, max_utf8_bytes: int | None
) -> int:
    """The furthest unit index such that units[start:index] fits every limit (at least one unit: each fits)."""
    stop = end
    if max_chars is not None:
        stop = min(stop, bisect.bisect_right(cum16, cum16[start] + max_chars) - 1)
    if max_utf8_bytes is not None:
        stop = min(stop, bisect.bisect_right(cum8, cum8[start] + max_utf8_bytes) - 1)
    return max(stop, start + 1)


def _best_cut(cuts: list[list[int]], start: int, stop: int) -> int:
    """The last cut in (start, stop] of the most preferred level that has one; else `stop` itself."""
    for level in cuts:
        i = bisect.bisect_right(level, stop)
        if i and level[i - 1] > start:
            return level[i - 1]
    return stop
