"""`POST /api/ai/feedback`: rate one bot reply up or down, with an optional comment.

Two kinds of caller, told apart by the bearer credential's shape: an account API key (`nxk_...`, the prefix every
key has; see core/storage/api_keys.py) is the business's own app letting its customer rate a reply it got from
the relay API (whose answer carries `message_id`); anything else is taken as a dashboard JWT of an owner or the
operator (viewers are read-only). The route lives in the main application, not in a JWT sub-application, so API
keys reach it; the JWT path runs the very same middlewares as the sub-applications (require_token, then the
audit trail) by calling them in order.

The first rating of a reply answers 201; a later one replaces it and answers 200, with the same feedback id.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.audit import audit_mutations
from admin.auth import principal, require_token, require_writer
from core.clock import iso_utc
from core.errors import AccountLocked
from core.storage.api_keys import KEY_PREFIX
from core.storage.feedback import RATINGS, Feedback, NotABotReply, Rating
from gateway.errors import ApiError, bad_request
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()

PATH = "/api/ai/feedback"
FIELDS = (
    Field("message_id", str, required=True, max_length=64),
    Field("rating", str, required=True, choices=RATINGS),
    Field("comment", str, nullable=True, max_length=2000),
)


@routes.post(PATH)
async def rate_reply(request: web.Request) -> web.StreamResponse:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip().startswith(KEY_PREFIX):
        return await _rate_with_api_key(request, credential.strip())

    async def audited(req: web.Request) -> web.StreamResponse:
        return await audit_mutations(req, _rate_with_jwt)

    return await require_token(request, audited)


async def _rate_with_api_key(request: web.Request, key: str) -> web.Response:
    services = request.config_dict[SERVICES]
    account = await services.api_keys.authenticate(key)
    if account is None:
        raise ApiError(401, "unauthorized", "a valid account API key or dashboard token is required")
    if account.locked:
        raise AccountLocked(account.id)
    body = validate(await read_json(request), FIELDS)
    return await _store(request, body, account_id=account.id, created_by=f"api_key:{key[:12]}")


async def _rate_with_jwt(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    body = validate(await read_json(request), FIELDS)
    account_id = None if who.is_admin else who.account_id
    if not who.can_write:
        # As everywhere: another account's id is a 404 first (like one that does not exist), then the role.
        await request.config_dict[SERVICES].feedback.reply_account(body["message_id"], account_id=account_id)
        require_writer(who)
    return await _store(request, body, account_id=account_id, created_by=who.subject)


async def _store(
    request: web.Request, body: dict[str, Any], *, account_id: str | None, created_by: str
) -> web.Response:
    rating = Rating(body["message_id"], body["rating"], body.get("comment"), created_by)
    try:
        feedback, created = await request.config_dict[SERVICES].feedback.rate(rating, account_id=account_id)
    except NotABotReply as exc:
        raise bad_request(str(exc), field="message_id") from None
    return web.json_response(feedback_json(feedback), status=201 if created else 200)


def feedback_json(feedback: Feedback) -> dict[str, Any]:
    return {
        "id": feedback.id,
        "message_id": feedback.message_id,
        "account_id": feedback.account_id,
        "bot_id": feedback.bot_id,
        "contact_id": feedback.contact_id,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "created_at": iso_utc(feedback.created_at),
        "updated_at": iso_utc(feedback.updated_at),
    }
