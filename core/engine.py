"""The conversation engine: one customer message in, one bot reply out, with every step accounted.

The steps, in the order that matters:
  1. rate limit   - refuse floods before anything is paid for: counted in the reservation's commit (step 5),
                   or before the knowledge search when the bot has knowledge (its question's embedding is paid);
  2. persona      - the bot's system message, first and stable;
  3. knowledge    - the bot's documents that answer the message, within its knowledge budget (core/knowledge);
                   in strict mode, when none does, the bot's no-answer message, and no model call;
  4. memory       - the newest whole turns that fit the bot's budget, the knowledge just before the message;
  5. quota        - reserve prompt estimate + max reply tokens, atomically, before spending anything;
  6. LLM          - the provider call with bounded retries;
  7. accounting   - in one commit: charge the provider's `usage` (bounded by what the request could cost,
                   core/usage_bounds.py), store both messages, write the usage row.
A failure at step 6 releases the reservation and charges nothing; the usage row still records it. Once the model
has answered, nothing the provider reported can fail the turn: the customer gets the reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import structlog

from core.chat import ChatMessage, Completion, ImagePart, TokenUsage, Tool
from core.clock import Clock
from core.errors import AccountLocked, QuotaExceeded, RateLimited, UpstreamUnavailable
from core.handoff import HANDOFF_TOOL, Handoff
from core.ids import new_id
from core.knowledge.service import KnowledgeService, TurnKnowledge
from core.llm import ContextLengthExceeded, LLMClient, LLMRequest
from core.media.images import kept_copies
from core.media.vision import accepts_images, image_tokens
from core.memory import HISTORY_WINDOW, Prompt, build_prompt
from core.metrics import Metrics
from core.models import Account, Bot, Contact, Plan, QuotaSnapshot, StoredMessage, UsageRecord
from core.paid_calls import Payer
from core.personas import persona_message
from core.pricing import PriceTable, to_nanousd
from core.storage.conversations import ConversationStore, NewMessage
from core.storage.db import Check, Database, Transaction
from core.storage.plans import PlanStore
from core.storage.quota import QuotaService, Reservation
from core.storage.rate_limits import RateLimitStore
from core.storage.usage import UsageStore
from core.tokens import TokenCounter
from core.tokens import encoding_name_for_model as encoding_for
from core.usage_bounds import Charge, UsageBounds, charge_for

log = structlog.get_logger("core.engine")


@dataclass(frozen=True, slots=True)
class TurnRequest:
    account: Account
    bot: Bot
    channel: str  # "relay", later "messenger" / "instagram" / "whatsapp"
    external_user_id: str
    text: str
    request_id: str | None
    # A store function run inside the accounting transaction with the reply text: a channel worker stores the
    # reply there, so the charge and the reply to send are committed together and a resend never calls the model
    # again. Like any `Database.run` work it issues statements on that transaction and awaits nothing else. Its
    # statement may travel with the transaction's next one: it returns the check (a lost lease raises) that the
    # engine awaits before the commit.
    keep_reply: Callable[[Transaction, str], Awaitable[Check]] | None = None
    # Run in the reply's commit when the turn hands the conversation to a person (core/handoff.py): a channel
    # worker pauses the conversation there, the relay records it; both tell the account.
    on_handoff: Callable[[Transaction, Contact, Handoff], Awaitable[None]] | None = None
    note: str | None = None  # what the customer sent was a voice note ("transcript") or a photo ("image")
    # Photos shown to a vision model with `text` (their caption). The conversation keeps the text; the photos too
    # when the bot keeps them (keep_images), as smaller copies.
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True, slots=True)
class TurnResult:
    reply: str
    bot_id: str
    model: str
    usage: TokenUsage
    cost_nanousd: int | None
    quota: QuotaSnapshot
    message_id: str | None = None  # the stored reply's id: what a client passes to rate it (POST /api/ai/feedback)
    handoff: Handoff | None = None  # the turn handed the conversation to a person; `reply` is the handoff message
    knowledge: tuple[str, ...] = ()  # the titles of the knowledge documents the model was shown, best first


@dataclass(frozen=True, slots=True)
class EngineDeps:
    db: Database
    clock: Clock
    plans: PlanStore
    conversations: ConversationStore
    quota: QuotaService
    usage: UsageStore
    tokens: TokenCounter
    prices: PriceTable
    llm: LLMClient
    limiter: RateLimitStore
    metrics: Metrics = field(default_factory=Metrics.create)
    knowledge: KnowledgeService | None = None  # None: bots answer from their persona alone


class ConversationEngine:
    def __init__(self, deps: EngineDeps) -> None:
        self._d = deps

    async def handle(self, req: TurnRequest) -> TurnResult:
        d = self._d
        plan, model, begun = await self._begin(req)
        # The message is counted against the conversation's rate in the turn's first commit (the reservation's, or
        # the canned reply's), with a new customer's contact: one commit for all three. Unless the turn searches
        # the bot's knowledge: the question's embedding is paid for, and a customer past the rate must not cost it.
        searches = d.knowledge is not None and await d.knowledge.searches(req.bot)
        if searches and (not begun.stored or plan.messages_per_minute is not None):
            begun = await d.db.run(lambda tx: self._counted(tx, plan, begun), small=True)
        counted = None if searches else plan  # the plan whose rate the first commit counts
        contact = begun
        user = ChatMessage(role="user", content=req.text, images=req.images)
        try:
            knowledge = await self._knowledge(req, model, contact, searches=searches)
        except QuotaExceeded:  # the question's embedding (EMBEDDINGS_MODEL) found the allowance used up
            await self._record_failure(req, contact, model, "quota_exceeded", "quota_exceeded", attempts=0)
            raise
        if knowledge is not None and not knowledge.found and req.bot.knowledge_mode == "strict":
            handoff = Handoff("no_answer") if req.bot.handoff_on_no_answer else None
            return await self._canned(req, model, contact, user, handoff, counted)
        context = knowledge.message if knowledge is not None else None
        prompt = await self._prompt(model, req.bot, contact, user, with_history=True, knowledge=context)
        # The model may hand the conversation to a person (a tool); the tool's definition is prompt tokens too, and
        # so are the customer's photos (OpenAI's formula, at the most `auto` detail may cost).
        tools = (HANDOFF_TOOL,) if req.bot.handoff_enabled else ()
        extra = d.tokens.count_tools(model, tools) + sum(image_tokens(model, i.width, i.height) for i in req.images)
        prompt = replace(prompt, tokens=prompt.tokens + extra)
        needed = prompt.tokens + req.bot.max_reply_tokens
        # The id is ours before the reservation exists, so every exit below can release it, even a cancellation
        # that lands between the reservation's commit and our getting it back.
        reservation = Reservation(new_id("rsv"), req.account.id, needed)

        async def first(tx: Transaction) -> None:
            nonlocal contact
            # Judged before the reservation's statement is sent: a message past the rate never waits for the
            # account's quota row, which every turn of the account takes.
            contact = await self._counted(tx, counted, begun)  # from `begun`: a retried transaction starts over

        try:
            await d.quota.reserve(
                req.account.id, needed, request_id=req.request_id, reservation_id=reservation.id, first=first
            )
            completion, sent = await self._call(req, model, contact, user, prompt, tools, extra)
            result = await self._account(req, model, contact, user, reservation, completion, sent)
            return replace(result, knowledge=_shown(knowledge)) if knowledge is not None else result
        except QuotaExceeded:
            await self._record_failure(req, contact, model, "quota_exceeded", "quota_exceeded", attempts=0)
            raise
        except RateLimited:  # raised in the reservation's transaction: nothing was reserved
            raise
        except UpstreamUnavailable as exc:
            await asyncio.shield(d.quota.release(reservation))
            await self._record_failure(req, contact, model, "upstream_error", exc.code, attempts=exc.attempts)
            raise
        except BaseException:
            # Cancelled, a database error, or a bug: give the tokens back (a no-op once settled) and let it travel.
            await asyncio.shield(d.quota.release(reservation))
            raise

    async def remember(
        self, req: TurnRequest, note: str, also: Callable[[Transaction, str], Awaitable[None]] | None = None
    ) -> str:
        """The customer's message kept in the conversation without an answer (`note`: why: `paused`, a person has
        the conversation; `undeliverable`, it came past the reply window), so owners see it and the bot's memory
        holds it when it answers again. `also` runs in the same commit, with the contact's id (the channel worker
        finishes its event there, so a retry after a crash stores nothing twice). No model call, nothing charged.
        The stored message's id."""
        d = self._d
        _, model, contact = await self._begin(req)
        message = NewMessage("user", req.text, d.tokens.count_text(model, req.text), encoding_for(model), note=note)

        async def keep(tx: Transaction) -> list[str]:
            stored_contact = await d.conversations.created(tx, contact)
            stored = await d.conversations.append(tx, stored_contact, [message], request_id=req.request_id)
            if also is not None:
                await also(tx, stored_contact.id)
            return stored

        [stored] = await d.db.run(keep, small=True)
        return stored

    async def _begin(self, req: TurnRequest) -> tuple[Plan, str, Contact]:
        """The account's plan, the model the bot answers with (its tokenizer ready: loaded off the event loop the
        first time a model needs it) and the customer's contact (on first contact, not stored yet: the turn's first
        commit stores it, `ConversationStore.created`)."""
        d = self._d
        plan = await d.plans.current(req.account.plan_id)
        model = resolve_model(req.bot, plan)
        await d.tokens.ready(model)
        contact = await d.conversations.contact(req.account.id, req.bot.id, req.channel, req.external_user_id)
        return plan, model, contact

    async def _counted(self, tx: Transaction, plan: Plan | None, contact: Contact) -> Contact:
        """The contact stored and the message counted against its rate (`plan`'s; None: counted already), in the
        caller's transaction: the reservation's, the canned reply's, or one of their own before a knowledge search."""
        stored = await self._d.conversations.created(tx, contact)
        await self._take_rate(tx, plan, stored)
        return stored

    async def _take_rate(self, tx: Transaction, plan: Plan | None, contact: Contact) -> None:
        """Count the message against the conversation's rate (the plan's; None: counted already), in the caller's
        transaction: a refusal raises there and undoes it."""
        if plan is None or plan.messages_per_minute is None:
            return
        decision = await self._d.limiter.take(tx, contact.id, plan.messages_per_minute)
        if not decision.allowed:
            raise RateLimited(decision.retry_after, plan.messages_per_minute)

    async def _knowledge(
        self, req: TurnRequest, model: str, contact: Contact, *, searches: bool
    ) -> TurnKnowledge | None:
        """What the bot's knowledge says to the message; `searches`: as the turn decided it, before its contact
        was stored and its rate counted (a document added since waits for the next turn)."""
        if self._d.knowledge is None or req.bot.knowledge_mode == "off":
            return None
        if not searches:
            return TurnKnowledge(None, ())
        # The question's embedding (EMBEDDINGS_MODEL set) is charged to the account like the turn itself.
        payer = Payer(req.account.id, req.bot.id, req.channel, contact_id=contact.id, request_id=req.request_id)
        return await self._d.knowledge.for_turn(req.bot, model, req.text, payer)

    async def _prompt(
        self,
        model: str,
        bot: Bot,
        contact: Contact,
        user: ChatMessage,
        *,
        with_history: bool,
        knowledge: ChatMessage | None = None,
    ) -> Prompt:
        history = (
            await self._d.conversations.recent(
                contact.id,
                HISTORY_WINDOW,
                within=bot.memory_tokens,
                encoding=encoding_for(model),
                count=contact.message_count,
            )
            if with_history
            else []
        )
        # The photos the conversation keeps (its newest few), shown again while the bot keeps photos and its model
        # takes them.
        keeps = bool(history) and bot.keep_images and accepts_images(model)
        images = await self._d.conversations.images(contact.id) if keeps else None
        return build_prompt(
            self._d.tokens,
            model,
            persona=persona_message(bot),
            history=history,
            user=user,
            budget=bot.memory_tokens,
            knowledge=knowledge,
            images=images,
            sent=self._d.conversations.derived(contact.id) if history else None,
        )

    async def sees_images(self, account: Account, bot: Bot) -> bool:
        """Whether this bot's model takes images (a photo then goes to it; otherwise the bot's media answer)."""
        plan = await self._d.plans.current(account.plan_id)
        return accepts_images(resolve_model(bot, plan))

    async def hand_off(self, req: TurnRequest, source: str) -> TurnResult:
        """The conversation goes to a person without a model call (the account's tokens are used up and the bot
        says so, `handoff_on_quota`): the customer's message and the handoff message stored, on_handoff run."""
        _, model, contact = await self._begin(req)
        return await self._canned(req, model, contact, ChatMessage(role="user", content=req.text), Handoff(source))

    async def _canned(
        self,
        req: TurnRequest,
        model: str,
        contact: Contact,
        user: ChatMessage,
        handoff: Handoff | None,
        counted: Plan | None = None,
    ) -> TurnResult:
        """A reply of the bot's own words, with no model call and nothing charged: strict knowledge mode's
        no-answer message, or, handing the conversation to a person, its handoff message. Stored like any reply
        (a channel sends it from the same commit), the message counted there against `counted`'s rate."""
        d = self._d
        if req.account.locked:  # nothing is reserved on this path, so the reservation's own check is not met
            raise AccountLocked(req.account.id)
        reply = req.bot.handoff_message if handoff is not None else req.bot.no_answer_message
        messages = [
            await self._user_message(req, model, user),
            NewMessage("assistant", reply, d.tokens.count_text(model, reply), encoding_for(model)),
        ]

        async def keep(tx: Transaction) -> tuple[Contact, list[StoredMessage]]:
            stored_contact = await self._counted(tx, counted, contact)
            stored = await self._store_turn(tx, req, stored_contact, messages, reply)
            if handoff is not None and req.on_handoff is not None:
                await req.on_handoff(tx, stored_contact, handoff)
            return stored_contact, await stored()

        contact, stored = await d.db.run(keep, small=True)
        d.conversations.committed(contact.id, stored)  # the next turn of this conversation need not read them
        snapshot = await d.quota.snapshot(req.account.id)
        _log_answered(req, contact, model, "handoff" if handoff is not None else "no_answer")
        return TurnResult(
            reply, req.bot.id, model, TokenUsage(), 0, snapshot, message_id=stored[-1].id, handoff=handoff
        )

    async def _call(
        self,
        req: TurnRequest,
        model: str,
        contact: Contact,
        user: ChatMessage,
        prompt: Prompt,
        tools: tuple[Tool, ...],
        extra: int,
    ) -> tuple[Completion, Prompt]:
        """The completion, and the prompt that got it (its count, tools included, bounds what the provider may
        report)."""
        bot = req.bot
        try:
            request = LLMRequest(model, prompt.messages, bot.max_reply_tokens, bot.temperature, tools)
            return await self._d.llm.complete(request), prompt
        except ContextLengthExceeded:
            if not prompt.history_turns:
                raise
            # The model's window is smaller than the bot's memory budget: answer without history rather than fail.
            log.warning("context_window_exceeded", bot_id=bot.id, model=model, turns=prompt.history_turns)
            bare = await self._prompt(model, bot, contact, user, with_history=False, knowledge=prompt.knowledge)
            bare = replace(bare, tokens=bare.tokens + extra)
            request = LLMRequest(model, bare.messages, bot.max_reply_tokens, bot.temperature, tools)
            return await self._d.llm.complete(request), bare

    async def _account(
        self,
        req: TurnRequest,
        model: str,
        contact: Contact,
        user: ChatMessage,
        reservation: Reservation,
        completion: Completion,
        sent: Prompt,
    ) -> TurnResult:
        d = self._d
        reply = completion.text.strip()
        handoff = _handoff(completion) if req.bot.handoff_enabled else None
        # A reasoning model can spend its whole budget thinking and return nothing; the customer still gets an answer.
        outcome = "ok" if reply or handoff is not None else "empty_reply"
        if handoff is not None:  # the model called the tool: the customer is told in the bot's words
            reply = req.bot.handoff_message
        reply = reply or req.bot.fallback_message
        reply_tokens = d.tokens.count_text(model, reply)
        # Everything below (quota, cost, the usage row, the answer) uses the bounded figures: a charge never exceeds
        # what the request could cost, so no sum overflows and the reply the customer waits for is delivered.
        bounds = UsageBounds(sent.tokens, req.bot.max_reply_tokens)
        # What the model wrote, for a provider that reports no usage: the fallback and the handoff message are ours.
        received = reply_tokens if outcome == "ok" and handoff is None else 0
        if handoff is not None:
            received = sum(d.tokens.count_text(model, c.name + c.arguments) for c in completion.tool_calls)
        bill = charge_for(completion.usage, bounds, reply_tokens=received)
        if bill.bounded:
            self._warn_bounded(req, contact, model, completion, bounds, bill)
        usage = bill.charged
        cost = d.prices.cost_usd(completion.model or model, usage)
        if cost is None and completion.model != model:
            cost = d.prices.cost_usd(model, usage)
        cost_nanousd = None if cost is None else to_nanousd(cost)
        messages = [
            await self._user_message(req, model, user, sent.user_tokens),
            NewMessage("assistant", reply, reply_tokens, encoding_for(model)),
        ]
        record = self._usage_row(
            req, contact, model, outcome, None, completion.attempts, completion, cost_nanousd, bill
        )

        async def charge(tx: Transaction) -> tuple[QuotaSnapshot, list[StoredMessage]]:
            written = await self._store_turn(tx, req, contact, messages, reply)
            if handoff is not None and req.on_handoff is not None:
                await req.on_handoff(tx, contact, handoff)
            # The account's quota row last: it stays locked until the commit, and every turn of the account
            # (in every worker process) waits for it, so it is held for as few round trips as can be. Its read
            # carries what still waits (the conversation's count, the reply kept: one round trip for all).
            snapshot = await d.quota.settle(tx, reservation, usage.total_tokens)
            stored = await written()  # the messages travel with the commit
            await d.usage.record(record, tx=tx)
            return snapshot, stored

        # One transaction, made at once on the event loop's thread on SQLite (`small`) while nothing else writes.
        snapshot, stored = await d.db.run(charge, small=True)
        d.conversations.committed(contact.id, stored)  # the next turn of this conversation need not read them
        d.metrics.llm_call(record)  # after the commit: a rolled-back turn was not a charged call
        _log_answered(
            req,
            contact,
            model,
            "handoff" if handoff is not None else outcome,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            attempts=completion.attempts,
            latency_ms=completion.latency_ms,
        )
        return TurnResult(
            reply, req.bot.id, model, usage, cost_nanousd, snapshot, message_id=stored[-1].id, handoff=handoff
        )

    async def _user_message(
        self, req: TurnRequest, model: str, user: ChatMessage, tokens: int | None = None
    ) -> NewMessage:
        """The customer's message as stored (`tokens`: its count, when the prompt has made it); with its photos
        when the bot keeps them (keep_images), as later turns show them: at the size the model sees, metadata
        stripped (on a thread: decoding and encoding take a while)."""
        if tokens is None:
            tokens = self._d.tokens.count_text(model, user.content)
        kept = await asyncio.to_thread(kept_copies, user.images) if req.bot.keep_images and user.images else ()
        return NewMessage("user", user.content, tokens, encoding_for(model), note=req.note, images=kept)

    async def _store_turn(
        self, tx: Transaction, req: TurnRequest, contact: Contact, messages: list[NewMessage], reply: str
    ) -> Callable[[], Awaitable[list[StoredMessage]]]:
        """Both messages, and the reply a channel sends (`keep_reply`), in the caller's transaction: their
        statements travel with the caller's next one. The caller then awaits what this returns before it commits:
        it checks the reply was kept (the event's lease), writes the messages, and gives them back as stored."""
        appending = await self._d.conversations.append_later(tx, contact, messages, request_id=req.request_id)
        kept = None if req.keep_reply is None else await req.keep_reply(tx, reply)

        async def stored() -> list[StoredMessage]:
            if kept is not None:
                await kept()
            return await appending.stored()

        return stored

    @staticmethod
    def _warn_bounded(
        req: TurnRequest, contact: Contact, model: str, completion: Completion, bounds: UsageBounds, bill: Charge
    ) -> None:
        """The operator's signal: the provider reported what the request cannot have cost (its bug, or a proxy's).
        The raw figures, the bounds and the charge; the upstream request id is what the provider's support needs."""
        reported, charged = bill.reported, bill.charged
        log.warning(
            "usage_out_of_bounds",
            account_id=req.account.id,
            bot_id=req.bot.id,
            contact_id=contact.id,
            model=model,
            response_model=completion.model,
            upstream_request_id=completion.request_id,
            reported_prompt_tokens=reported.prompt_tokens,
            reported_completion_tokens=reported.completion_tokens,
            reported_cached_tokens=reported.cached_tokens,
            reported_reasoning_tokens=reported.reasoning_tokens,
            max_prompt_tokens=bounds.max_prompt_tokens,
            max_completion_tokens=bounds.max_completion_tokens,
            charged_prompt_tokens=charged.prompt_tokens,
            charged_completion_tokens=charged.completion_tokens,
            alert=True,
        )

    async def _record_failure(
        self, req: TurnRequest, contact: Contact, model: str, outcome: str, code: str, *, attempts: int
    ) -> None:
        record = self._usage_row(req, contact, model, outcome, code, attempts, None, 0, None)
        await self._d.usage.record(record)
        self._d.metrics.llm_call(record)
        log.warning("turn_failed", account_id=req.account.id, bot_id=req.bot.id, outcome=outcome, code=code)

    def _usage_row(
        self,
        req: TurnRequest,
        contact: Contact,
        model: str,
        outcome: str,
        error_code: str | None,
        attempts: int,
        completion: Completion | None,
        cost_nanousd: int | None,
        bill: Charge | None,
    ) -> UsageRecord:
        usage = bill.charged if bill else TokenUsage()  # the charged figures: the quota ledger sums these
        return UsageRecord(
            id=new_id("use"),
            account_id=req.account.id,
            bot_id=req.bot.id,
            contact_id=contact.id,
            channel=req.channel,
            model=model,
            response_model=completion.model if completion else None,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_nanousd=cost_nanousd,
            price_version=self._d.prices.version,
            latency_ms=completion.latency_ms if completion else None,
            attempts=attempts,
            request_id=req.request_id,
            upstream_request_id=completion.request_id if completion else None,
            outcome=outcome,
            error_code=error_code,
            created_at=self._d.clock.now_ms(),
            reported_usage=bill.reported_json() if bill else None,
        )


