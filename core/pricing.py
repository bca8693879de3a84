"""Model prices and the cost of one completion, in exact decimal US dollars.

Prices live in a versioned data file (`data/prices.json`, USD per 1M tokens, decimal strings so
no float rounding creeps in) rather than in code, so a price change is a data change and every
usage row can record the table version it was billed with. Costs are stored as integer
nano-USD (billionths of a dollar), which is exact for every current per-token rate.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from core.chat import TokenUsage

__all__ = ["ModelPrice", "PriceTable", "PricingError", "format_usd", "to_nanousd"]

_TOKENS_PER_UNIT = Decimal(1_000_000)  # prices are quoted per 1M tokens
_NANO_PER_USD = 1_000_000_000

# OpenAI answers with the resolved snapshot name ("gpt-4o-mini-2024-07-18", "gpt-4-0613"), so
# lookups retry without a trailing -YYYY-MM-DD or -MMDD suffix.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


class PricingError(ValueError):
    """The price file is missing, malformed or internally inconsistent."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens for one model; cached_input None means no discount for cached tokens."""

    model: str
    input_per_million: Decimal
    cached_input_per_million: Decimal | None
    output_per_million: Decimal


@dataclass(frozen=True, slots=True)
class PriceTable:
    """An immutable snapshot of prices, identified by `version` for storing with usage rows."""

    version: str
    effective_date: datetime.date
    prices: Mapping[str, ModelPrice]
    aliases: Mapping[str, str]

    @classmethod
    def load(cls, path: Path) -> PriceTable:
        """Read and validate a price file; raises PricingError naming the file on any problem."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PricingError(f"cannot read price file {path}: {exc}") from exc
        try:
            return _parse_table(raw)
        except PricingError as exc:
            raise PricingError(f"invalid price file {path}: {exc}") from exc

    def lookup(self, model: str) -> ModelPrice | None:
        """Price for a model name as sent or as returned by the API, or None if unpriced.

        Order: exact entry (so gpt-4o-2024-05-13 keeps its own price), then alias, then the
        name with a dated snapshot suffix stripped. Fine-tunes ("ft:...") and non-OpenAI
        models are deliberately unpriced rather than guessed.
        """
        price = self._exact_or_alias(model)
        if price is not None:
            return price
        base = _SNAPSHOT_SUFFIX.sub("", model)
        return self._exact_or_alias(base) if base != model else None

    def cost_usd(self, model: str, usage: TokenUsage) -> Decimal | None:
        """Exact cost of one call, or None when the model has no price.

        Cached tokens are part of prompt_tokens and reasoning tokens are part of
        completion_tokens (already billed at the output rate), so neither is added again.
        """
        price = self.lookup(model)
        if price is None:
            return None
        prompt = max(usage.prompt_tokens, 0)
        # Clamp so a malformed upstream usage object can never produce a negative charge.
        cached = min(max(usage.cached_tokens, 0), prompt)
        completion = max(usage.completion_tokens, 0)
        cached_rate = (
            price.cached_input_per_million if price.cached_input_per_million is not None else price.input_per_million
        )
        total = (
            (prompt - cached) * price.input_per_million + cached * cached_rate + completion * price.output_per_million
        )
        return total / _TOKENS_PER_UNIT

    def _exact_or_alias(self, name: str) -> ModelPrice | None:
        price = self.prices.get(name)
        if price is not None:
            return price
        target = self.aliases.get(name)
        return self.prices.get(target) if target is not None else None


def to_nanousd(cost: Decimal) -> int:
    """Round a USD amount half-up to whole billionths of a dollar, the unit costs are stored in."""
    return int((cost * _NANO_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_usd(nanousd: int) -> str:
    """Render nano-USD as a dollar string with 6 to 9 decimals: 123_000 -> "0.000123"."""
    sign = "-" if nanousd < 0 else ""
    whole, frac = divmod(abs(nanousd), _NANO_PER_USD)
    # Keep at least micro-dollar precision so amounts line up; drop only zeros past the 6th place.
    digits = f"{frac:09d}"
    digits = digits[:6] + digits[6:].rstrip("0")
    return f"{sign}{whole}.{digits}"


def _parse_table(raw: Any) -> PriceTable:
    if not isinstance(raw, dict):
        raise PricingError("top level must be a JSON object")
    # The cost formula assumes USD per 1M tokens; refuse any other unit rather than misbill.
    if raw.get("currency") != "USD" or raw.get("unit") != "per_1m_tokens":
        raise PricingError('expected "currency": "USD" and "unit": "per_1m_tokens"')
    version = raw.get("version")
    if not isinstance(version, str) or not version:
        raise PricingError('"version" must be a non-empty string')
    try:
        effective_date = datetime.date.fromisoformat(str(raw.get("effective_date")))
    except ValueError as exc:
        raise PricingError('"effective_date" must be an ISO date (YYYY-MM-DD)') from exc

    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise PricingError('"models" must be a non-empty object')
    prices = {name: _parse_price(name, entry) for name, entry in models.items()}

    aliases = raw.get("aliases", {})
    if not isinstance(aliases, dict):
        raise PricingError('"aliases" must be an object')
    for alias, target in aliases.items():
        if not isinstance(target, str) or target not in prices:
            raise PricingError(f"alias {alias!r} points at unknown model {target!r}")
        if alias in prices:
            raise PricingError(f"alias {alias!r} is also a model entry; it would be ambiguous")

    return PriceTable(
        version=version,
        effective_date=effective_date,
        prices=MappingProxyType(prices),
        aliases=MappingProxyType(dict(aliases)),
    )


def _parse_price(model: str, entry: Any) -> ModelPrice:
    if not isinstance(entry, dict):
        raise PricingError(f"model {model!r}: entry must be an object")
    cached = entry.get("cached_input")
    return ModelPrice(
        model=model,
        input_per_million=_parse_rate(model, "input", entry.get("input")),
        cached_input_per_million=None if cached is None else _parse_rate(model, "cached_input", cached),
        output_per_million=_parse_rate(model, "output", entry.get("output")),
    )


def _parse_rate(model: str, field: str, value: Any) -> Decimal:
    # Strings only: a JSON float such as 0.15 may already have been rounded by whoever wrote it.
    if not isinstance(value, str):
        raise PricingError(f"model {model!r}: {field!r} must be a decimal string, got {value!r}")
    try:
        rate = Decimal(value)
    except InvalidOperation as exc:
        raise PricingError(f"model {model!r}: {field!r} is not a decimal: {value!r}") from exc
    if not rate.is_finite() or rate < 0:
        raise PricingError(f"model {model!r}: {field!r} must be a non-negative number, got {value!r}")
    return rate
