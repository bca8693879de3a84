"""`GET /api/status/openai` and `GET /api/status/webhooks`: is the model reachable, are the channels healthy.

Mounted under /api/status/ with the JWT middleware (gateway/app.py). Any role may read them. The OpenAI probe is
about the platform's one endpoint, so every caller sees it (but only an admin sees its URL); the last model call
and the channel list are scoped like everything else: owners and viewers see their account only, an admin sees
all accounts or the one named by `account_id`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.auth import check_account, principal
from admin.tokens import Principal
from core.clock import iso_utc
from core.openai_probe import ProbeError
from core.storage.status_reads import ChannelHealth
from gateway.errors import bad_request
from gateway.keys import CLOCK, SERVICES, SETTINGS

routes = web.RouteTableDef()


@routes.get("/openai")
async def openai_status(request: web.Request) -> web.Response:
    who = principal(request)
    _only_params(request, set())
    services = request.config_dict[SERVICES]
    status = await services.openai_probe.status()
    result = status.result
    last_call = await services.status_reads.last_call(None if who.is_admin else who.account_id)
    body: dict[str, Any] = {
        "configured": result.configured,
        "reachable": result.reachable,
        "latency_ms": result.latency_ms,
        "checked_at": iso_utc(result.checked_at),
        "cached": status.cached,
        "http_status": result.http_status,
        "error": _error(result.error),
        "last_error": _error(status.last_error),
        "last_call": None
        if last_call is None
        else {
            "outcome": last_call.outcome,
            "error_code": last_call.error_code,
            "model": last_call.model,
            "at": iso_utc(last_call.created_at),
        },
    }
    if who.is_admin:
        # Where the gateway sends model calls: an operator's concern, not a tenant's (it may be an internal host).
        body["base_url"] = request.config_dict[SETTINGS].openai_base_url
    return web.json_response(body)


@routes.get("/webhooks")
async def webhooks_status(request: web.Request) -> web.Response:
    who = principal(request)
    _only_params(request, {"account_id"})
    services = request.config_dict[SERVICES]
    account_id = _scope(who, request.query.get("account_id"))
    if account_id is not None and who.is_admin:
        await services.accounts.get(account_id)  # an unknown account is a 404, not an empty list
    channels = await services.status_reads.channels(account_id, request.config_dict[CLOCK].now_ms())
    return web.json_response({"channels": [_channel(c) for c in channels]})


def _scope(who: Principal, requested: str | None) -> str | None:
    """The account to report on: the caller's own, or for an admin the one asked for (None: every account)."""
    if requested == "":
        raise bad_request("'account_id' may not be empty", field="account_id")
    if requested:
        check_account(who, requested)
        return requested
    return None if who.is_admin else who.account_id


def _only_params(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}", fields=unknown)


def _error(error: ProbeError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"code": error.code, "message": error.message, "at": iso_utc(error.at)}


def _ts(value: int | None) -> str | None:
    return None if value is None else iso_utc(value)


def _channel(c: ChannelHealth) -> dict[str, Any]:
    return {
        "id": c.id,
        "account_id": c.account_id,
        "bot_id": c.bot_id,
        "platform": c.platform,
        "external_id": c.external_id,
        "status": c.status,
        "status_reason": c.status_reason,
        "needs_reauthorisation": c.status == "needs_reauth",
        "last_delivery_at": _ts(c.last_delivery_at),
        "last_error": c.last_error,
        "last_error_at": _ts(c.last_error_at),
        "inbox_pending": c.pending,
        "dead_letters": c.dead,
        "dead_letters_24h": c.dead_last_24h,
    }
