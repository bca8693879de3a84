"""The "try it" chat of a bot's page: a signed-in person talks to the bot as a test customer, through the same
engine a customer's message goes through (the plan's quota, the bot's persona, knowledge and memory, the charge).

The test customer is a relay conversation named after the person and the chat ("dashboard-test-..."): it shows in
Conversations like any other, and starting over starts a new one, so the bot's memory starts empty again."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from core.engine import ConversationEngine, TurnRequest
from core.handoff import Handoff, Handoffs
from core.models import Bot, Contact
from core.storage.accounts import AccountStore
from core.storage.db import Transaction
from core.storage.people import Person

TEST_CUSTOMER_PREFIX = "dashboard-test-"


@dataclass(frozen=True, slots=True)
class TryTurn:
    """One exchange, with what it cost and what knowledge the bot was shown."""

    asked: str
    reply: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_nanousd: int | None
    knowledge: tuple[str, ...]
    handoff: bool


def new_chat() -> str:
    return secrets.token_hex(4)


def test_customer(person: Person, chat: str) -> str:
    return f"{TEST_CUSTOMER_PREFIX}{person.id}-{chat}"


class TryChat:
    def __init__(self, engine: ConversationEngine, accounts: AccountStore, handoffs: Handoffs) -> None:
        self._engine = engine
        self._accounts = accounts
        self._handoffs = handoffs

    async def turn(self, bot: Bot, person: Person, chat: str, text: str, request_id: str | None) -> TryTurn:
        """The bot's answer; the engine's refusals (quota, rate, the model unreachable) travel as they are."""
        account = await self._accounts.get(bot.account_id)
        result = await self._engine.handle(
            TurnRequest(
                account=account,
                bot=bot,
                channel="relay",
                external_user_id=test_customer(person, chat),
                text=text,
                request_id=request_id,
                on_handoff=self._handed_off,
            )
        )
        return TryTurn(
            asked=text,
            reply=result.reply,
            model=result.model,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            cost_nanousd=result.cost_nanousd,
            knowledge=result.knowledge,
            handoff=result.handoff is not None,
        )

    async def _handed_off(self, tx: Transaction, contact: Contact, handoff: Handoff) -> None:
        await self._handoffs.record(tx, contact, None, handoff)