def _log_answered(req: TurnRequest, contact: Contact, model: str, outcome: str, **figures: int) -> None:
    log.info(
        "turn_answered",
        account_id=req.account.id,
        bot_id=req.bot.id,
        contact_id=contact.id,
        model=model,
        **figures,
        outcome=outcome,
    )


def _handoff(completion: Completion) -> Handoff | None:
    """The model called the handoff tool: its reason for the team, when its arguments say one."""
    for call in completion.tool_calls:
        if call.name == HANDOFF_TOOL.name:
            try:
                arguments = json.loads(call.arguments)
            except ValueError:
                arguments = None
            reason = arguments.get("reason") if isinstance(arguments, dict) else None
            return Handoff("model", reason[:500] if isinstance(reason, str) and reason.strip() else None)
    return None


def resolve_model(bot: Bot, plan: Plan) -> str:
    """The bot's model if its plan allows it, else the plan's default (a plan change must not break bots)."""
    if bot.model and bot.model in plan.models:
        return bot.model
    return plan.default_model


def _shown(knowledge: TurnKnowledge) -> tuple[str, ...]:
    """The titles of the documents a turn was shown, each once, best first."""
    if not knowledge.found:
        return ()
    return tuple(dict.fromkeys(hit.title for hit in knowledge.hits))
