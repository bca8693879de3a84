"""`POST /api/messages/relay`: a business's own app talks to its bot, authenticated by an account API key."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.engine import TurnRequest, TurnResult
from core.errors import AccountLocked, NotFound
from core.pricing import format_usd
from gateway.errors import ApiError, quota_json
from gateway.keys import SERVICES, SETTINGS
from gateway.middlewares import request_id
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()


@routes.post("/api/messages/relay")
async def relay(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    account = await services.api_keys.authenticate(_bearer(request))
    if account is None:
        raise ApiError(401, "unauthorized", "a valid account API key is required: Authorization: Bearer nxk_...")
    if account.locked:
        raise AccountLocked(account.id)
    max_chars = request.app[SETTINGS].max_message_chars
    body = validate(
        await read_json(request),
        (
            Field("user_id", str, required=True, max_length=256),
            Field("message", str, required=True, max_length=max_chars),
            Field("bot_id", str, max_length=64),
        ),
    )
    engine = services.require_engine()
    if "bot_id" in body:
        bot = await services.bots.get(body["bot_id"], account_id=account.id)
    else:
        try:
            bot = await services.bots.first(account.id)
        except NotFound:
            raise ApiError(404, "not_found", "this account has no bot yet; create one first") from None
    result = await engine.handle(
        TurnRequest(
            account=account,
            bot=bot,
            channel="relay",
            external_user_id=body["user_id"],
            text=body["message"],
            request_id=request_id(request),
        )
    )
    return web.json_response(_render(result))


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _render(result: TurnResult) -> dict[str, Any]:
    return {
        "reply": result.reply,
        "bot_id": result.bot_id,
        "model": result.model,
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "cached_tokens": result.usage.cached_tokens,
            "total_tokens": result.usage.total_tokens,
        },
        # The contract makes cost_usd a decimal string; for a model with no known price it is "0" and
        # cost_known says so, rather than a null that strict clients would choke on.
        "cost_usd": format_usd(result.cost_nanousd or 0),
        "cost_known": result.cost_nanousd is not None,
        "quota": quota_json(result.quota),
        # Beyond the contract: the stored reply's id, so the business's app can let its customer rate it.
        "message_id": result.message_id,
    }
