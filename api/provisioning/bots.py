"""Bots: persona, model and memory settings of an account's assistant."""

from __future__ import annotations

from aiohttp import web

from admin.access import check_account, own_account, require_writer
from api.bodies import Body
from api.errors import bad_request
from api.jwt_auth import path_account, principal
from api.operations import JWT, OperationTable
from api.provisioning.models import BotChanges, BotList
from core.models import Bot, BotSettings
from core.storage.accounts import AccountStore
from core.storage.bots import BotStore
from core.storage.plans import PlanStore


class Bots:
    def __init__(self, bots: BotStore, accounts: AccountStore, plans: PlanStore) -> None:
        self._bots = bots
        self._accounts = accounts
        self._plans = plans

    async def create_bot(self, request: web.Request, body: Body[BotSettings]) -> Bot:
        _, account_id = path_account(request, "write")
        settings = await body.parse()
        await self._check_model(account_id, settings.model)
        return await self._bots.create(account_id, settings)

    async def list_bots(self, request: web.Request) -> BotList:
        _, account_id = path_account(request)
        await self._accounts.get(account_id)
        return BotList(bots=await self._bots.list(account_id))

    async def get_bot(self, request: web.Request) -> Bot:
        return await visible_bot(request, self._bots)

    async def update_bot(self, request: web.Request, body: Body[BotChanges]) -> Bot:
        bot = await visible_bot(request, self._bots)
        require_writer(principal(request))
        changes = (await body.parse()).sent()
        await self._check_model(bot.account_id, changes.get("model"))
        return await self._bots.update(bot.id, changes)

    async def delete_bot(self, request: web.Request) -> None:
        bot = await visible_bot(request, self._bots)
        require_writer(principal(request))
        await self._bots.delete(bot.id)

    async def _check_model(self, account_id: str, model: str | None) -> None:
        if model is None:
            return
        plan = await self._plans.get((await self._accounts.get(account_id)).plan_id)
        if model not in plan.models:
            raise bad_request(f"the plan allows these models only: {', '.join(plan.models)}", field="model")


async def visible_bot(request: web.Request, bots: BotStore) -> Bot:
    """The path's `{bot_id}`, if the caller may see it (another account's bot is a 404, like a missing one)."""
    who = principal(request)
    bot = await bots.get(request.match_info["bot_id"], account_id=own_account(who))
    check_account(who, bot.account_id)
    return bot


OPERATIONS = OperationTable(Bots, tag="admin", security=JWT)
OPERATIONS.post(
    "/accounts/{account_id}/bots",
    Bots.create_bot,
    summary="Create a bot",
    description="Admin, or the account's owner (viewers: 403).",
    errors=(403,),
)
OPERATIONS.get(
    "/accounts/{account_id}/bots",
    Bots.list_bots,
    summary="The account's bots",
    description="Admin, or the account's owner or viewer.",
)
OPERATIONS.get("/bots/{bot_id}", Bots.get_bot, summary="One bot")
OPERATIONS.patch(
    "/bots/{bot_id}",
    Bots.update_bot,
    summary="Change a bot",
    description="Only the fields sent change; a model must be one of the account plan's models.",
    errors=(403,),
)
OPERATIONS.delete(
    "/bots/{bot_id}",
    Bots.delete_bot,
    summary="Delete a bot and disconnect its channels",
    description="Its usage history is kept.",
    errors=(403,),
)
