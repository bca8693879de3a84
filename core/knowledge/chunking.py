"""A document cut into chunks by tokens, at its headings and paragraphs, each chunk carrying its headings.

A chunk is what retrieval finds and what the model is shown, so it should be one topic, readable on its own:
  - Markdown headings (`#` to `######`) open sections; the heading path ("Prices > Bread") starts each chunk of the
    section, so a chunk about "rye 4.20 €" still says it is a price list;
  - paragraphs (blank-line separated; a list stays together) are added to a chunk while it fits `max_tokens`;
  - a paragraph larger than a chunk is cut at sentence ends, and a sentence larger than a chunk at token bounds;
  - an FAQ entry is one chunk, whole (its question is what customers paraphrase).
Tokens are counted with the bot's tokenizer, so the knowledge budget of a turn (`knowledge_tokens`) is exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# A chunk of about this many tokens answers one question and leaves room for several in a turn's budget.
DEFAULT_CHUNK_TOKENS = 300

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?…。])\s+")

Count = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    heading: str  # the heading path, "" when the text has none
    text: str  # what the model is shown: heading path first, then the section's text
    tokens: int


def chunk_text(title: str, text: str, count: Count, *, max_tokens: int = DEFAULT_CHUNK_TOKENS) -> list[ChunkDraft]:
    """Chunks of a Markdown or plain-text document; `title` is the root of every heading path."""
    chunks: list[ChunkDraft] = []
    for path, paragraphs in _sections(text):
        heading = " > ".join(part for part in (title.strip(), *path) if part)
        chunks.extend(_pack(heading, paragraphs, count, max_tokens))
    return chunks


def chunk_faq(question: str, answer: str, count: Count) -> ChunkDraft:
    text = f"Q: {question.strip()}\nA: {answer.strip()}"
    return ChunkDraft(heading=question.strip(), text=text, tokens=count(text))


def _sections(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """(heading path, paragraphs) per section, in document order; sections without text are skipped."""
    path: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    current: list[str] = []

    def flush_paragraph() -> None:
        if current:
            paragraphs.append("\n".join(current).strip())
            current.clear()

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        match = _HEADING.match(line)
        if match:
            flush_paragraph()
            if paragraphs:
                yield [title for _, title in path], paragraphs
                paragraphs = []
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2).strip())]
        elif line.strip():
            current.append(line.rstrip())
        else:
            flush_paragraph()
    flush_paragraph()
    if paragraphs:
        yield [title for _, title in path], paragraphs


def _pack(heading: str, paragraphs: list[str], count: Count, max_tokens: int) -> list[ChunkDraft]:
    prefix = f"{heading}\n\n" if heading else ""
    room = max(max_tokens - count(prefix), max_tokens // 2)  # a very long heading path still leaves a text's room
    pieces = [piece for paragraph in paragraphs for piece in _fit(paragraph, count, room)]
    chunks: list[ChunkDraft] = []
    body: list[str] = []
    for piece in pieces:
        candidate = "\n\n".join([*body, piece])
        if body and count(candidate) > room:
            chunks.append(_draft(heading, prefix, body, count))
            body = [piece]
        else:
            body.append(piece)
    if body:
        chunks.append(_draft(heading, prefix, body, count))
    return chunks


def _draft(heading: str, prefix: str, body: list[str], count: Count) -> ChunkDraft:
    text = prefix + "\n\n".join(body)
    return ChunkDraft(heading=heading, text=text, tokens=count(text))


def _fit(paragraph: str, count: Count, room: int) -> Iterator[str]:
    """The paragraph itself when it fits, else its sentences packed, else a sentence cut by words."""
    if count(paragraph) <= room:
        yield paragraph
        return
    sentences = [s for s in _SENTENCE_END.split(paragraph) if s.strip()]
    current = ""
    for sentence in sentences:
        if count(sentence) > room:
            if current:
                yield current
                current = ""
            yield from _cut_words(sentence, count, room)
            continue
        candidate = f"{current} {sentence}".strip()
        if current and count(candidate) > room:
            yield current
            current = sentence
        else:
            current = candidate
    if current:
        yield current


def _cut_words(sentence: str, count: Count, room: int) -> Iterator[str]:
    words = sentence.split()
    current: list[str] = []
    for word in words:
        if current and count(" ".join([*current, word])) > room:
            yield " ".join(current)
            current = []
        current.append(word)
    if current:
        yield " ".join(current)
