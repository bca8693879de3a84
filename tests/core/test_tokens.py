"""Tests for core.tokens: offline tiktoken encodings and the cookbook chat-token rule."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import tiktoken_ext.openai_public as openai_public

from core import tokens
from core.chat import ChatMessage
from core.tokens import TokenCounter, TokenizerError, encoding_name_for_model
from tests.support.paths import PROJECT_DATA

TOKENIZER_DIR = PROJECT_DATA / "tokenizers"

# The six-message example from the cookbook's How_to_count_tokens_with_tiktoken notebook.
COOKBOOK_MESSAGES = (
    ChatMessage(
        role="system",
        content=("You are a helpful, pattern-following assistant that translates corporate jargon into plain English."),
    ),
    ChatMessage(role="system", name="example_user", content="New synergies will help drive top-line growth."),
    ChatMessage(
        role="system",
        name="example_assistant",
        content="Things working well together will increase revenue.",
    ),
    ChatMessage(
        role="system",
        name="example_user",
        content=(
            "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."
        ),
    ),
    ChatMessage(
        role="system",
        name="example_assistant",
        content="Let's talk later when we're less busy about how to do better.",
    ),
    ChatMessage(
        role="user",
        content="This late pivot means we don't have time to boil the ocean for the client deliverable.",
    ),
)


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    # Module-scoped: building each encoding takes about a second.
    return TokenCounter(TOKENIZER_DIR)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4o-mini", 124), ("gpt-4o", 124), ("gpt-4", 129), ("gpt-3.5-turbo", 129)],
)
def test_cookbook_example_counts(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_messages(model, COOKBOOK_MESSAGES) == expected


@pytest.mark.parametrize(
    ("model", "expected_ids"),
    [
        ("gpt-4", [83, 1609, 5963, 374, 2294, 0]),
        ("gpt-4o", [83, 8251, 2488, 382, 2212, 0]),
    ],
)
def test_tiktoken_is_great_ids(counter: TokenCounter, model: str, expected_ids: list[int]) -> None:
    encoding = counter._encoding(encoding_name_for_model(model))
    assert encoding.encode_ordinary("tiktoken is great!") == expected_ids
    assert counter.count_text(model, "tiktoken is great!") == 6


def test_encoding_names() -> None:
    assert encoding_name_for_model("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert encoding_name_for_model("gpt-5.4") == "o200k_base"
    assert encoding_name_for_model("gpt-4-0613") == "cl100k_base"
    assert encoding_name_for_model("gpt-3.5-turbo") == "cl100k_base"


@pytest.mark.parametrize("model", ["llama3", "o4", "some-unknown-model"])
def test_unknown_model_falls_back_to_o200k(counter: TokenCounter, model: str) -> None:
    assert encoding_name_for_model(model) == "o200k_base"
    assert counter.count_text(model, "tiktoken is great!") == counter.count_text("gpt-4o", "tiktoken is great!")


@pytest.mark.parametrize("model", ["gpt-oss-120b", "text-davinci-001", "gpt2"])
def test_unshipped_encodings_fall_back_to_o200k(model: str) -> None:
    assert encoding_name_for_model(model) == "o200k_base"


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_special_token_text_is_counted_as_plain_text(counter: TokenCounter, model: str) -> None:
    text = "ignore this <|endoftext|> and <|endofprompt|>"
    count = counter.count_text(model, text)
    assert count > 2  # split into ordinary tokens, not one special token each
    messages = [ChatMessage(role="user", content=text, name="<|endoftext|>")]
    assert counter.count_messages(model, messages) > count


def test_corrupted_tokenizer_file_raises(tmp_path: Path) -> None:
    original = bytearray(gzip.decompress((TOKENIZER_DIR / "o200k_base.tiktoken.gz").read_bytes()))
    original[0] ^= 0x01  # one changed byte, still a well-formed gzip stream
    (tmp_path / "o200k_base.tiktoken.gz").write_bytes(gzip.compress(bytes(original)))

    broken = TokenCounter(tmp_path)
    with pytest.raises(TokenizerError, match=r"o200k_base\.tiktoken\.gz"):
        broken.count_text("gpt-4o", "hello")


def test_missing_or_non_gzip_file_raises(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"o200k_base\.tiktoken\.gz"):
        TokenCounter(tmp_path).count_text("gpt-4o", "hello")
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(TokenizerError, match=r"cl100k_base\.tiktoken\.gz"):
        TokenCounter(tmp_path).count_text("gpt-4", "hello")


def test_start_up_refuses_a_truncated_or_changed_file_before_any_model_needs_it(tmp_path: Path) -> None:
    """`check_files` runs at start-up: a broken install fails then, not at a turn on a model that needs the file."""
    for spec in ("o200k_base.tiktoken.gz", "cl100k_base.tiktoken.gz"):
        (tmp_path / spec).write_bytes((TOKENIZER_DIR / spec).read_bytes())
    TokenCounter(tmp_path).check_files()  # the shipped files pass
    whole = (TOKENIZER_DIR / "cl100k_base.tiktoken.gz").read_bytes()
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(whole[: len(whole) // 2])  # a download cut short: gzip still
    with pytest.raises(TokenizerError, match=r"cannot read tokenizer file .*cl100k_base\.tiktoken\.gz"):
        TokenCounter(tmp_path).check_files()
    changed = bytearray(gzip.decompress(whole))
    changed[-2] ^= 0x01
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(bytes(changed)))
    with pytest.raises(TokenizerError, match=r"cl100k_base\.tiktoken\.gz is corrupt"):
        TokenCounter(tmp_path).check_files()


def test_preload_loads_both_encodings() -> None:
    fresh = TokenCounter(TOKENIZER_DIR)
    fresh.preload()
    assert set(fresh._encodings) == {"o200k_base", "cl100k_base"}


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_specs_match_installed_tiktoken(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Our copied hashes, patterns and special tokens equal tiktoken's constructors' values."""
    seen: dict[str, str | None] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        # Stands in for the download so the real constructor can run offline.
        seen["hash"] = expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    upstream = openai_public.ENCODING_CONSTRUCTORS[name]()
    spec = tokens._SPECS[name]
    assert seen["hash"] == spec.expected_sha256
    assert upstream["pat_str"] == spec.pat_str
    assert upstream["special_tokens"] == dict(spec.special_tokens)
