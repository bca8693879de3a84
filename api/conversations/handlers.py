"""The conversations API (/api/conversations): list and read an account's conversations, take one over from the
bot (pause / resume), erase a contact's data.

Owners and viewers see their own account; the operator sees every account and may narrow to one with
`account_id`. Another account's contact answers 404, like one that does not exist. A pause is per channel
(conversation_state, checked by the channel worker before it answers), so a relay conversation cannot be paused:
the business's own app decides whether to call the relay API, and the gateway answers every call it gets. That
is a 409 conflict with a sentence saying so, not a silent no-op.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

from aiohttp import web

from admin.access import own_account, require_writer
from api.bodies import Body, OptionalBody, Query
from api.conversations.models import (
    MAX_PAUSE_MINUTES,
    AgentMessageRequest,
    Conversation,
    ConversationDetail,
    ConversationList,
    ConversationsQuery,
    ErasedCounts,
    Erasure,
    LastMessage,
    PauseRequest,
)
from api.errors import ApiError, bad_request
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.pagination import PageQuery, next_cursor
from api.read_slots import ReadSlots
from api.scopes import account_scope
from core.agent_replies import AgentReplies
from core.clock import Clock
from core.models import Contact
from core.storage.accounts import AccountStore
from core.storage.bots import BotStore
from core.storage.conversation_state import INDEFINITE, ConversationStateStore
from core.storage.erasure import Eraser
from core.storage.reads.conversations import (
    ConversationFilter,
    ConversationReader,
    ConversationSummary,
    MessageView,
)

# When the bot's handover pause is 0 (echoes do not pause it), an explicit takeover still needs a length.
FALLBACK_PAUSE_MINUTES = 30


class Conversations:
    def __init__(
        self,
        view: ConversationReader,
        state: ConversationStateStore,
        bots: BotStore,
        accounts: AccountStore,
        eraser: Eraser,
        search_slots: ReadSlots,
        agents: AgentReplies,
        clock: Clock,
    ) -> None:
        self._view = view
        self._state = state  # human takeover pauses
        self._bots = bots
        self._accounts = accounts
        self._eraser = eraser
        self._search_slots = search_slots  # at most two searches (`q`) at once in this process (else 429)
        self._agents = agents  # a person's replies, sent through the channel
        self._clock = clock

    async def list_conversations(self, request: web.Request, query: Query[ConversationsQuery]) -> ConversationList:
        # The account first: another account's id is a 404 whatever else the query gets wrong.
        account_id = await account_scope(principal(request), query.parse_field("account_id"), self._accounts)
        asked = query.parse()
        page = asked.page((int, str))
        where = ConversationFilter(account_id=account_id, q=asked.q, platform=asked.platform, bot_id=asked.bot_id)
        # A search may scan every message of the account: a bounded number run at once (else 429 with Retry-After).
        async with self._search_slots.slot() if asked.q is not None else contextlib.nullcontext():
            found = await self._view.page(
                where,
                after=page.after,  # type: ignore[arg-type]
                limit=page.limit + 1,
            )
        now = self._clock.now_ms()
        return ConversationList(
            conversations=[conversation(c, now) for c in found[: page.limit]],
            next_cursor=next_cursor([(c.last_message_at or 0, c.id) for c in found], page.limit),
        )

    async def read_conversation(self, request: web.Request, query: Query[PageQuery]) -> ConversationDetail:
        summary = await self._visible(request)
        page = query.parse().page((int,))
        after_seq = int(page.after[0]) if page.after else None
        messages = await self._view.messages(summary.id, after_seq=after_seq, limit=page.limit + 1)
        return ConversationDetail(
            conversation=conversation(summary, self._clock.now_ms()),
            pausable=await self._pausable(summary),
            messages=messages[: page.limit],
            next_cursor=next_cursor([(m.seq,) for m in messages], page.limit),
        )

    async def pause_conversation(self, request: web.Request, body: OptionalBody[PauseRequest]) -> Conversation:
        summary = await self._visible(request)
        require_writer(principal(request))
        sent = await body.parse()
        channel_ids = await self._channels(summary)
        if sent.minutes is not None:
            minutes = sent.minutes
        else:
            bot = await self._bots.get(summary.bot_id)
            minutes = min(bot.handover_pause_minutes or FALLBACK_PAUSE_MINUTES, MAX_PAUSE_MINUTES)
        until = self._clock.now_ms() + minutes * 60_000
        for channel_id in channel_ids:
            await self._state.pause(channel_id, summary.external_id, until, reason="manual", source="api")
        return await self._current(request, summary.id)

    async def resume_conversation(self, request: web.Request) -> Conversation:
        summary = await self._visible(request)
        require_writer(principal(request))
        for channel_id in await self._channels(summary):
            await self._state.resume(channel_id, summary.external_id)
        return await self._current(request, summary.id)

    async def send_message(self, request: web.Request, body: Body[AgentMessageRequest]) -> MessageView:
        return await self.answer(request, body, _idempotency_key)

    async def answer(
        self,
        request: web.Request,
        body: Body[AgentMessageRequest],
        idempotency_key: Callable[[web.Request], str | None],
    ) -> MessageView:
        """send_message, for a caller that holds the idempotency key elsewhere (the dashboard's form)."""
        summary = await self._visible(request)
        who = principal(request)
        require_writer(who)
        key = idempotency_key(request)
        sent = await body.parse()
        channel_ids = await self._channels(summary, "answered through the gateway")
        contact = Contact(
            summary.id, summary.account_id, summary.bot_id, summary.platform, summary.external_id, summary.created_at
        )
        reply = await self._agents.send(contact, channel_ids, sent.text, who.subject, key)
        return await self._view.message(reply.message_id)

    async def erase_conversation(self, request: web.Request) -> Erasure:
        """Erase the customer behind this contact within its account and platform: every contact of the account
        with the same external id on the same platform (the same person on another bot of the account), their
        messages, ratings, and the pauses and inbox events of the account's channels on that platform. The same id
        on another platform is another person (a relay user id may equal a WhatsApp number) and is left alone."""
        summary = await self._visible(request)
        require_writer(principal(request))
        report = await self._eraser.erase_customer(
            summary.external_id, account_id=summary.account_id, platform=summary.platform
        )
        return Erasure(
            erased=ErasedCounts(contacts=report.contacts, messages=report.messages, inbox_events=report.inbox_events)
        )

    async def _visible(self, request: web.Request) -> ConversationSummary:
        return await self._view.get(request.match_info["contact_id"], account_id=own_account(principal(request)))

    async def _pausable(self, summary: ConversationSummary) -> bool:
        if summary.platform == "relay":
            return False
        return bool(await self._view.live_channels(summary))

    async def _channels(self, summary: ConversationSummary, what: str = "paused or resumed") -> list[str]:
        if summary.platform == "relay":
            raise ApiError(
                409,
                "conflict",
                f"a relay conversation cannot be {what}: the business's own app calls the relay API and decides"
                " itself when the bot answers",
            )
        channel_ids = await self._view.live_channels(summary)
        if not channel_ids:
            raise ApiError(409, "conflict", f"the bot has no connected {summary.platform} channel any more")
        return channel_ids

    async def _current(self, request: web.Request, contact_id: str) -> Conversation:
        summary = await self._view.get(contact_id, account_id=own_account(principal(request)))
        return conversation(summary, self._clock.now_ms())


def conversation(summary: ConversationSummary, now_ms: int) -> Conversation:
    paused = summary.paused_until is not None and summary.paused_until > now_ms
    indefinite = paused and summary.paused_until is not None and summary.paused_until >= INDEFINITE
    last = (
        None
        if summary.last_role is None
        else LastMessage(role=summary.last_role, preview=summary.last_preview, created_at=summary.last_message_at)
    )
    return Conversation(
        id=summary.id,
        account_id=summary.account_id,
        bot_id=summary.bot_id,
        bot_name=summary.bot_name,
        platform=summary.platform,  # type: ignore[arg-type]
        external_id=summary.external_id,
        message_count=summary.message_count,
        created_at=summary.created_at,
        last_message_at=summary.last_message_at,
        last_message=last,
        paused=paused,
        paused_reason=summary.paused_reason if paused else None,  # type: ignore[arg-type]  # validated
        paused_until=summary.paused_until if paused and not indefinite else None,
    )


OPERATIONS = OperationTable(Conversations, tag="conversations", security=JWT)
OPERATIONS.get(
    "",
    Conversations.list_conversations,
    summary="Conversations (contacts) with their last message and pause state, most recent first",
    description="Owners and viewers see their own account; an admin sees every account, or one with `account_id`. "
    "`q` matches a substring of the customer's id or of any message, case-insensitively (Unicode case folding: "
    "`ÉMILE` finds `émile`). A search may read every message of the account, so at most two run at once per "
    "server process: one more answers 429 `rate_limited` with `Retry-After`. Any role may read.",
    errors=(429,),
)
OPERATIONS.get(
    "/{contact_id}",
    Conversations.read_conversation,
    summary="One conversation: the contact, its pause state and its messages, oldest first, a page at a time",
    description="Any role may read its account's conversations; an admin any.",
)
OPERATIONS.post(
    "/{contact_id}/pause",
    Conversations.pause_conversation,
    summary="Human takeover: the bot stops answering this conversation for a while",
    description="Admin, or the account's owner (viewers: 403). Another account's contact is 404 first. Default "
    "length: the bot's handover_pause_minutes (30 if that is 0); at most a week. A pause applies to the contact's "
    "conversation on every connected channel of its bot on its platform; the channel worker does not answer while "
    "it lasts (a person answers from the Page/WhatsApp inbox). A relay conversation has no channel: the business's "
    "own app decides when to call the relay API, so pause and resume answer 409 conflict; so do they when the bot "
    "has no connected channel on that platform any more.",
    status=200,
    errors=(403, 409),
)
OPERATIONS.post(
    "/{contact_id}/resume",
    Conversations.resume_conversation,
    summary="Hand the conversation back to the bot",
    description="Admin, or the account's owner (viewers: 403); 409 as for pause.",
    status=200,
    errors=(403, 409),
)
OPERATIONS.post(
    "/{contact_id}/messages",
    Conversations.send_message,
    summary="A person answers the customer through the conversation's channel, as the business",
    description="Admin, or the account's owner (viewers: 403). Another account's contact is 404 first. The text goes "
    "out at once through the channel the customer last wrote on, and the answer is the stored message (role `agent`, "
    "`author` the caller's `sub`), which the bot's memory holds when it answers again. Reply windows: within 24 hours "
    "of the customer's last message on any platform; on Messenger up to 7 days, tagged HUMAN_AGENT; otherwise 409 "
    "`window_closed` and nothing is sent. The bot stays out of the conversation afterwards (a takeover pause: the "
    "bot's handover_pause_minutes, 30 if that is 0; a handoff stays paused until resumed). 409 `conflict`: a relay "
    "conversation, no connected channel, or a channel that needs re-authorisation. 502 `upstream_unavailable`: the "
    "platform did not take the message (its words in the message; a message split in parts keeps the parts sent). "
    "An `Idempotency-Key` header (1-255 visible ASCII characters, per conversation, kept 10 days) makes a retry safe: "
    "a repeat with the same key and text answers 201 with the message the first request stored and sends nothing; "
    "409 `conflict` while the first is still sending, when it was interrupted after asking the platform (it may have "
    "gone out: look at the conversation), or for the same key with another text; 502 when only part of it went out. "
    "A request whose text certainly did not go out (a closed window, a refusal) frees its key.",
    errors=(403, 409, 502),
)
OPERATIONS.delete(
    "/{contact_id}",
    Conversations.erase_conversation,
    summary="Erase the customer behind this contact: contacts, messages, ratings, pauses and inbox events",
    description="Admin, or the account's owner (viewers: 403). Another account's contact is 404 first. Erases, "
    "within the contact's account and platform only, every contact with the same customer id (the same person on "
    "another bot of the account), and the pauses and inbox events of the account's channels on that platform. The "
    "same id on another platform is another person (a relay user id may equal a WhatsApp number) and is kept. "
    "Usage records keep their figures without the link.",
    status=200,
    errors=(403,),
)


_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key
