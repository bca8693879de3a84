"""Records from rows: the columns a store reads are the fields of its record, named once, in the model."""

from __future__ import annotations

import functools
from typing import Any, TypeVar, cast

from core.models import Record
from core.storage.db import Row

R = TypeVar("R", bound=Record)


def columns(model: type[Record]) -> tuple[str, ...]:
    """The record's fields, which are its table's column names."""
    return tuple(model.model_fields)


def from_row(model: type[R], row: Row, **converted: Any) -> R:
    """A record from a row this service wrote (no re-validation); `converted` gives the fields whose stored form
    differs (a JSON list in a text column). Flags (bool fields) are stored as 0/1 on both backends: read back as
    bools here."""
    flags = _flags(model)
    values: dict[str, Any] = {
        name: (bool(row[name]) if name in flags else row[name]) for name in model.model_fields if name not in converted
    }
    return cast(R, model.model_construct(**values, **converted))


def stored(value: Any) -> Any:
    """A value as a column holds it: a bool as 0/1 (INTEGER columns on both backends; PostgreSQL refuses a boolean
    parameter for an integer column)."""
    return int(value) if isinstance(value, bool) else value


@functools.cache
def _flags(model: type[Record]) -> frozenset[str]:
    return frozenset(name for name, field in model.model_fields.items() if field.annotation is bool)
