"""Answering one inbox event: from a customer's message to the reply delivered through the Graph API.

The order matters:
  1. echoes        - a message from the business side that we did not send means a human answered: pause.
  2. gates         - disconnected or re-authorisation-needed channels, paused conversations: no reply.
  3. reply text    - stored with its charge in one commit (the turn's keep_reply), so a resend never calls the model
                     again; media we cannot read get the bot's short media answer without a model call.
  4. send          - the parts, once the typing indicator (sent as step 3 starts) is answered; each part sent is
                     recorded, so a retry resumes after it.
Failures: the model -> retry with backoff, then the bot's fallback message once (dead letter); quota or rate limit
-> one polite notice per window; Graph throttling -> retry; error 190 -> the channel needs re-authorisation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import regex
import structlog

from adapters.events import Attachment, ContentType, EventKind, InboundEvent, event_from_json
from adapters.graph_client import GraphClient
from adapters.graph_errors import GraphAction
from adapters.replies import ECHO_MARK, text_requests, typing_request
from core.chat import ImagePart
from core.clock import Clock
from core.engine import ConversationEngine, TurnRequest
from core.errors import (
    AccountLocked,
    GatewayError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StorageUnavailable,
)
from core.handoff import Handoff, Handoffs
from core.media.customer_media import CustomerMedia, MediaFailure, fetchable
from core.models import Bot, Channel, Contact
from core.paid_calls import Payer
from core.storage.accounts import AccountStore
from core.storage.activity import record_undeliverable
from core.storage.bots import BotStore
from core.storage.channels import ChannelStore
from core.storage.conversation_state import ConversationStateStore
from core.storage.db import Check, Transaction
from core.storage.inbox_queue import InboxItem, InboxQueue, LeaseLost
from core.storage.quota import QuotaService

log = structlog.get_logger("core.channel_worker")

DEFAULT_MEDIA_REPLY = "Thanks! I can only read text messages for now. Could you tell me in words what you need?"
# The photos of an album arrive as separate messages within a moment; the first of them is answered.
ALBUM_WINDOW_MS = 10_000
VOICE_SILENT = "I couldn't hear anything in your voice message. Could you send it again, or type your question?"
QUOTA_NOTICE = "Sorry, we can't answer right now. The business has been notified and will get back to you."
RATE_NOTICE = "You're sending messages faster than I can answer. Please wait a moment, then send your question again."
NOTICE_WINDOW_MS = {"quota": 24 * 3600 * 1000, "rate": 60 * 1000, "media": 60 * 1000}
MAX_RETRY_DELAY_MS = 10 * 60 * 1000
# Meta refuses free-form replies 24 h after the customer's message; past this age the model is not called.
REPLY_WINDOW_MS = 23 * 3600 * 1000 + 45 * 60 * 1000
# Events of a channel waiting for a new token are looked at again this often (and at once when it gets one).
REAUTH_HOLD_MS = 2 * 60 * 1000
MAX_ATTEMPTS = 5  # then the event is a dead letter and the customer gets the bot's fallback message once
_BACKOFF_MS = (1_000, 5_000, 15_000, 60_000, 120_000)
_SILENT = frozenset({GraphAction.WINDOW_CLOSED, GraphAction.RECIPIENT_UNAVAILABLE, GraphAction.THREAD_OWNED_ELSEWHERE})


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    queue: InboxQueue
    channels: ChannelStore
    bots: BotStore
    accounts: AccountStore
    state: ConversationStateStore
    quota: QuotaService
    engine: ConversationEngine | None
    graph: GraphClient
    clock: Clock
    lease_seconds: float
    handoffs: Handoffs
    media: CustomerMedia | None = None  # customers' voice notes heard and photos seen


class ChannelWorker:
    def __init__(self, deps: WorkerDeps) -> None:
        self._d = deps
        self._typing_sends: dict[tuple[str, int], asyncio.Task[None]] = {}  # by event and attempt (a claim)

    async def process(self, item: InboxItem) -> None:
        bound = log.bind(inbox_id=item.id, channel_id=item.channel_id, kind=item.kind, attempt=item.attempts)
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(item))
        try:
            await self._process(item)
        except LeaseLost:
            # Our lease ran out and another worker has the event: it answers; we touch nothing more.
            bound.warning("inbox_lease_lost")
        except Exception as exc:
            # A poison event (a bug, bad data): retried with backoff, then dead-lettered with the fallback.
            bound.exception("inbox_event_failed")
            with contextlib.suppress(LeaseLost):
                await self._failed(item, f"{type(exc).__name__}: {exc}"[:500])
        finally:
            heartbeat.cancel()
            typing = self._typing_sends.pop((item.id, item.attempts), None)
            if typing is not None:  # nothing was sent for the event (skipped, retried later): no need of it now
                typing.cancel()
                await asyncio.gather(typing, return_exceptions=True)

    async def _heartbeat(self, item: InboxItem) -> None:
        """Keep the lease alive while the turn runs, so a slow model or slow sends never hand it to a second
        worker; renewed at a third of the lease, so two missed beats still leave time."""
        while True:
            await asyncio.sleep(self._d.lease_seconds / 3)
            try:
                if not await self._d.queue.extend(item):
                    return  # lost: the fence stops this worker's next change
            except StorageUnavailable:
                log.warning("inbox_lease_renewal_failed", inbox_id=item.id)  # the next beat tries again

    async def _process(self, item: InboxItem) -> None:
        d = self._d
        event = event_from_json(item.event_json)
        echo = event.kind is EventKind.ECHO
        try:
            if echo:  # recorded, never answered: no secret is opened for it (a takeover pause needs none)
                channel, secrets = await d.channels.get(item.channel_id), None
            else:  # the channel and its secrets, opened, as turns keep them (core/storage/recent.py)
                channel, secrets = await d.channels.current_with_secrets(item.channel_id)
        except NotFound:
            await d.queue.finish(item, "skipped", "channel disconnected")
            return
        if echo:
            await self._echo(item, channel, event)
            return
        if channel.status == "needs_reauth":
            # Held, not dropped: once the owner gives a new token the conversation is answered (what the 24-hour
            # window still allows). A disabled channel is the owner's choice to stop: skipped.
            if d.clock.now_ms() - event.timestamp_ms > REPLY_WINDOW_MS:
                # Past the window nothing can be sent any more: let it go rather than hold it forever.
                await self._undeliverable(item, channel, event, "the channel needed re-authorisation past the window")
                return
            await d.queue.hold(item, REAUTH_HOLD_MS, "channel needs re-authorisation")
            return
        if channel.status != "active":
            await d.queue.finish(item, "skipped", f"channel {channel.status}")
            return
        if event.customer_id is None:
            await d.queue.finish(item, "skipped", "no customer to answer")
            return
        reply = item.reply_text
        if reply is None:
            # The reply window runs from the customer's latest message; a person may have the conversation.
            pause = await d.state.inbound(channel.id, event.customer_id, event.timestamp_ms)
            if pause is not None:
                await self._keep(item, channel, event, "paused", "skipped", "a person has this conversation")
                return
            if d.clock.now_ms() - event.timestamp_ms > REPLY_WINDOW_MS:
                # Delivered or retried too late: Meta would refuse the reply, so nothing is generated or billed.
                await self._undeliverable(item, channel, event, "it arrived after the 24-hour reply window")
                return
        assert secrets is not None  # opened for every event but echoes
        token = secrets.access_token
        if reply is None:
            # The indicator goes out while the reply is made: a Graph round trip less before every answer. `_send`
            # waits for it before the first part of anything sent for this event.
            self._typing_sends[item.id, item.attempts] = asyncio.create_task(self._typing(channel, event, token))
            reply = await self._reply(item, channel, event, token)
            if reply is None:
                return  # _reply finished or rescheduled the item itself
            # A person may have taken over while the reply was being made (an echo, an agent's reply): the bot does
            # not talk over them. Its own handoff pauses too, and its handoff message still goes out.
            pause = await d.state.paused(channel.id, event.customer_id)
            if pause is not None and pause.reason != "handoff":
                await d.queue.finish(item, "skipped", "a person took over while the reply was being written")
                return
        await self._send(item, channel, event, reply, final_state="done", token=token)

    async def _echo(self, item: InboxItem, channel: Channel, event: InboundEvent) -> None:
        d = self._d
        ours = event.echo_metadata == ECHO_MARK or (
            event.message_id is not None and await d.state.is_ours(channel.id, event.message_id)
        )
        if event.message_id and not ours and event.customer_id:
            bot = await d.bots.get(channel.bot_id)
            until = d.clock.now_ms() + bot.handover_pause_minutes * 60_000
            await d.state.pause(channel.id, event.customer_id, until, reason="human_takeover", source="echo")
            log.info("human_takeover", channel_id=channel.id, minutes=bot.handover_pause_minutes)
        await d.queue.finish(item, "done")

    async def _undeliverable(self, item: InboxItem, channel: Channel, event: InboundEvent, reason: str) -> None:
        """The customer wrote, and the reply window closed before we could answer: the message is kept in the
        conversation (marked), the account's activity feed says so, and so do the log and /metrics."""
        log.warning("message_undeliverable", channel_id=channel.id, inbox_id=item.id, reason=reason, alert=True)

        async def tell(tx: Transaction, contact_id: str) -> None:
            await record_undeliverable(tx, channel.id, contact_id, reason, self._d.clock.now_ms())

        await self._keep(item, channel, event, "undeliverable", "undeliverable", reason, tell)

    async def _keep(
        self,
        item: InboxItem,
        channel: Channel,
        event: InboundEvent,
        note: str,
        state: str,
        reason: str,
        tell: Callable[[Transaction, str], Awaitable[None]] | None = None,
    ) -> None:
        """The customer's message stored in the conversation unanswered, and the event finished, in one commit."""
        d = self._d
        if d.engine is None or event.customer_id is None:  # no model configured: nothing keeps conversations
            await d.queue.finish(item, state, reason)
            return
        bot = await d.bots.current(channel.bot_id)
        account = await d.accounts.current(channel.account_id)
        text = model_input(event) or media_description(event)

        async def finish(tx: Transaction, contact_id: str) -> None:
            if tell is not None:
                await tell(tx, contact_id)
            await d.queue.finish_in(tx, item, state, reason)

        request = TurnRequest(account, bot, channel.platform, event.customer_id, text, item.id)
        await d.engine.remember(request, note, finish)

    async def _reply(self, item: InboxItem, channel: Channel, event: InboundEvent, token: str) -> str | None:
        d = self._d
        bot = await d.bots.current(channel.bot_id)
        prompt = model_input(event)
        note: str | None = None
        images: tuple[ImagePart, ...] = ()
        picture = fetchable(event, ContentType.IMAGE)
        sees = (
            picture is not None
            and d.media is not None
            and d.engine is not None
            and await d.engine.sees_images(await d.accounts.current(channel.account_id), bot)
        )
        if sees and picture is not None:
            shown = await self._photo(item, channel, event, token, picture)
            if shown is None or isinstance(shown, _Answer):
                return None if shown is None else shown.text
            images, note = (shown,), "image"
            prompt = bounded_text(event.text or "[The customer sent a photo without a caption.]", 4000)
        audio = fetchable(event, ContentType.AUDIO)
        if prompt is None and audio is not None and d.media is not None and d.media.hears:
            try:
                heard = await self._transcript(item, channel, token, audio)
            except QuotaExceeded:
                return await self._quota_exceeded(item, channel, event, bot)
            except AccountLocked:
                await d.queue.finish(item, "skipped", "account locked")
                return None
            if heard is None or isinstance(heard, _Answer):
                return None if heard is None else heard.text
            prompt, note = heard, "transcript"
        if prompt is None:
            # One answer per window: an album of ten photos must not get ten identical replies.
            if await d.state.claim_notice(channel.id, event.customer_id or "", "media", NOTICE_WINDOW_MS["media"]):
                return bot.media_reply or DEFAULT_MEDIA_REPLY
            await d.queue.finish(item, "skipped", "media answer already sent")
            return None
        if d.engine is None:
            await self._retry(item, "OPENAI_API_KEY is not set")
            return None
        account = await d.accounts.current(channel.account_id)
        # Taken over (or retried): an earlier attempt that died mid-call left its reservation under this event's
        # id; this attempt reserves anew, so that one goes back now rather than at its expiry.
        if item.attempts > 1 and (released := await d.quota.release_abandoned(account.id, item.id)):
            log.info("abandoned_reservation_released", inbox_id=item.id, tokens=released)

        async def keep(tx: Transaction, reply: str) -> Check:
            return await d.queue.store_reply(tx, item, reply)

        async def handed_off(tx: Transaction, contact: Contact, handoff: Handoff) -> None:
            await d.handoffs.record(tx, contact, channel.id, handoff)

        request = TurnRequest(
            account, bot, channel.platform, event.customer_id or "", prompt, item.id, keep, handed_off, note, images
        )
        try:
            result = await d.engine.handle(request)
        except QuotaExceeded:
            return await self._quota_exceeded(item, channel, event, bot, request)
        except RateLimited:
            await self._notice(item, channel, event, "rate", RATE_NOTICE)
            return None
        except AccountLocked:
            await d.queue.finish(item, "skipped", "account locked")
            return None
        except GatewayError as exc:
            await self._failed(item, f"{type(exc).__name__}: {exc}"[:500])
            return None
        return result.reply

    async def _quota_exceeded(
        self, item: InboxItem, channel: Channel, event: InboundEvent, bot: Bot, request: TurnRequest | None = None
    ) -> str | None:
        """The account's tokens are used up: a person takes over (handoff_on_quota), or one polite notice."""
        d = self._d
        if bot.handoff_on_quota and d.engine is not None:
            if request is None:  # a voice note not transcribed: the conversation shows what came
                account = await d.accounts.current(channel.account_id)
                request = TurnRequest(
                    account,
                    bot,
                    channel.platform,
                    event.customer_id or "",
                    media_description(event),
                    item.id,
                    lambda tx, reply: d.queue.store_reply(tx, item, reply),
                    lambda tx, contact, handoff: d.handoffs.record(tx, contact, channel.id, handoff),
                )
            try:
                return (await d.engine.hand_off(request, "quota")).reply
            except AccountLocked:
                await d.queue.finish(item, "skipped", "account locked")
                return None
        await self._notice(item, channel, event, "quota", QUOTA_NOTICE)
        return None

    async def _transcript(
        self, item: InboxItem, channel: Channel, token: str, audio: Attachment
    ) -> str | _Answer | None:
        """A voice note's words: stored on the event by an earlier attempt, or heard now (stored with their charge).
        An answer for the customer when they cannot be had; None when the event was rescheduled."""
        d = self._d
        assert d.media is not None
        heard = item.media_text  # transcribed (and charged) by an earlier attempt
        if heard is None:
            account = await d.accounts.current(channel.account_id)
            payer = Payer(account.id, channel.bot_id, channel.platform, request_id=item.id)
            got = await d.media.heard(
                channel, audio, token, payer, lambda tx, words: d.queue.store_media_text(tx, item, words)
            )
            if isinstance(got, MediaFailure):
                return await self._media_failed(item, channel, got)
            heard = got
        return heard if heard.strip() else _Answer(VOICE_SILENT)

    async def _photo(
        self, item: InboxItem, channel: Channel, event: InboundEvent, token: str, picture: Attachment
    ) -> ImagePart | _Answer | None:
        """A photo for the model, downloaded now. An album's photos arrive as separate messages within a moment:
        the first is answered, the others are kept in the conversation unanswered (one answer per album, as for
        the media answer). An answer for the customer when the photo cannot be had; None when the event was
        finished or rescheduled."""
        d = self._d
        assert d.media is not None
        shown = await d.media.seen(channel, picture, token)
        if isinstance(shown, MediaFailure):
            return await self._media_failed(item, channel, shown)
        # Claimed once the photo is in hand: a photo that failed and is retried must not find its own claim.
        if not await d.state.claim_album(channel.id, event.customer_id or "", ALBUM_WINDOW_MS):
            await self._keep(item, channel, event, "image", "skipped", "another photo of the album was answered")
            return None
        return shown

    async def _media_failed(self, item: InboxItem, channel: Channel, failure: MediaFailure) -> _Answer | None:
        """Tried again later while it may still work; else the customer is told, in words, never left waiting."""
        reason, temporary = failure.reason, failure.temporary
        log.warning("media_failed", inbox_id=item.id, channel_id=channel.id, reason=reason, temporary=temporary)
        if temporary and item.attempts < MAX_ATTEMPTS:
            await self._d.queue.retry_later(item, _backoff(item.attempts), reason[:500])
            return None
        return _Answer(failure.answer)

    async def _notice(self, item: InboxItem, channel: Channel, event: InboundEvent, kind: str, text: str) -> None:
        """Send one polite notice per window; later messages in the window are recorded, not answered."""
        d = self._d
        if await d.state.claim_notice(channel.id, event.customer_id or "", kind, NOTICE_WINDOW_MS[kind]):
            await self._send(item, channel, event, text, final_state="done", note=f"{kind} notice")
        else:
            await d.queue.finish(item, "skipped", f"{kind} notice already sent")

    async def _typing(self, channel: Channel, event: InboundEvent, token: str) -> None:
        """Best effort: a typing indicator that fails must not stop the answer (Graph answers its failures as values;
        anything else raised here is logged, never raised into the send that waits for it)."""
        request = typing_request(channel.platform, channel.external_id, event.customer_id, event.message_id)
        if request is None:
            return
        try:
            await self._d.graph.send(request, token)
        except Exception:
            log.exception("typing_indicator_failed", channel_id=channel.id)

    async def _send(
        self,
        item: InboxItem,
        channel: Channel,
        event: InboundEvent,
        text: str,
        *,
        final_state: str,
        note: str | None = None,
        token: str | None = None,
    ) -> None:
        d = self._d
        reply_to = event.message_id if channel.platform == "whatsapp" else None
        assert event.customer_id is not None  # _process skips events without a customer before any send
        parts = text_requests(
            channel.platform, channel.external_id, event.customer_id, text, reply_to_message_id=reply_to
        )
        if token is None:  # notices and the fallback: rare paths that open it themselves
            token = (await d.channels.secrets(channel.id)).access_token
        if item.reply_parts_sent >= len(parts):  # every part went out before a crash or lost lease: only finish
            await d.queue.finish(item, final_state, note)
            return
        typing = self._typing_sends.pop((item.id, item.attempts), None)
        if typing is not None:
            # The indicator first: one that landed after the reply would show the customer "typing" for 25 s more.
            await typing
        for index in range(item.reply_parts_sent, len(parts)):
            result = await d.graph.send(parts[index], token)
            if result.ok:
                last = index + 1 == len(parts)
                await d.queue.part_sent(
                    item, index + 1, result.message_id, finish=(final_state, note) if last else None
                )
                continue
            failure = result.failure
            assert failure is not None
            if failure.action is GraphAction.REAUTHORIZE:
                await d.channels.set_status(
                    channel.id, "needs_reauth", f"Graph error {failure.code}: {failure.message}"
                )
                log.error("channel_needs_reauthorisation", channel_id=channel.id, code=failure.code, alert=True)
                # The reply stays stored and the parts sent counted: after re-authorisation it goes out as is.
                await d.queue.hold(item, REAUTH_HOLD_MS, "channel needs re-authorisation")
            elif failure.action is GraphAction.RETRY and item.attempts < MAX_ATTEMPTS:
                # Capped: a conversation must not wait hours (its later messages queue behind it).
                delay = min(int(failure.retry_after * 1000), MAX_RETRY_DELAY_MS) if failure.retry_after else None
                delay = delay or _backoff(item.attempts)
                await d.queue.retry_later(item, delay, f"graph {failure.code}: {failure.message}")
            elif failure.action in _SILENT:
                # Outside the 24-hour window, blocked, or another app owns the thread: recorded, not retried.
                await d.queue.finish(item, "undeliverable", f"graph {failure.code}: {failure.message}")
            else:
                await d.queue.finish(item, "dead", f"graph {failure.code}: {failure.message}")
            log.warning("graph_send_failed", channel_id=channel.id, code=failure.code, action=failure.action)
            await d.channels.note_error(channel.id, f"graph {failure.code}: {failure.message}")
            return

    async def _retry(self, item: InboxItem, error: str) -> None:
        if item.attempts < MAX_ATTEMPTS:
            await self._d.queue.retry_later(item, _backoff(item.attempts), error)
        else:
            await self._failed(item, error)

    async def _failed(self, item: InboxItem, error: str) -> None:
        """Retry while attempts remain; then dead-letter and send the bot's fallback message, once."""
        d = self._d
        if item.attempts < MAX_ATTEMPTS:
            await d.queue.retry_later(item, _backoff(item.attempts), error)
            return
        log.error("inbox_dead_letter", inbox_id=item.id, channel_id=item.channel_id, error=error, alert=True)
        await d.channels.note_error(item.channel_id, f"dead letter: {error}")
        try:
            channel = await d.channels.get(item.channel_id)
            event = event_from_json(item.event_json)
            if channel.status == "active" and event.customer_id and item.reply_text is None:
                bot = await d.bots.get(channel.bot_id)
                await d.bots.fallback_sent(channel.id, event.customer_id, item.id, item.attempts)  # dashboards
                await self._send(item, channel, event, bot.fallback_message, final_state="dead", note=error)
                return
        except Exception:
            log.exception("fallback_failed", inbox_id=item.id)
        await d.queue.finish(item, "dead", error)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the customer is told instead of a turn (a voice note that could not be had)."""

    text: str


def model_input(event: InboundEvent, max_chars: int = 4000) -> str | None:
    """What the model is told the customer sent, or None for media it cannot read (answered without it)."""
    described = _describe(event)
    return None if described is None else bounded_text(described, max_chars)


def bounded_text(text: str, max_chars: int) -> str:
    """Storable, bounded text: lone surrogates replaced, cut on a grapheme boundary at `max_chars`."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) <= max_chars:
        return text
    kept, size = [], 0
    for grapheme in regex.findall(r"\X", text):
        if size + len(grapheme) > max_chars:
            break
        kept.append(grapheme)
        size += len(grapheme)
    return "".join(kept)


def media_description(event: InboundEvent) -> str:
    """What a conversation shows for a message the model was not given (a photo, a voice note, a sticker)."""
    kind = event.content_type.value if event.content_type is not None else "message"
    return f"[{kind}]"


def _describe(event: InboundEvent) -> str | None:
    if event.button is not None:
        return event.button.title or event.button.payload or None
    if event.location is not None:
        place = ", ".join(p for p in (event.location.name, event.location.address) if p)
        where = f"{place} " if place else ""
        return f"[The customer shared a location: {where}({event.location.latitude}, {event.location.longitude})]"
    if event.contacts:
        shared = "; ".join(f"{c.name} {' '.join(c.phones)}".strip() for c in event.contacts)
        return f"[The customer shared a contact: {shared}]"
    if event.content_type in (ContentType.TEXT, ContentType.FALLBACK, None) and event.text:
        return event.text
    if event.text:  # media with a caption: the caption is what the customer is saying
        return f"[The customer sent a {event.content_type or 'message'} with the caption:] {event.text}"
    return None


def _backoff(attempts: int) -> int:
    return _BACKOFF_MS[min(max(attempts, 1), len(_BACKOFF_MS)) - 1]
