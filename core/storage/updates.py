"""Building the SET clause of a partial update from whitelisted column names only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def set_clause(fields: Mapping[str, Any], allowed: Iterable[str], *, updated_at: int) -> tuple[str, list[Any]]:
    """`a = ?, b = ?, updated_at = ?` and its parameters; column names come from `allowed`, never the caller.
    Flags (bools) are written as 0/1, as every flag column holds them."""
    allowed_set = set(allowed)
    unknown = set(fields) - allowed_set
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    columns = [name for name in allowed if name in fields]
    clause = ", ".join([f"{name} = ?" for name in columns] + ["updated_at = ?"])
    return clause, [int(v) if isinstance(v, bool) else v for v in (fields[name] for name in columns)] + [updated_at]
