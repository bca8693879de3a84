"""Accounts (the businesses) and their lock switch. Owners and viewers see only their own account."""

from __future__ import annotations

from aiohttp import web

from admin.auth import path_account, principal, require_admin
from admin.render import account_json
from gateway.errors import ApiError, quota_json
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()

_NAME = Field("name", str, required=True, max_length=200)
_EMAIL = Field("email", str, nullable=True, max_length=320)
_PLAN = Field("plan_id", str, required=True, max_length=64)


@routes.post("/accounts")
async def create_account(request: web.Request) -> web.Response:
    require_admin(principal(request))
    body = validate(await read_json(request), (_NAME, _PLAN, _EMAIL))
    account = await request.config_dict[SERVICES].accounts.create(body["name"], body["plan_id"], body.get("email"))
    return web.json_response(account_json(account), status=201)


@routes.get("/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    who = principal(request)
    accounts = await request.config_dict[SERVICES].accounts.list(only=None if who.is_admin else who.account_id)
    return web.json_response({"accounts": [account_json(a) for a in accounts]})


@routes.get("/accounts/{account_id}")
async def get_account(request: web.Request) -> web.Response:
    _, account_id = path_account(request)
    services = request.config_dict[SERVICES]
    account = await services.accounts.get(account_id)
    snapshot = await services.quota.snapshot(account_id)
    return web.json_response(
        {**account_json(account), "quota": {**quota_json(snapshot), "credit_balance_tokens": snapshot.credit_balance}}
    )


@routes.patch("/accounts/{account_id}")
async def update_account(request: web.Request) -> web.Response:
    who, account_id = path_account(request, "write")
    body = validate(await read_json(request), (_NAME, _PLAN, _EMAIL), partial=True)
    if "plan_id" in body and not who.is_admin:
        raise ApiError(403, "forbidden", "only the platform operator may change an account's plan")
    account = await request.config_dict[SERVICES].accounts.update(account_id, body)
    return web.json_response(account_json(account))


@routes.put("/users/{account_id}/lock")
async def lock_account(request: web.Request) -> web.Response:
    _, account_id = path_account(request, "admin")
    body = validate(await read_json(request), (Field("locked", bool, required=True),))
    account = await request.config_dict[SERVICES].accounts.set_locked(account_id, body["locked"])
    return web.json_response(account_json(account))
