"""The relay handler: authenticate the account's API key, pick the bot, run one turn through the engine."""

from __future__ import annotations

from aiohttp import web

from api.bodies import Body
from api.context import request_id
from api.errors import ApiError
from api.jwt_auth import bearer
from api.operations import API_KEY, OperationTable
from api.relay.models import RelayAnswer, RelayRequest, Usage
from api.shapes import QuotaBlock
from core.engine import ConversationEngine, TurnRequest
from core.errors import AccountLocked, NotConfigured, NotFound
from core.handoff import Handoff, Handoffs
from core.models import Contact
from core.storage.api_keys import ApiKeyStore
from core.storage.bots import BotStore
from core.storage.db import Transaction


class Relay:
    def __init__(
        self, api_keys: ApiKeyStore, bots: BotStore, engine: ConversationEngine | None, handoffs: Handoffs
    ) -> None:
        self._api_keys = api_keys
        self._bots = bots
        self._engine = engine  # None when OPENAI_API_KEY is not set
        self._handoffs = handoffs

    async def relay(self, request: web.Request, body: Body[RelayRequest]) -> RelayAnswer:
        account = await self._api_keys.authenticate(bearer(request))
        if account is None:
            raise ApiError(401, "unauthorized", "a valid account API key is required: Authorization: Bearer nxk_...")
        if account.locked:
            raise AccountLocked(account.id)
        sent = await body.parse()
        if self._engine is None:
            raise NotConfigured("OPENAI_API_KEY is not set, so the bot cannot answer; ask the operator to set it")
        if sent.bot_id is not None:
            bot = await self._bots.current(sent.bot_id, account_id=account.id)
        else:
            try:
                bot = await self._bots.current_first(account.id)
            except NotFound:
                raise ApiError(404, "not_found", "this account has no bot yet; create one first") from None
        result = await self._engine.handle(
            TurnRequest(
                account=account,
                bot=bot,
                channel="relay",
                external_user_id=sent.user_id,
                text=sent.message,
                request_id=request_id(),
                on_handoff=self._handed_off,
            )
        )
        return RelayAnswer(
            reply=result.reply,
            bot_id=result.bot_id,
            model=result.model,
            usage=Usage(
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                cached_tokens=result.usage.cached_tokens,
                total_tokens=result.usage.total_tokens,
            ),
            cost_usd=result.cost_nanousd or 0,
            cost_known=result.cost_nanousd is not None,
            quota=QuotaBlock.of(result.quota),
            message_id=result.message_id,
            handoff=result.handoff is not None,
        )

    async def _handed_off(self, tx: Transaction, contact: Contact, handoff: Handoff) -> None:
        await self._handoffs.record(tx, contact, None, handoff)


OPERATIONS = OperationTable(Relay, tag="relay", security=API_KEY)
OPERATIONS.post(
    "/api/messages/relay",
    Relay.relay,
    summary="Send a customer's message to the account's bot and get its reply",
    operation_id="relayMessage",
    status=200,
    description=(
        "Errors: 400 bad body, 401 bad key, 403 account_locked, 404 unknown bot, 429 quota_exceeded or "
        "rate_limited (with Retry-After), 502/503 upstream_unavailable (nothing charged), 503 not_configured."
    ),
    errors=(403, 404, 429, 502, 503),
)
