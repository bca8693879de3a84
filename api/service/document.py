"""`GET /api/openapi.json`: the OpenAPI 3.1 document of the API this process serves (built once, on first use)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from api.operations import Answer, OperationTable


class Document:
    def __init__(self, document: Callable[[], bytes]) -> None:
        self._document = document

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.Response(body=self._document(), content_type="application/json")


OPERATIONS = OperationTable(Document, tag="service")
OPERATIONS.get(
    "/api/openapi.json",
    Document.openapi_document,
    summary="This document",
    answers={200: Answer("The OpenAPI 3.1 document", content={"application/json": {"type": "object"}})},
)
