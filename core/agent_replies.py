"""A person answering a customer through the gateway (POST /api/conversations/{contact_id}/messages).

A Cloud API number has no inbox of its own, so after a handoff the person answers here. The text goes out through
the conversation's channel as the business, at once (the person waits for the outcome), and is stored with role
`agent` and the person's identity, so the thread and the bot's memory show it. The reply windows are the
platforms' (meta-platforms.md, "the 24-hour window"):
  - within 24 hours of the customer's last message, any platform: a normal reply;
  - Messenger, within 7 days: tagged HUMAN_AGENT (a person's reply; Meta refuses the tag from a bot, and a Page
    without the permission gets a refusal, which is answered as a closed window);
  - otherwise, or when the customer never wrote on the channel: WindowClosed (409 `window_closed`), nothing sent.
The bot then stays out of the conversation: a person answering is a takeover (the bot's handover_pause_minutes,
30 when that is 0), and a handoff's pause without end stays without end.
With an idempotency key (core/storage/reply_keys.py), a repeat of the request answers the message the first one
stored and sends nothing; the key is freed when nothing went out, so the person may try again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from adapters.graph_client import GraphClient
from adapters.graph_errors import GraphAction, may_have_gone_out
from adapters.replies import text_limits, text_requests
from adapters.text_split import split_text
from core.clock import Clock
from core.engine import resolve_model
from core.errors import ChannelRefused, Conflict, WindowClosed
from core.models import Channel, Contact
from core.storage.accounts import AccountStore
from core.storage.bots import BotStore
from core.storage.channels import ChannelStore
from core.storage.conversation_state import ConversationStateStore
from core.storage.conversations import ConversationStore, NewMessage
from core.storage.db import Database, Transaction
from core.storage.plans import PlanStore
from core.storage.reply_keys import ReplyKeys
from core.tokens import TokenCounter, encoding_name_for_model

log = structlog.get_logger("core.agent_replies")

STANDARD_WINDOW_MS = 24 * 3600 * 1000
HUMAN_AGENT_WINDOW_MS = 7 * 24 * 3600 * 1000
# A person's reply pauses the bot this long when the bot's handover_pause_minutes is 0.
FALLBACK_PAUSE_MINUTES = 30
_PLATFORM_NAMES = {"messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp"}


@dataclass(frozen=True, slots=True)
class AgentReplyDeps:
    db: Database
    clock: Clock
    channels: ChannelStore
    state: ConversationStateStore
    conversations: ConversationStore
    accounts: AccountStore
    bots: BotStore
    plans: PlanStore
    tokens: TokenCounter
    graph: GraphClient
    keys: ReplyKeys


@dataclass(frozen=True, slots=True)
class SentReply:
    message_id: str  # the stored message's id
    parts: int  # messages the platform took (a long text is split); 0 for a repeat, which sends nothing
    repeated: bool = False  # the idempotency key's first request sent it: nothing was sent now


class _Progress:
    """How far a keyed reply got: its key is dropped only when its text certainly did not go out."""

    asked = False  # the platform was asked to send a part
    refused = False  # ... and refused the first part outright (nothing went out)

    @property
    def nothing_sent(self) -> bool:
        return not self.asked or self.refused


class AgentReplies:
    def __init__(self, deps: AgentReplyDeps) -> None:
        self._d = deps

    async def send(
        self, contact: Contact, channel_ids: list[str], text: str, author: str, key: str | None = None
    ) -> SentReply:
        """Send `text` to the contact's customer through the channel they last wrote on, store it, pause the bot.
        With `key`, at most once: a repeat answers what the first request stored."""
        progress = _Progress()
        if key is None:
            return await self._send(contact, channel_ids, text, author, None, progress)
        claim = await self._d.keys.claim(contact.id, key, text)
        if claim.state == "sent":
            assert claim.message_id is not None
            return SentReply(claim.message_id, 0, repeated=True)
        if claim.state == "partial":
            raise ChannelRefused(
                f"only part of this message went out under this Idempotency-Key (stored as {claim.message_id});"
                " the rest was refused"
            )
        if claim.state == "in_flight":
            raise Conflict("a reply with this Idempotency-Key is still being sent")
        if claim.state == "unknown":
            raise Conflict(
                "the reply with this Idempotency-Key was interrupted while it was being sent, so it may have reached"
                " the customer: look at the conversation, and send it again under a new key if it is not there"
            )
        if claim.state == "other_text":
            raise Conflict("this Idempotency-Key was used for another text in this conversation")
        try:
            return await self._send(contact, channel_ids, text, author, key, progress)
        except BaseException:
            if progress.nothing_sent:  # the person may try again with the same key
                await asyncio.shield(self._d.keys.release(contact.id, key))
            else:  # a repeat must not send it again (nothing is changed once the message is stored)
                await asyncio.shield(self._d.keys.unknown(contact.id, key))
            raise

    async def _send(
        self, contact: Contact, channel_ids: list[str], text: str, author: str, key: str | None, progress: _Progress
    ) -> SentReply:
        d = self._d
        channel, last = await self._latest(contact, channel_ids)
        name = _PLATFORM_NAMES.get(channel.platform, channel.platform)
        age = d.clock.now_ms() - last if last is not None else None
        if age is None:
            raise WindowClosed(f"the customer has not written on this {name} channel yet, so {name} allows no reply")
        human_agent = False
        if age > STANDARD_WINDOW_MS:
            if channel.platform != "messenger" or age > HUMAN_AGENT_WINDOW_MS:
                limit = "7 days" if channel.platform == "messenger" else "24 hours"
                raise WindowClosed(
                    f"the customer last wrote {age // 3_600_000} h ago; {name} allows replies for {limit} after the"
                    " customer's last message"
                )
            human_agent = True
        if channel.status != "active":
            raise Conflict(f"the {name} channel is {channel.status.replace('_', ' ')}: {channel.status_reason or ''}")
        token = (await d.channels.secrets(channel.id)).access_token
        requests = text_requests(
            channel.platform, channel.external_id, contact.external_id, text, human_agent=human_agent
        )
        sent_ids: list[str] = []
        if key is not None:
            await d.keys.sending(contact.id, key)
        for index, request in enumerate(requests):
            progress.asked = True
            result = await d.graph.send(request, token)
            if result.ok:
                if result.message_id:
                    sent_ids.append(result.message_id)
                continue
            failure = result.failure
            assert failure is not None
            log.warning("agent_reply_refused", channel_id=channel.id, code=failure.code, action=failure.action)
            if failure.action is GraphAction.REAUTHORIZE:
                await d.channels.set_status(
                    channel.id, "needs_reauth", f"Graph error {failure.code}: {failure.message}"
                )
            if index == 0:
                # A timeout or a server error may still have delivered it: then the key stays taken.
                progress.refused = not may_have_gone_out(failure)
                if failure.action is GraphAction.WINDOW_CLOSED:
                    raise WindowClosed(f"{name} refused the reply outside its reply window: {failure.message}")
                raise ChannelRefused(f"{name} did not take the message: {failure.message}")
            # Part of it went out: the thread keeps what the customer got, and the person is told the rest failed.
            got = " ".join(split_text(text, **text_limits(channel.platform))[:index])
            stored = await self._store(contact, channel, got, author, sent_ids, key, partial=True)
            raise ChannelRefused(
                f"{name} took {index} of {len(requests)} parts of the message (stored as {stored}); the rest was"
                f" refused: {failure.message}"
            )
        return SentReply(await self._store(contact, channel, text, author, sent_ids, key), len(requests))

    async def _latest(self, contact: Contact, channel_ids: list[str]) -> tuple[Channel, int | None]:
        """The channel the customer last wrote on (of the bot's connected ones on the platform), and when."""
        best: tuple[Channel, int | None] | None = None
        for channel_id in channel_ids:
            last = await self._d.state.last_inbound(channel_id, contact.external_id)
            if best is None or (last is not None and (best[1] is None or last > best[1])):
                best = (await self._d.channels.get(channel_id), last)
        assert best is not None  # the caller passes at least one channel
        return best

    async def _store(
        self,
        contact: Contact,
        channel: Channel,
        text: str,
        author: str,
        sent_ids: list[str],
        key: str | None,
        *,
        partial: bool = False,
    ) -> str:
        d = self._d
        bot = await d.bots.current(contact.bot_id)
        account = await d.accounts.current(contact.account_id)
        model = resolve_model(bot, await d.plans.current(account.plan_id))
        await d.tokens.ready(model)
        message = NewMessage(
            "agent", text, d.tokens.count_text(model, text), encoding_name_for_model(model), author=author
        )
        now = d.clock.now_ms()

        async def keep(tx: Transaction) -> list[str]:
            stored = await d.conversations.append(tx, contact, [message], request_id=None)
            if key is not None:
                await d.keys.complete(tx, contact.id, key, stored[0], partial=partial)
            # Its echo (Messenger, Instagram) is then known as ours, not as another person taking over.
            await d.state.record_sent(tx, channel.id, sent_ids, now)
            return stored

        [stored] = await d.db.run(keep)
        minutes = bot.handover_pause_minutes or FALLBACK_PAUSE_MINUTES
        await d.state.pause(
            channel.id, contact.external_id, now + minutes * 60_000, reason="human_takeover", source="agent"
        )
        log.info("agent_replied", channel_id=channel.id, contact_id=contact.id, parts=len(sent_ids))
        return stored
