"""The dashboard as an aiohttp sub-application mounted at /dashboard/: its routes, its static files, and the
middleware that answers every page's refusals as pages (never the API's JSON) with the headers pages need."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.envelope import from_domain
from api.errors import ApiError
from core.errors import GatewayError
from web.pages import Pages, template_helpers

PAGES = web.AppKey("web.pages", Pages)
_HERE = Path(__file__).parent
STATIC = _HERE / "static"
# Pages load only their own script and stylesheet, are never framed, and post only to themselves.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def make_templates() -> Environment:
    """Every value is escaped unless a helper marks it safe (core of the pages' safety: customers write them)."""
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(template_helpers())
    environment.globals["static"] = static_url
    return environment


@cache
def static_url(name: str) -> str:
    """A static file's URL with its content's digest: browsers may cache it for good, and see every change."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/dashboard/static/{name}?v={digest}"


def _page(method: Callable[[Pages], Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await method(request.config_dict[PAGES])(request)

    return handle


@web.middleware
async def pages_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.status == 405:
            raise  # a redirect (or a method not allowed, answered as everywhere)
        response = request.config_dict[PAGES].error_page(request, exc.status, exc.reason)
    except (ApiError, GatewayError) as exc:
        refused = exc if isinstance(exc, ApiError) else from_domain(exc)
        response = request.config_dict[PAGES].error_page(request, refused.status, refused.message)
        for name, value in (refused.headers or {}).items():
            response.headers[name] = value
    if not request.path.startswith("/dashboard/static/"):
        response.headers.update(_HEADERS)
        response.headers["Cache-Control"] = "no-store"  # a page shows one person's data
    return response


def dashboard_app() -> web.Application:
    app = web.Application(middlewares=[pages_answer])
    routes = app.router
    routes.add_get("/", _page(lambda p: p.overview))
    routes.add_get("/login", _page(lambda p: p.login_form))
    routes.add_post("/login", _page(lambda p: p.login))
    routes.add_post("/logout", _page(lambda p: p.logout))
    routes.add_get("/conversations", _page(lambda p: p.conversations))
    routes.add_get("/conversations/{contact_id}", _page(lambda p: p.conversation))
    routes.add_post("/conversations/{contact_id}/messages", _page(lambda p: p.reply))
    routes.add_post("/conversations/{contact_id}/pause", _page(lambda p: p.pause))
    routes.add_post("/conversations/{contact_id}/resume", _page(lambda p: p.resume))
    routes.add_static("/static/", STATIC)
    return app
