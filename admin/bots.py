"""Bots: persona, model and memory settings of an account's assistant."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.auth import check_account, path_account, principal, require_writer
from admin.render import bot_json
from core.models import Bot
from gateway.errors import bad_request
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()

DEFAULTS: dict[str, Any] = {
    "max_reply_tokens": 300,
    "memory_tokens": 2000,
    "fallback_message": "Sorry, I can't answer right now. Please try again in a little while.",
}
FIELDS = (
    Field("name", str, required=True, max_length=100),
    Field("persona", str, required=True, max_length=20_000),
    Field("model", str, nullable=True, max_length=100),
    Field("temperature", float, nullable=True, min=0, max=2),
    Field("max_reply_tokens", int, min=1, max=32_768),
    Field("memory_tokens", int, min=64, max=1_000_000),
    Field("fallback_message", str, max_length=1000),
    Field("media_reply", str, nullable=True, max_length=1000),
    Field("handover_pause_minutes", int, min=0, max=7 * 24 * 60),
)


@routes.post("/accounts/{account_id}/bots")
async def create_bot(request: web.Request) -> web.Response:
    _, account_id = path_account(request, "write")
    body = {**DEFAULTS, **validate(await read_json(request), FIELDS)}
    await _check_model(request, account_id, body.get("model"))
    bot = await request.config_dict[SERVICES].bots.create(account_id, body)
    return web.json_response(bot_json(bot), status=201)


@routes.get("/accounts/{account_id}/bots")
async def list_bots(request: web.Request) -> web.Response:
    _, account_id = path_account(request)
    services = request.config_dict[SERVICES]
    await services.accounts.get(account_id)
    return web.json_response({"bots": [bot_json(b) for b in await services.bots.list(account_id)]})


@routes.get("/bots/{bot_id}")
async def get_bot(request: web.Request) -> web.Response:
    return web.json_response(bot_json(await visible_bot(request)))


@routes.patch("/bots/{bot_id}")
async def update_bot(request: web.Request) -> web.Response:
    bot = await visible_bot(request)
    require_writer(principal(request))
    body = validate(await read_json(request), FIELDS, partial=True)
    if body.get("model") is not None:
        await _check_model(request, bot.account_id, body["model"])
    updated = await request.config_dict[SERVICES].bots.update(bot.id, body)
    return web.json_response(bot_json(updated))


@routes.delete("/bots/{bot_id}")
async def delete_bot(request: web.Request) -> web.Response:
    bot = await visible_bot(request)
    require_writer(principal(request))
    services = request.config_dict[SERVICES]
    await services.bots.delete(bot.id)
    services.directory.invalidate()  # its channels were disconnected with it
    return web.Response(status=204)


async def visible_bot(request: web.Request) -> Bot:
    who = principal(request)
    bot = await request.config_dict[SERVICES].bots.get(
        request.match_info["bot_id"], account_id=None if who.is_admin else who.account_id
    )
    check_account(who, bot.account_id)
    return bot


async def _check_model(request: web.Request, account_id: str, model: str | None) -> None:
    if model is None:
        return
    services = request.config_dict[SERVICES]
    plan = await services.plans.get((await services.accounts.get(account_id)).plan_id)
    if model not in plan.models:
        raise bad_request(f"the plan allows these models only: {', '.join(plan.models)}", field="model")
