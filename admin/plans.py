"""Plans: the operator's catalogue. Anyone signed in may read it; only an admin changes it."""

from __future__ import annotations

from aiohttp import web

from admin.auth import principal, require_admin
from admin.render import plan_json
from gateway.errors import bad_request
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()

FIELDS = (
    Field("name", str, required=True, max_length=100),
    Field("monthly_token_limit", int, required=True, min=0, max=10**12),
    Field("models", list, required=True),
    Field("default_model", str, required=True, max_length=100),
    Field("overage_percent", int, min=0, max=100),
    Field("messages_per_minute", int, nullable=True, min=1, max=100_000),
)


@routes.post("/plans")
async def create_plan(request: web.Request) -> web.Response:
    require_admin(principal(request))
    body = validate(await read_json(request), FIELDS)
    _check_models(body["models"], body["default_model"])
    plan = await request.config_dict[SERVICES].plans.create(body)
    return web.json_response(plan_json(plan), status=201)


@routes.get("/plans")
async def list_plans(request: web.Request) -> web.Response:
    principal(request)
    plans = await request.config_dict[SERVICES].plans.list()
    return web.json_response({"plans": [plan_json(p) for p in plans]})


@routes.get("/plans/{plan_id}")
async def get_plan(request: web.Request) -> web.Response:
    plan = await request.config_dict[SERVICES].plans.get(request.match_info["plan_id"])
    return web.json_response(plan_json(plan))


@routes.patch("/plans/{plan_id}")
async def update_plan(request: web.Request) -> web.Response:
    require_admin(principal(request))
    store = request.config_dict[SERVICES].plans
    current = await store.get(request.match_info["plan_id"])
    body = validate(await read_json(request), FIELDS, partial=True)
    if "models" in body or "default_model" in body:
        _check_models(body.get("models", list(current.models)), body.get("default_model", current.default_model))
    plan = await store.update(current.id, body)
    return web.json_response(plan_json(plan))


@routes.delete("/plans/{plan_id}")
async def delete_plan(request: web.Request) -> web.Response:
    require_admin(principal(request))
    await request.config_dict[SERVICES].plans.delete(request.match_info["plan_id"])
    return web.Response(status=204)


def _check_models(models: list[str], default_model: str) -> None:
    if default_model not in models:
        raise bad_request("'default_model' must be one of 'models'", field="default_model")
