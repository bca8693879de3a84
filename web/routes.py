"""The dashboard as an aiohttp sub-application mounted at /dashboard/: its routes, its static files, and its
middlewares, outermost first:
  - pages_answer: every refusal and failure is a page (never the API's JSON), with the headers pages need;
  - signed_in: every route but the sign-in form and the static files needs a live session (else the sign-in form),
    and the person becomes the API's caller;
  - audit_mutations: the API's audit trail records what people change here as it does through the API."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.audit_trail import audit_mutations
from api.errors import ApiError
from api.jwt_auth import PRINCIPAL
from core.errors import GatewayError
from web.pages import Pages, template_helpers
from web.rendering import refusal

log = structlog.get_logger("web.routes")

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


_PUBLIC = ("/dashboard/login", "/dashboard/static/")


def _page(name: str, method: Callable[[Pages], Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await method(request.config_dict[PAGES])(request)

    handle.__name__ = name  # the action the audit trail records (the API's name for the same change)
    return handle


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(_PUBLIC) or request.match_info.http_exception is not None:
        return await handler(request)
    if await request.config_dict[PAGES].signed_in(request) is None:
        raise web.HTTPSeeOther("/dashboard/login")
    return await handler(request)


@web.middleware
async def audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API's audit trail, for a signed-in person's changes (signing in itself has no caller yet)."""
    if PRINCIPAL not in request:
        return await handler(request)
    return await audit_mutations(request, handler)


@web.middleware
async def pages_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect
        response = request.config_dict[PAGES].error_page(request, exc.status, exc.reason)
        if "Allow" in exc.headers:  # 405: which methods the page takes
            response.headers["Allow"] = exc.headers["Allow"]
    except (ApiError, GatewayError) as exc:
        refused = refusal(exc)
        response = request.config_dict[PAGES].error_page(request, refused.status, refused.message)
        for name, value in (refused.headers or {}).items():
            response.headers[name] = value
    except Exception:
        log.exception("page_failed", method=request.method, path=request.path)
        response = request.config_dict[PAGES].error_page(
            request, 500, "Something went wrong on our side. Please try again in a moment."
        )
    if response.prepared:  # written as it went (a CSV export): its headers were the API's, already sent
        return response
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.path.startswith("/dashboard/static/"):
        if request.query.get("v"):  # the URL names the content (static_url): it never changes
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers.update(_HEADERS)
        response.headers["Cache-Control"] = "no-store"  # a page shows one person's data
        if request.config_dict[PAGES].secure:  # browsers come back over TLS only, for a year
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def dashboard_app() -> web.Application:
    app = web.Application(middlewares=[pages_answer, signed_in, audited])
    routes = app.router
    routes.add_get("/", _page("overview", lambda p: p.overview))
    routes.add_get("/login", _page("login_form", lambda p: p.login_form))
    routes.add_post("/login", _page("sign_in", lambda p: p.login))
    routes.add_post("/logout", _page("sign_out", lambda p: p.logout))
    routes.add_get("/conversations", _page("conversations", lambda p: p.conversations))
    routes.add_get("/conversations/{contact_id}", _page("conversation", lambda p: p.conversation))
    routes.add_post("/conversations/{contact_id}/messages", _page("send_message", lambda p: p.reply))
    routes.add_post("/conversations/{contact_id}/pause", _page("pause_conversation", lambda p: p.pause))
    routes.add_post("/conversations/{contact_id}/resume", _page("resume_conversation", lambda p: p.resume))
    routes.add_get("/bots", _page("bots", lambda p: p.bots.choose))
    routes.add_get("/accounts/{account_id}/bots", _page("list_bots", lambda p: p.bots.listing))
    routes.add_post("/accounts/{account_id}/bots", _page("create_bot", lambda p: p.bots.create))
    routes.add_get("/bots/{bot_id}", _page("get_bot", lambda p: p.bots.bot))
    routes.add_post("/bots/{bot_id}", _page("update_bot", lambda p: p.bots.update))
    routes.add_post("/bots/{bot_id}/channels", _page("connect_channel", lambda p: p.bots.connect))
    routes.add_post("/bots/{bot_id}/channels/{channel_id}/token", _page("update_channel", lambda p: p.bots.new_token))
    routes.add_post(
        "/bots/{bot_id}/channels/{channel_id}/disconnect", _page("disconnect_channel", lambda p: p.bots.disconnect)
    )
    routes.add_get("/bots/{bot_id}/knowledge", _page("list_documents", lambda p: p.bots.knowledge))
    routes.add_post("/bots/{bot_id}/knowledge", _page("add_document", lambda p: p.bots.add_document))
    routes.add_post(
        "/bots/{bot_id}/knowledge/{document_id}/delete", _page("delete_document", lambda p: p.bots.delete_document)
    )
    routes.add_get("/bots/{bot_id}/try", _page("try_bot", lambda p: p.bots.try_page))
    routes.add_post("/bots/{bot_id}/try", _page("try_bot_turn", lambda p: p.bots.try_turn))
    routes.add_get("/api-keys", _page("api_keys", lambda p: p.keys.choose))
    routes.add_get("/accounts/{account_id}/api-keys", _page("list_keys", lambda p: p.keys.listing))
    routes.add_post("/accounts/{account_id}/api-keys", _page("issue_key", lambda p: p.keys.issue))
    routes.add_post("/accounts/{account_id}/api-keys/{key_id}/revoke", _page("revoke_key", lambda p: p.keys.revoke))
    routes.add_get("/usage", _page("usage", lambda p: p.usage.usage))
    routes.add_get("/usage/export.csv", _page("export_usage", lambda p: p.usage.export))
    routes.add_get("/activity", _page("list_activity", lambda p: p.usage.activity))
    routes.add_get("/admin/accounts", _page("list_accounts", lambda p: p.admin.accounts))
    routes.add_post("/admin/accounts", _page("create_account", lambda p: p.admin.create_account))
    routes.add_get("/admin/accounts/{account_id}", _page("get_account", lambda p: p.admin.account))
    routes.add_post("/admin/accounts/{account_id}", _page("update_account", lambda p: p.admin.update_account))
    routes.add_post("/admin/accounts/{account_id}/lock", _page("lock_account", lambda p: p.admin.lock))
    routes.add_post("/admin/accounts/{account_id}/credits", _page("add_credits", lambda p: p.admin.add_credits))
    routes.add_get("/admin/plans", _page("list_plans", lambda p: p.admin.plans))
    routes.add_post("/admin/plans", _page("create_plan", lambda p: p.admin.create_plan))
    routes.add_get("/admin/plans/{plan_id}", _page("get_plan", lambda p: p.admin.plan))
    routes.add_post("/admin/plans/{plan_id}", _page("update_plan", lambda p: p.admin.update_plan))
    routes.add_post("/admin/plans/{plan_id}/delete", _page("delete_plan", lambda p: p.admin.delete_plan))
    routes.add_get("/admin/people", _page("list_people", lambda p: p.admin.people))
    routes.add_post("/admin/people", _page("add_person", lambda p: p.admin.add_person))
    routes.add_post("/admin/people/{person_id}/remove", _page("remove_person", lambda p: p.admin.remove_person))
    routes.add_static("/static/", STATIC)
    return app
