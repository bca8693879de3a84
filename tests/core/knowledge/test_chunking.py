"""Chunks: cut at headings and paragraphs within the token budget, each carrying its heading path."""

from __future__ import annotations

from core.knowledge.chunking import chunk_faq, chunk_text


def words(text: str) -> int:
    return len(text.split())


def test_each_section_is_its_own_chunk_with_its_heading_path() -> None:
    text = "Welcome.\n\n# Prices\n## Bread\nRye 4.20\n\n## Rolls\nPlain 0.50\n\n# Hours\nMon-Fri 7-19\n"
    chunks = chunk_text("Bakery", text, words, max_tokens=50)
    assert [c.heading for c in chunks] == [
        "Bakery",
        "Bakery > Prices > Bread",
        "Bakery > Prices > Rolls",
        "Bakery > Hours",
    ]
    assert chunks[1].text == "Bakery > Prices > Bread\n\nRye 4.20"
    assert all(c.tokens == words(c.text) for c in chunks)


def test_paragraphs_fill_a_chunk_and_long_ones_are_cut_at_sentences_within_the_budget() -> None:
    sentence = "The rye loaf is baked every morning with our own sourdough."  # 11 words
    text = "\n\n".join([sentence, sentence, " ".join([sentence] * 6)])
    chunks = chunk_text("Bread", text, words, max_tokens=30)
    assert all(c.tokens <= 30 for c in chunks)
    assert chunks[0].text == f"Bread\n\n{sentence}\n\n{sentence}"  # two short paragraphs share a chunk
    joined = " ".join(c.text.removeprefix("Bread\n\n") for c in chunks)
    assert joined.split() == text.split()  # nothing lost, nothing repeated


def test_a_sentence_longer_than_a_chunk_is_cut_by_words() -> None:
    chunks = chunk_text("", "word " * 95, words, max_tokens=40)
    assert [c.tokens for c in chunks] == [40, 40, 15]


def test_an_faq_entry_is_kept_whole() -> None:
    chunk = chunk_faq("Do you deliver?", "Yes, within Berlin. " * 100, words)
    assert chunk.text.startswith("Q: Do you deliver?\nA: Yes, within Berlin.")
    assert chunk.tokens == words(chunk.text) > 300
