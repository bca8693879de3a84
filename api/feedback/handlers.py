"""Rating a bot reply: with an account API key (the business's app) or a dashboard JWT (owner or operator).

The first rating of a reply answers 201; a later one replaces it and answers 200, with the same feedback id.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import Field

from admin.access import own_account, require_writer
from api.audit_trail import audit_mutations
from api.bodies import Body
from api.errors import ApiError, bad_request
from api.jwt_auth import PRINCIPAL, bearer, require_token
from api.operations import API_KEY, JWT, OperationTable, Reply
from api.shapes import ApiModel
from core.errors import AccountLocked
from core.fields import Choice, Text
from core.storage.api_keys import KEY_PREFIX, ApiKeyStore
from core.storage.feedback import Feedback, FeedbackStore, NotABotReply, Rating, RatingValue


class RatingRequest(ApiModel):
    message_id: Annotated[str, Text(64)] = Field(description="the reply's id (the relay answer's message_id)")
    rating: Annotated[RatingValue, Choice]
    comment: Annotated[str, Text(2000)] | None = None


@web.middleware
async def jwt_unless_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An API key goes straight to the handler; anything else is a JWT, checked and audited as on the JWT APIs."""
    if bearer(request).startswith(KEY_PREFIX):
        return await handler(request)

    async def audited(req: web.Request) -> web.StreamResponse:
        return await audit_mutations(req, handler)

    return await require_token(request, audited)


class Feedbacks:
    def __init__(self, feedback: FeedbackStore, api_keys: ApiKeyStore) -> None:
        self._feedback = feedback
        self._api_keys = api_keys

    async def rate_reply(self, request: web.Request, body: Body[RatingRequest]) -> Reply[Feedback]:
        who = request.get(PRINCIPAL)
        if who is None:
            key = bearer(request)
            account = await self._api_keys.authenticate(key)
            if account is None:
                raise ApiError(401, "unauthorized", "a valid account API key or dashboard token is required")
            if account.locked:
                raise AccountLocked(account.id)
            sent = await body.parse()
            return await self._store(sent, account_id=account.id, created_by=f"api_key:{key[:12]}")
        sent = await body.parse()
        account_id = own_account(who)
        if not who.can_write:
            # As everywhere: another account's id is a 404 first (like one that does not exist), then the role.
            await self._feedback.reply_account(sent.message_id, account_id=account_id)
            require_writer(who)
        return await self._store(sent, account_id=account_id, created_by=who.subject)

    async def _store(self, sent: RatingRequest, *, account_id: str | None, created_by: str) -> Reply[Feedback]:
        rating = Rating(sent.message_id, sent.rating, sent.comment, created_by)
        try:
            feedback, created = await self._feedback.rate(rating, account_id=account_id)
        except NotABotReply as exc:
            raise bad_request(str(exc), field="message_id") from None
        return Reply(feedback, 201 if created else 200)


OPERATIONS = OperationTable(Feedbacks, tag="feedback", security=(*JWT, *API_KEY))
OPERATIONS.post(
    "/feedback",
    Feedbacks.rate_reply,
    summary="Rate a bot reply up or down",
    description="With an account API key (the business's app, for its customer) or a dashboard JWT of an owner or "
    "the operator (viewers: 403). One rating per reply: a later one replaces it (200, same id).",
    success={201: "Rated", 200: "The earlier rating of this reply, replaced"},
    errors=(403, 404),
)
