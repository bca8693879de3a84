"""Tests for core.pricing: the shipped price file, lookups, the cost formula and formatting."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.chat import TokenUsage
from core.pricing import PriceTable, PricingError, format_usd, to_nanousd
from tests.support.paths import PROJECT_DATA

PRICES_PATH = PROJECT_DATA / "prices.json"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load(PRICES_PATH)


def _raw() -> dict[str, Any]:
    return json.loads(PRICES_PATH.read_text(encoding="utf-8"))


def test_loads_shipped_file(table: PriceTable) -> None:
    assert table.version == "2026-12-06.2"
    assert table.effective_date == datetime.date(2026, 12, 6)
    assert table.lookup("text-embedding-3-small") is not None
    assert "gpt-5.6-sol" not in table.prices
    assert table.lookup("chatgpt-4o-latest") is None


def test_cost_gpt_4o_mini(table: PriceTable) -> None:
    usage = TokenUsage(prompt_tokens=1000, cached_tokens=300, completion_tokens=500)
    # (700 × 0.15 + 300 × 0.075 + 500 × 0.60) / 1e6 = (105 + 22.5 + 300) / 1e6
    assert table.cost_usd("gpt-4o-mini", usage) == Decimal("0.0004275")


def test_cost_gpt_4_1(table: PriceTable) -> None:
    usage = TokenUsage(prompt_tokens=12_000, cached_tokens=8_192, completion_tokens=750)
    # (3808 × 2.00 + 8192 × 0.50 + 750 × 8.00) / 1e6 = (7616 + 4096 + 6000) / 1e6
    assert table.cost_usd("gpt-4.1", usage) == Decimal("0.017712")


def test_cost_gpt_5_mini_with_reasoning(table: PriceTable) -> None:
    # The 900 reasoning tokens are inside completion_tokens and must not be billed twice.
    usage = TokenUsage(prompt_tokens=2_000, cached_tokens=1_024, completion_tokens=1_200, reasoning_tokens=900)
    # (976 × 0.25 + 1024 × 0.025 + 1200 × 2.00) / 1e6 = (244 + 25.6 + 2400) / 1e6
    assert table.cost_usd("gpt-5-mini", usage) == Decimal("0.0026696")


def test_dated_snapshot_resolves_to_base_price(table: PriceTable) -> None:
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    usage = TokenUsage(prompt_tokens=1000, cached_tokens=300, completion_tokens=500)
    assert table.cost_usd("gpt-4o-mini-2024-07-18", usage) == Decimal("0.0004275")


@pytest.mark.parametrize(
    ("snapshot", "base"),
    [
        ("gpt-4-0613", "gpt-4"),  # alias
        ("gpt-4-0314", "gpt-4"),  # -MMDD suffix stripped
        ("gpt-5.4-mini-2026-03-17", "gpt-5.4-mini"),  # -YYYY-MM-DD suffix stripped
        ("o3-mini-2025-01-31", "o3-mini"),
    ],
)
def test_snapshot_names(table: PriceTable, snapshot: str, base: str) -> None:
    price = table.lookup(snapshot)
    assert price is not None
    assert price.model == base


def test_gpt_4o_2024_05_13_uses_its_own_price(table: PriceTable) -> None:
    price = table.lookup("gpt-4o-2024-05-13")
    assert price is not None
    assert price.model == "gpt-4o-2024-05-13"
    assert (price.input_per_million, price.output_per_million) == (Decimal("5.00"), Decimal("15.00"))
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=100)
    # (1000 × 5.00 + 100 × 15.00) / 1e6
    assert table.cost_usd("gpt-4o-2024-05-13", usage) == Decimal("0.0065")


@pytest.mark.parametrize("model", ["llama3", "ft:gpt-4o-mini-2024-07-18:acme::abc123", "gpt-4-32k-0613", ""])
def test_unknown_model_has_no_cost(table: PriceTable, model: str) -> None:
    assert table.lookup(model) is None
    assert table.cost_usd(model, TokenUsage(prompt_tokens=10, completion_tokens=10)) is None


def test_null_cached_price_bills_cached_tokens_at_input_rate(table: PriceTable) -> None:
    price = table.lookup("gpt-4")
    assert price is not None
    assert price.cached_input_per_million is None
    usage = TokenUsage(prompt_tokens=1000, cached_tokens=400, completion_tokens=100)
    # (600 × 30 + 400 × 30 + 100 × 60) / 1e6
    assert table.cost_usd("gpt-4", usage) == Decimal("0.036")


def test_cached_never_exceeds_input_price(table: PriceTable) -> None:
    assert len(table.prices) == 28  # 23 chat models, 3 embeddings models, 2 transcription models
    for price in table.prices.values():
        if price.cached_input_per_million is not None:
            assert price.input_per_million >= price.cached_input_per_million, price.model


def test_shipped_prices_are_decimal_strings() -> None:
    for name, entry in _raw()["models"].items():
        for field in ("input", "cached_input", "output"):
            assert entry[field] is None or isinstance(entry[field], str), (name, field)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw["models"]["gpt-4o"].update(input="-1"), "non-negative"),
        (lambda raw: raw["models"]["gpt-4o"].update(output=10.0), "decimal string"),
        (lambda raw: raw["models"]["gpt-4o"].update(input="ten"), "not a decimal"),
        (lambda raw: raw["models"]["gpt-4o"].update(input="NaN"), "non-negative"),
        (lambda raw: raw["aliases"].update({"gpt-x-2030-01-01": "gpt-x"}), "unknown model"),
        (lambda raw: raw["aliases"].update({"gpt-4o": "gpt-4o-mini"}), "ambiguous"),
        (lambda raw: raw.update(effective_date="yesterday"), "effective_date"),
        (lambda raw: raw.update(unit="per_1k_tokens"), "per_1m_tokens"),
        (lambda raw: raw.pop("models"), "models"),
    ],
)
def test_broken_price_file_raises(tmp_path: Path, mutate: Any, message: str) -> None:
    raw = _raw()
    mutate(raw)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(PricingError, match=message):
        PriceTable.load(path)


def test_unreadable_price_file_raises(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match=r"missing\.json"):
        PriceTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(PricingError, match=r"bad\.json"):
        PriceTable.load(bad)


@pytest.mark.parametrize(
    ("cost", "nano"),
    [
        (Decimal("0.0004275"), 427_500),
        (Decimal("0.000123"), 123_000),
        (Decimal("0.0000000005"), 1),  # half rounds up
        (Decimal("0.00000000049"), 0),
        (Decimal("1.0000000015"), 1_000_000_002),
        (Decimal(0), 0),
    ],
)
def test_to_nanousd(cost: Decimal, nano: int) -> None:
    assert to_nanousd(cost) == nano


@pytest.mark.parametrize(
    ("nano", "text"),
    [
        (123_000, "0.000123"),
        (1, "0.000000001"),
        (0, "0.000000"),
        (427_500, "0.0004275"),
        (1_500_000_000, "1.500000"),
        (12_345_678_901, "12.345678901"),
        (-1_000, "-0.000001"),
    ],
)
def test_format_usd(nano: int, text: str) -> None:
    assert format_usd(nano) == text
