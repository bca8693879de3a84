"""Account API keys for the relay API: the plaintext key is in the creation answer and nowhere else, ever."""

from __future__ import annotations

from aiohttp import web

from admin.auth import path_account
from admin.render import api_key_json
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()


@routes.post("/accounts/{account_id}/api-keys")
async def issue_key(request: web.Request) -> web.Response:
    _, account_id = path_account(request, "write")
    body = validate(await read_json(request), (Field("name", str, max_length=100),)) if request.can_read_body else {}
    issued = await request.config_dict[SERVICES].api_keys.issue(account_id, body.get("name"))
    return web.json_response({**api_key_json(issued.key), "key": issued.plaintext}, status=201)


@routes.get("/accounts/{account_id}/api-keys")
async def list_keys(request: web.Request) -> web.Response:
    _, account_id = path_account(request)
    services = request.config_dict[SERVICES]
    await services.accounts.get(account_id)
    keys = await services.api_keys.list(account_id)
    return web.json_response({"api_keys": [api_key_json(k) for k in keys]})


@routes.delete("/accounts/{account_id}/api-keys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    _, account_id = path_account(request, "write")
    await request.config_dict[SERVICES].api_keys.revoke(account_id, request.match_info["key_id"])
    return web.Response(status=204)
