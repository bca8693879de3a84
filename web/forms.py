"""What a page hands the API's handlers: the values it read from its own form or chose itself, in the wrappers
the handlers take (they parse a JSON body or the query string otherwise). The handler's checks all still run."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from api.bodies import OptionalBody, Query

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
