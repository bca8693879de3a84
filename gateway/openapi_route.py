"""`GET /api/openapi.json`: the OpenAPI document, built on first request and then served from memory."""

from __future__ import annotations

import json

from aiohttp import web

from gateway.keys import SETTINGS
from gateway.openapi import build_document

routes = web.RouteTableDef()


class DocumentCache:
    """The encoded document of one app. Building it walks every fragment, so it happens once, on first use."""

    def __init__(self) -> None:
        self._body: bytes | None = None

    def body(self, app: web.Application) -> bytes:
        if self._body is None:
            self._body = json.dumps(build_document(app[SETTINGS]), separators=(",", ":")).encode()
        return self._body


# Declared here rather than in gateway/keys.py: keys.py is imported by the handler modules the fragments may
# describe, and the cache's type pulls in every fragment, which would make an import cycle.
OPENAPI = web.AppKey("openapi", DocumentCache)


def setup(app: web.Application) -> None:
    app[OPENAPI] = DocumentCache()
    app.add_routes(routes)


@routes.get("/api/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI].body(request.app), content_type="application/json")
