"""The Bots pages: an account's bots, each bot's settings and channels, its knowledge, and the "try it" chat.
Each reads and changes through the API's handler objects, as the signed-in person.

    GET  /dashboard/bots                                    the caller's account's bots (an admin: pick an account)
    GET  /dashboard/accounts/{account_id}/bots              an account's bots, and a form to add one
    POST /dashboard/accounts/{account_id}/bots              add a bot
    GET  /dashboard/bots/{bot_id}                           settings and channels
    POST /dashboard/bots/{bot_id}                           change the settings
    POST /dashboard/bots/{bot_id}/channels                  connect a channel
    POST /dashboard/bots/{bot_id}/channels/{channel_id}/token        give a channel a new access token
    POST /dashboard/bots/{bot_id}/channels/{channel_id}/disconnect   disconnect a channel
    GET  /dashboard/bots/{bot_id}/knowledge                 documents, and the search box (?q=)
    POST /dashboard/bots/{bot_id}/knowledge                 add a text (a form) or a file (an upload)
    POST /dashboard/bots/{bot_id}/knowledge/{document_id}/delete     delete a document
    GET  /dashboard/bots/{bot_id}/try, POST                 the "try it" chat
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from api.bodies import JsonOrUpload, Upload, validate
from api.context import request_id
from api.errors import ApiError
from api.jwt_auth import principal
from api.provisioning.bots import Bots
from api.provisioning.channels import Channels
from api.provisioning.knowledge import Knowledge
from api.provisioning.models import BotChanges, ChannelChanges, ChannelConnect, KnowledgeRequest, SearchQuery
from core.errors import GatewayError, NotFound
from core.models import Bot, BotSettings
from core.storage.accounts import AccountStore
from core.storage.plans import PlanStore
from core.storage.rate_limits import RateLimitStore
from web.forms import GivenBody, GivenQuery, GivenUpload, Kind, form_values
from web.rendering import (
    Renderer,
    check_form_token,
    checked_form,
    first_sending,
    new_form_key,
    read_form,
    refusal,
    session_of,
    to_own_account,
)
from web.try_chat import TryChat, TryTurn, new_chat, test_customer

SETTINGS: dict[str, Kind] = {
    "name": "text",
    "persona": "text",
    "model": "optional_text",
    "temperature": "optional_number",
    "max_reply_tokens": "whole",
    "memory_tokens": "whole",
    "fallback_message": "text",
    "media_reply": "optional_text",
    "handover_pause_minutes": "whole",
    "knowledge_mode": "text",
    "no_answer_message": "text",
    "knowledge_tokens": "whole",
    "handoff_enabled": "checkbox",
    "handoff_message": "text",
    "handoff_on_no_answer": "checkbox",
    "handoff_on_quota": "checkbox",
    "keep_images": "checkbox",
}
KNOWLEDGE_MODES = (
    ("augment", "Use what is found, and answer from the persona otherwise"),
    ("strict", "Answer only from the knowledge (the no-answer message otherwise)"),
    ("off", "Do not use the knowledge"),
)
# The try-it chat shows this many of its newest exchanges (the bot's memory holds what its settings allow).
SHOWN_TURNS = 10
_TURN_CHARS = 4000
_TURNS_FIELD = frozenset({"turns"})
_PERSONA_FIELD = frozenset({"persona"})  # up to 20,000 characters: the model's own check says when it is too long
_TEXT_FIELD = frozenset({"text"})  # a knowledge text, up to the body limit
_CHAT = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True, slots=True)
class BotPageDeps:
    bots: Bots
    channels: Channels
    knowledge: Knowledge
    accounts: AccountStore
    plans: PlanStore
    try_chat: TryChat | None  # None without a model to call (OPENAI_API_KEY unset)
    limiter: RateLimitStore  # a try-it form sent twice is one message
    max_upload: int


class BotPages:
    def __init__(self, deps: BotPageDeps, renderer: Renderer) -> None:
        self._d = deps
        self._r = renderer

    async def choose(self, request: web.Request) -> web.StreamResponse:
        to_own_account(request, "bots")

    async def listing(self, request: web.Request, **form: Any) -> web.StreamResponse:
        listed = await self._d.bots.list_bots(request)
        account = await self._d.accounts.get(request.match_info["account_id"])
        return self._r.page(
            "bots.html",
            session_of(request),
            section="bots",
            status=form.pop("status", 200),
            account=account,
            bots=listed.bots,
            can_write=principal(request).can_write,
            new_name=form.get("name") or "",
            new_persona=form.get("persona") or "",
            error=form.get("error"),
        )

    async def create(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request, _PERSONA_FIELD)
        try:
            settings = validate(BotSettings, form_values(form, {"name": "text", "persona": "text"}), None)
            bot = await self._d.bots.create_bot(request, GivenBody(request, settings))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.listing(
                request,
                status=refused.status,
                error=refused.message,
                name=form.get("name"),
                persona=form.get("persona"),
            )
        raise web.HTTPSeeOther(f"/dashboard/bots/{bot.id}?created=1")

    async def bot(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        bot = await self._d.bots.get_bot(request)
        channels = await self._d.channels.list_channels(request)
        plan = await self._d.plans.get((await self._d.accounts.get(bot.account_id)).plan_id)
        return self._r.page(
            "bot.html",
            session_of(request),
            section="bots",
            status=shown.pop("status", 200),
            bot=shown.pop("draft", bot),
            saved_bot=bot,
            tab="settings",
            plan=plan,
            modes=KNOWLEDGE_MODES,
            channels=channels.channels,
            can_write=principal(request).can_write,
            saved=request.query.get("saved") == "1",
            created=request.query.get("created") == "1",
            settings_error=shown.get("settings_error"),
            channel_error=shown.get("channel_error"),
            channel_typed=shown.get("channel_typed", {}),
            channel_done=request.query.get("channel"),
        )

    async def update(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request, _PERSONA_FIELD)
        values = form_values(form, SETTINGS)
        try:
            changes = validate(BotChanges, values, None)
            await self._d.bots.update_bot(request, GivenBody(request, changes))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            draft = _draft(await self._d.bots.get_bot(request), values)
            return await self.bot(request, status=refused.status, settings_error=refused.message, draft=draft)
        raise web.HTTPSeeOther(f"/dashboard/bots/{request.match_info['bot_id']}?saved=1")

    async def connect(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request)
        fields: dict[str, Kind] = {
            "platform": "text",
            "external_id": "text",
            "access_token": "text",
            "app_secret": "optional_text",
            "verify_token": "optional_text",
        }
        try:
            wanted = validate(ChannelConnect, {k: v.strip() for k, v in form_values(form, fields).items() if v}, None)
            await self._d.channels.connect_channel(request, GivenBody(request, wanted))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            typed = {"platform": form.get("platform", ""), "external_id": form.get("external_id", "")[:64]}
            return await self.bot(request, status=refused.status, channel_error=refused.message, channel_typed=typed)
        raise web.HTTPSeeOther(f"/dashboard/bots/{request.match_info['bot_id']}?channel=connected#channels")

    async def new_token(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request)
        await self._channel_of_bot(request)
        try:
            changes = validate(ChannelChanges, {"access_token": form.get("access_token", "").strip()}, None)
            await self._d.channels.update_channel(request, GivenBody(request, changes))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.bot(request, status=refused.status, channel_error=refused.message)
        raise web.HTTPSeeOther(f"/dashboard/bots/{request.match_info['bot_id']}?channel=token#channels")

    async def disconnect(self, request: web.Request) -> web.StreamResponse:
        await checked_form(request)
        await self._channel_of_bot(request)
        await self._d.channels.disconnect_channel(request)
        raise web.HTTPSeeOther(f"/dashboard/bots/{request.match_info['bot_id']}?channel=disconnected#channels")

    async def _channel_of_bot(self, request: web.Request) -> None:
        """The path's channel belongs to the path's bot, which the caller may see (else a 404)."""
        bot = await self._d.bots.get_bot(request)
        if (await self._d.channels.get_channel(request)).bot_id != bot.id:
            raise NotFound("channel")

    # --- knowledge ----------------------------------------------------------------------------------------------

    async def knowledge(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        bot = await self._d.bots.get_bot(request)
        documents = await self._d.knowledge.list_documents(request)
        q = request.query.get("q", "").strip()
        results = None
        if q:
            asked = validate(SearchQuery, {"q": q[:1000]}, None)
            results = (await self._d.knowledge.search(request, GivenQuery(request, asked))).results
        return self._r.page(
            "knowledge.html",
            session_of(request),
            section="bots",
            status=shown.pop("status", 200),
            bot=bot,
            tab="knowledge",
            documents=documents.documents,
            q=q,
            results=results,
            can_write=principal(request).can_write,
            max_upload=self._d.max_upload,
            added=request.query.get("added"),
            deleted=request.query.get("deleted") == "1",
            error=shown.get("error"),
            title=shown.get("title", ""),
            text=shown.get("text", ""),
            file_title=shown.get("file_title", ""),
        )

    async def add_document(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] = {}
        try:  # reading changes nothing: what cannot be read is said on the page, before the form token is checked
            if request.content_type == "multipart/form-data":
                upload = await JsonOrUpload(request, KnowledgeRequest).parse_either(self._d.max_upload)
                assert isinstance(upload, Upload)
                token = upload.fields.get("csrf")
                form = {"file_title": upload.fields.get("title", "")[:200]}
                sent: KnowledgeRequest | Upload = upload
            else:
                form = await read_form(request, _TEXT_FIELD)
                token = form.get("csrf")
                sent = validate(KnowledgeRequest, form_values(form, {"title": "text", "text": "text"}), None)
        except ApiError as exc:
            return await self.knowledge(request, status=exc.status, error=exc.message, **_typed(form))
        check_form_token(session_of(request), token)
        try:
            document = await self._d.knowledge.add_document(request, GivenUpload(request, KnowledgeRequest, sent))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.knowledge(request, status=refused.status, error=refused.message, **_typed(form))
        raise web.HTTPSeeOther(f"/dashboard/bots/{request.match_info['bot_id']}/knowledge?added={document.id}")

    async def delete_document(self, request: web.Request) -> web.StreamResponse:
        await checked_form(request)
        bot = await self._d.bots.get_bot(request)
        if (await self._d.knowledge.get_document(request)).bot_id != bot.id:
            raise NotFound("document")
        await self._d.knowledge.delete_document(request)
        raise web.HTTPSeeOther(f"/dashboard/bots/{bot.id}/knowledge?deleted=1")

    # --- the try-it chat ----------------------------------------------------------------------------------------

    async def try_page(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        bot = await self._d.bots.get_bot(request)
        session = session_of(request)
        chat = shown.get("chat") or new_chat()
        return self._r.page(
            "try.html",
            session,
            section="bots",
            status=shown.get("status", 200),
            bot=bot,
            tab="try",
            available=self._d.try_chat is not None,
            can_write=principal(request).can_write,
            chat=chat,
            customer=test_customer(session.person, chat),
            turns=shown.get("turns", []),
            turns_json=json.dumps([asdict(t) for t in shown.get("turns", [])]),
            key=new_form_key(),
            error=shown.get("error"),
            text=shown.get("text", ""),
        )

    async def try_turn(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request, _TURNS_FIELD)
        bot = await self._d.bots.get_bot(request)  # another account's bot: 404 before anything else
        if not principal(request).can_write:  # a test turn is charged to the account: viewers only look
            raise ApiError(403, "forbidden", "Only the account's owner can try the bot (each message is charged).")
        chat = form.get("chat", "")
        if not _CHAT.fullmatch(chat):
            chat = new_chat()
        turns = _turns(form.get("turns", ""))
        text = form.get("text", "").replace("\r\n", "\n").strip()
        if self._d.try_chat is None:
            raise ApiError(
                503, "not_configured", "The gateway has no model to call (its operator sets OPENAI_API_KEY)."
            )
        if not text or len(text) > _TURN_CHARS:
            return await self.try_page(
                request,
                status=400,
                chat=chat,
                turns=turns,
                text=text,
                error="Write a message of 1 to 4,000 characters.",
            )
        # The form's own key: the same form sent again (a reload) is not a second message, charged twice.
        if not await first_sending(self._d.limiter, request, "try", form.get("key", "")):
            return await self.try_page(
                request, status=409, chat=chat, turns=turns, error="This message was sent already; write a new one."
            )
        try:
            turn = await self._d.try_chat.turn(bot, session_of(request).person, chat, text, request_id())
        except GatewayError as exc:
            refused = refusal(exc)
            return await self.try_page(
                request, status=refused.status, chat=chat, turns=turns, text=text, error=refused.message
            )
        return await self.try_page(request, chat=chat, turns=[*turns, turn][-SHOWN_TURNS:])


def _typed(form: dict[str, str]) -> dict[str, str]:
    """What the knowledge forms had typed, to show again (a file cannot be: the browser asks for it again)."""
    return {"title": form.get("title", ""), "text": form.get("text", ""), "file_title": form.get("file_title", "")}


def _draft(bot: Bot, values: dict[str, Any]) -> dict[str, Any]:
    """The settings form as it was sent (so a refusal loses nothing typed), over the bot's saved values."""
    return {**bot.model_dump(), **values}


def _turns(carried: str) -> list[TryTurn]:
    """The exchanges the page carries from one message to the next (its own, to show again; nothing is trusted
    from them: they are only shown back to the person who sent them, escaped)."""
    try:
        raw = json.loads(carried, parse_constant=_no_constant) if carried else []
    except (ValueError, RecursionError):
        return []
    turns = []
    for item in raw[-SHOWN_TURNS:] if isinstance(raw, list) else []:
        try:
            turns.append(
                TryTurn(
                    asked=str(item["asked"])[:_TURN_CHARS],
                    reply=str(item["reply"])[: _TURN_CHARS * 4],
                    model=str(item["model"])[:100],
                    prompt_tokens=int(item["prompt_tokens"]),
                    completion_tokens=int(item["completion_tokens"]),
                    cost_nanousd=None if item["cost_nanousd"] is None else int(item["cost_nanousd"]),
                    knowledge=tuple(str(t)[:200] for t in item["knowledge"][:20]),
                    handoff=bool(item["handoff"]),
                )
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
    return turns


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a page sends")
