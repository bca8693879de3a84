"""The audit trail of the JWT surfaces: a middleware that records every mutation.

Recorded: POST/PUT/PATCH/DELETE that succeeded (2xx), were refused (4xx, except 401: no identity to record) or
failed on our side (5xx, with `outcome: "error"` in the detail: the mutation may have committed before the failure,
so the operator must see the attempt).
Who is the token's subject and role; what is the method, the route pattern and its target (the last path
parameter, or the created object for a 201); the account touched is the caller's own for owners and viewers (the
only one they can touch; an attempt on another account's id is recorded against their own), and for the operator
the account owning the target, looked up before the handler runs. Bodies are never stored: only the names of
the fields sent, so access tokens, app secrets and API keys cannot leak into the trail. The trail is read through
GET /api/admin/audit (api/provisioning/audit.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from api.bodies import BODY_FIELDS
from api.context import request_id
from api.envelope import from_domain
from api.errors import ApiError, ClientDisconnected
from api.jwt_auth import principal
from core.errors import GatewayError
from core.storage.audit import AuditStore, NewAuditEntry

log = structlog.get_logger("api.audit_trail")

AUDIT_STORE = web.AppKey("api.audit_store", AuditStore)
# What a handler that answers a page, not JSON, created (its id): the trail's target, as the JSON answer's id is.
CREATED = web.RequestKey("api.audit_trail.created", str)
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Field names are recorded only when they look like field names: a client could send a secret as a key.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_FIELDS = 50


@web.middleware
async def audit_mutations(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs inside require_token, so every request that reaches it has a principal."""
    match = request.match_info
    if request.method not in MUTATIONS or match.http_exception is not None:
        return await handler(request)
    audit = request.config_dict[AUDIT_STORE]
    who = principal(request)
    params = dict(match)
    account = who.account_id if not who.is_admin else await _owner(audit, params)
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        raise
    except GatewayError as exc:
        status = from_domain(exc).status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (asyncio.CancelledError, ClientDisconnected):
        status = 0  # the client went away: no answer was sent, nothing to record as one
        raise
    finally:
        if _audited(status):
            body = _json_body(response) if 200 <= status < 300 else {}
            if status == 201 and CREATED in request:
                body = {**body, "id": request[CREATED]}
            pattern = match.route.resource.canonical if match.route.resource is not None else request.path
            target_type, target_id = _target(pattern, params, body, status)
            if account is None and isinstance(body.get("account_id"), str):
                account = body["account_id"]
            elif account is None and target_type == "account" and status == 201:
                account = target_id
            entry = NewAuditEntry(
                actor=who.subject,
                actor_role=who.role,
                account_id=account,
                action=getattr(match.handler, "__name__", request.method.lower()),
                method=request.method,
                path=pattern,
                target_type=target_type,
                target_id=target_id,
                status=status,
                request_id=request_id(),
                detail=_detail(request, status),
            )
            try:
                await audit.record(entry)
            except Exception:
                # The mutation itself is committed: answering 5xx now would invite a retry that repeats it.
                log.exception("audit_write_failed", method=request.method, path=pattern, alert=True)


def _audited(status: int) -> bool:
    # 3xx: a dashboard form's success is a redirect to the page that shows the result (web/).
    return 200 <= status < 400 or (400 <= status < 600 and status != 401)


async def _owner(audit: AuditStore, params: dict[str, str]) -> str | None:
    if "account_id" in params:
        return params["account_id"]
    for name, value in params.items():
        owner = await audit.owner_of(name, value)
        if owner is not None:
            return owner
    return None


def _target(pattern: str, params: dict[str, str], body: dict[str, Any], status: int) -> tuple[str | None, str | None]:
    """The object acted on: a created one (201 with an id), else the last path parameter, else the collection."""
    last = pattern.rstrip("/").rsplit("/", 1)[-1]
    if status == 201 and isinstance(body.get("id"), str) and not last.startswith("{"):
        return _singular(last), body["id"]
    if params:
        name, value = list(params.items())[-1]
        return name.removesuffix("_id"), value
    return (_singular(last), None) if last and not last.startswith("{") else (None, None)


def _singular(segment: str) -> str:
    name = segment.replace("-", "_")
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def _json_body(response: web.StreamResponse | None) -> dict[str, Any]:
    if not isinstance(response, web.Response) or response.content_type != "application/json" or not response.body:
        return {}
    try:
        body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _detail(request: web.Request, status: int) -> dict[str, Any] | None:
    detail: dict[str, Any] = {"outcome": "error"} if status >= 500 else {}
    sent = request.get(BODY_FIELDS)
    if sent is not None:
        names = [str(name) for name in sent]
        kept = sorted(name for name in names if _FIELD_NAME.match(name))[:_MAX_FIELDS]
        detail["fields"] = kept
        if len(kept) < len(names):
            detail["other_fields"] = len(names) - len(kept)
    return detail or None
