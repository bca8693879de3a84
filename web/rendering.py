"""What every page class shares: rendering a template for the signed-in person, reading a posted form within the
API's limits, and checking its form token."""

from __future__ import annotations

import re
import secrets
from typing import Any, NoReturn
from urllib.parse import parse_qs

from aiohttp import web
from jinja2 import Environment

from api.bodies import LIMITS, read_limited
from api.envelope import from_domain
from api.errors import ApiError, bad_request
from api.jwt_auth import principal
from core.errors import GatewayError
from core.storage.rate_limits import RateLimitStore
from core.storage.web_sessions import WebSession
from web.signin import SESSION, same_token

FORM_FIELD_CHARS = 8192
_FORM_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")


class Renderer:
    def __init__(self, templates: Environment) -> None:
        self._templates = templates

    def page(self, template: str, session: WebSession, *, status: int = 200, **values: Any) -> web.Response:
        return self.html(template, status, person=session.person, csrf=session.csrf, **values)

    def html(self, template: str, status: int, **values: Any) -> web.Response:
        body = self._templates.get_template(template).render({"section": None, **values})
        return web.Response(text=body, status=status, content_type="text/html")


def session_of(request: web.Request) -> WebSession:
    """The signed-in person's session (web/routes.py's signed_in middleware found it, or sent them to sign in)."""
    return request[SESSION]


def check_form_token(session: WebSession, given: str | None) -> None:
    if not same_token(session.csrf, given):
        raise ApiError(403, "forbidden", "This form had expired. Please go back, reload the page and try again.")


async def checked_form(request: web.Request, long_fields: frozenset[str] = frozenset()) -> dict[str, str]:
    """The posted form, once its form token is the session's (another site cannot post it)."""
    form = await read_form(request, long_fields)
    check_form_token(session_of(request), form.get("csrf"))
    return form


async def read_form(request: web.Request, long_fields: frozenset[str] = frozenset()) -> dict[str, str]:
    """A posted form's fields: URL-encoded only (the pages send nothing else but uploads), read within the API's
    size and time limits, each field once. A field longer than FORM_FIELD_CHARS is refused (never cut short),
    unless it is one of `long_fields` (a persona, a knowledge text: the model's own limit then says)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "The form must be sent as a web page sends it.")
    limits = request.config_dict[LIMITS]
    raw = await read_limited(request, limits.max_body_bytes)
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise bad_request("The form could not be read.") from None
    if any(len(values) != 1 for values in fields.values()):
        raise bad_request("The form sent a field twice.")
    for name, values in fields.items():
        if name not in long_fields and len(values[0]) > FORM_FIELD_CHARS:
            raise bad_request(f"The field {name[:40]} is longer than {FORM_FIELD_CHARS:,} characters.")
    return {name: values[0] for name, values in fields.items()}


def refusal(exc: ApiError | GatewayError) -> ApiError:
    """A refusal as the API would answer it: its status and its words."""
    return exc if isinstance(exc, ApiError) else from_domain(exc)


def see_other(location: str) -> web.Response:
    """A redirect that carries cookies (raising web.HTTPSeeOther would drop the ones set on a response)."""
    return web.Response(status=303, headers={"Location": location})


def new_form_key() -> str:
    """A form's own key, made with the page: what `first_sending` knows a form by."""
    return secrets.token_urlsafe(16)


async def first_sending(limiter: RateLimitStore, request: web.Request, purpose: str, key: str) -> bool:
    """Whether a form whose answer must happen once (a charged message, a key shown once) is sent for the first
    time: the same form sent again within the minute, as a reload of its answer does, is not. (After the minute it
    counts as new: each caller says what that means for its form.)"""
    if not _FORM_KEY.fullmatch(key):
        return False
    return (await limiter.check(f"{purpose}:{session_of(request).id}:{key}", 1)).allowed


def to_own_account(request: web.Request, page: str) -> NoReturn:
    """A section's entry (Bots, API keys): the caller's account's `page`; an operator picks an account first."""
    who = principal(request)
    if who.account_id is not None:
        raise web.HTTPSeeOther(f"/dashboard/accounts/{who.account_id}/{page}")
    raise web.HTTPSeeOther("/dashboard/admin/accounts")
