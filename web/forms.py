"""What a page hands the API's handlers: the values it read from its own form or chose itself, in the wrappers
the handlers take (they parse a JSON body or the query string otherwise). The handler's checks all still run."""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel

from api.bodies import JsonOrUpload, OptionalBody, Query, Upload, validate

M = TypeVar("M", bound=BaseModel)


class GivenBody(OptionalBody[M]):  # an OptionalBody is a Body: it stands for either
    def __init__(self, request: web.Request, value: M) -> None:
        super().__init__(request, type(value))
        self._value = value

    async def parse(self) -> M:
        return self._value


class GivenQuery(Query[M]):
    def __init__(self, request: web.Request, value: M) -> None:
        super().__init__(request, type(value))
        self._value = value

    def parse(self) -> M:
        return self._value

    def parse_field(self, name: str) -> Any:
        return getattr(self._value, name)


class GivenUpload(JsonOrUpload[M]):
    """A file the page already read (its form token was checked first), handed to a handler that takes a JSON
    body or an upload."""

    def __init__(self, request: web.Request, model: type[M], value: M | Upload) -> None:
        super().__init__(request, model)
        self._value = value

    async def parse_either(self, upload_limit: int) -> M | Upload:
        return self._value


Kind = Literal["text", "optional_text", "whole", "optional_whole", "optional_number", "checkbox", "names"]


def form_values(form: dict[str, str], fields: dict[str, Kind]) -> dict[str, Any]:
    """A form's fields as the JSON body the API reads: numbers as numbers (left as typed when they are not, so
    the model's check names the field), a ticked box as true and an unticked one (never sent) as false, an empty
    optional field as null. Only the fields named; line breaks as the API stores them."""
    values: dict[str, Any] = {}
    for name, kind in fields.items():
        given = form.get(name)
        if kind == "checkbox":
            values[name] = given is not None
            continue
        if given is None:
            continue
        given = given.replace("\r\n", "\n")
        if kind == "text":
            values[name] = given
        elif kind == "optional_text":
            values[name] = given if given.strip() else None
        elif kind == "whole" or (kind == "optional_whole" and given.strip()):
            values[name] = int(given) if _WHOLE.fullmatch(given.strip()) else given
        elif kind == "names":  # one per line, or separated by commas
            values[name] = [part.strip() for part in re.split(r"[,\n]", given) if part.strip()]
        elif not given.strip():
            values[name] = None
        else:
            try:
                values[name] = float(given)
            except ValueError:
                values[name] = given
    return values


_WHOLE = re.compile(r"-?[0-9]{1,15}")


class FilledQuery(Query[M]):
    """The query string without its empty parameters: a page's filter form sends the fields left blank too."""

    def parse(self) -> M:
        query = self._request.query
        filled = {name: query[name] for name in query if query[name].strip()}
        return validate(self.model, filled, None, noun="query parameter(s)")

    def parse_field(self, name: str) -> Any:
        info = self.model.model_fields[name]
        raw = self._request.query.get(info.alias or name)
        if raw is not None and not raw.strip():
            return info.get_default(call_default_factory=True)
        return super().parse_field(name)
