"""Records from rows: the columns a store reads are the fields of its record, named once, in the model."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from core.models import Record
from core.storage.db import Row

R = TypeVar("R", bound=Record)


def columns(model: type[Record]) -> tuple[str, ...]:
    """The record's fields, which are its table's column names."""
    return tuple(model.model_fields)


def from_row(model: type[R], row: Row, **converted: Any) -> R:
    """A record from a row this service wrote (no re-validation); `converted` gives the fields whose stored form
    differs (a JSON list in a text column, a 0/1 flag)."""
    values = {name: row[name] for name in model.model_fields if name not in converted}
    return cast(R, model.model_construct(**values, **converted))
