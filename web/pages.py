"""The dashboard's pages: each reads and changes through the API's own handler objects, with the signed-in person
as their caller (web/signin.py), and renders what they answer. A refusal the API would answer with a status and
a message is a page with that status and those words.

    GET  /dashboard/login                         the sign-in form
    POST /dashboard/login                         sign in (email, password, csrf)
    POST /dashboard/logout                        sign out
    GET  /dashboard/                              overview: this month's figures, tokens by day, channel health
    GET  /dashboard/conversations                 the inbox: newest first, search, platform and bot filters
    GET  /dashboard/conversations/{contact_id}    one conversation, with pause/resume and the Reply box
    POST /dashboard/conversations/{contact_id}/messages, /pause, /resume
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment
from markupsafe import Markup

from api.bodies import Query
from api.conversations.handlers import Conversations
from api.conversations.models import AgentMessageRequest, ConversationsQuery, PauseRequest
from api.dashboard.ranges import RangeQuery, UsageQuery
from api.dashboard.reports import Reports
from api.errors import ApiError
from api.jwt_auth import principal
from api.pagination import PageQuery, encode_cursor
from api.query import AccountQuery
from api.status.handlers import Status
from api.status.models import WebhookStatusQuery
from core.clock import Clock
from core.errors import GatewayError
from core.pricing import format_usd
from core.storage.bots import BotStore
from core.storage.web_sessions import WebSession
from web.admin_pages import AdminPageDeps, AdminPages
from web.bot_pages import BotPageDeps, BotPages
from web.charts import daily_tokens
from web.forms import GivenBody, GivenQuery
from web.key_pages import KeyPageDeps, KeyPages
from web.rendering import Renderer, checked_form, read_form, refusal, see_other, session_of
from web.signin import SESSION, SignIn, SignInRefused, client_address, same_token
from web.usage_pages import UsagePageDeps, UsagePages

PLATFORMS = (("whatsapp", "WhatsApp"), ("messenger", "Messenger"), ("instagram", "Instagram"), ("relay", "Your app"))
ROLES = {"user": "Customer", "assistant": "Bot", "agent": "Person"}
PAUSES = {
    "human_takeover": "a person answered",
    "handoff": "the bot handed the conversation to a person",
    "manual": "paused from the dashboard or the API",
}
NOTES = {
    "paused": "sent while a person had the conversation",
    "undeliverable": "arrived after the reply window closed: nobody could answer it",
    "transcript": "voice message, as transcribed",
    "image": "photo, with its caption",
}
# How many of a conversation's newest messages its page shows.
THREAD_MESSAGES = 100
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class PageDeps:
    signin: SignIn
    reports: Reports
    status: Status
    conversations: Conversations
    bots: BotStore
    templates: Environment
    clock: Clock
    bot_pages: BotPageDeps
    usage_pages: UsagePageDeps
    admin_pages: AdminPageDeps
    key_pages: KeyPageDeps


class Pages:
    def __init__(self, deps: PageDeps) -> None:
        self._d = deps
        self._r = Renderer(deps.templates)
        self.bots = BotPages(deps.bot_pages, self._r)
        self.usage = UsagePages(deps.usage_pages, self._r)
        self.admin = AdminPages(deps.admin_pages, self._r)
        self.keys = KeyPages(deps.key_pages, self._r)

    # --- signing in and out -------------------------------------------------------------------------------------

    async def signed_in(self, request: web.Request) -> WebSession | None:
        return await self._d.signin.signed_in(request)

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if await self._d.signin.signed_in(request) is not None:
            raise web.HTTPSeeOther("/dashboard/")
        return self._login_page(request, 200)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        signin = self._d.signin
        email = form.get("email", "").strip()[:320]
        if not same_token(signin.signin_form_token(request), form.get("csrf")):
            return self._login_page(request, 403, "The sign-in form had expired. Please sign in again.", email)
        try:
            address = client_address(request, signin.trusted_proxies)
            token, session = await signin.sign_in(email, form.get("password", ""), address)
        except SignInRefused as refused:
            return self._login_page(request, refused.status, str(refused), email)
        earlier = await signin.signed_in(request)
        if earlier is not None:  # signing in again (maybe as someone else): the session before it ends
            await signin.sessions.revoke(earlier.id)
        response = see_other("/dashboard/")
        signin.set_session_cookie(response, token, session, self._d.clock.now_ms())
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        form = await checked_form(request)  # another site cannot sign a person out either
        if form.get("everywhere") == "1":  # every browser and device the person signed in on
            await self._d.signin.sessions.revoke_all(session.person.id)
        else:
            await self._d.signin.sessions.revoke(session.id)
        response = see_other("/dashboard/login")
        self._d.signin.clear_session_cookie(response)
        return response

    def _login_page(self, request: web.Request, status: int, error: str | None = None, email: str = "") -> web.Response:
        token, new = self._d.signin.signin_token(request)
        response = self._r.html("login.html", status, person=None, csrf=token, error=error, email=email)
        if new:
            self._d.signin.set_signin_cookie(response, token)
        return response

    # --- pages --------------------------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        # An admin's `account_id` is the one parameter the page takes (read by the API's own rule); the API's
        # handlers check it as they would their own.
        account_id = Query(request, AccountQuery).parse_field("account_id")
        # The page shows no latency: its p95, the one figure read call by call, is left out.
        range_query = GivenQuery(request, RangeQuery(account_id=account_id))
        metrics = await self._d.reports.figures(request, range_query, latency=False)
        usage = await self._d.reports.usage(request, GivenQuery(request, UsageQuery(account_id=account_id)))
        health = await self._d.status.webhooks_status(
            request, GivenQuery(request, WebhookStatusQuery(account_id=account_id))
        )
        scope = "Every account" if metrics.account_id is None else f"Account {metrics.account_id}"
        return self._r.page(
            "overview.html",
            session,
            section="overview",
            metrics=metrics,
            chart=daily_tokens(usage),
            channels=health.channels,
            scope_name=scope,
        )

    async def conversations(self, request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        query = Query(request, ConversationsQuery)
        listing = await self._d.conversations.list_conversations(request, query)
        asked = query.parse()
        # The account's bots, for the filter: the person's own account, or the one an admin is looking at (the
        # listing above has checked it).
        account_id = session.person.account_id or asked.account_id
        bots = await self._d.bots.list(account_id) if account_id else []
        next_page = None
        if listing.next_cursor:
            kept = {k: v for k, v in request.query.items() if k != "cursor"}
            next_page = "/dashboard/conversations?" + urlencode({**kept, "cursor": listing.next_cursor})
        return self._r.page(
            "conversations.html",
            session,
            section="conversations",
            listing=listing,
            query=asked,
            bots=bots,
            platforms=PLATFORMS,
            next_page=next_page,
        )

    async def conversation(self, request: web.Request, **reply: Any) -> web.StreamResponse:
        session = session_of(request)
        handlers = self._d.conversations
        first = await handlers.read_conversation(request, GivenQuery(request, PageQuery(limit=1)))
        count = first.conversation.message_count
        cursor = request.query.get("cursor")
        if cursor is None and count > THREAD_MESSAGES:  # the newest messages, not the oldest
            cursor = encode_cursor((count - THREAD_MESSAGES,))
        detail = await handlers.read_conversation(
            request, GivenQuery(request, PageQuery(cursor=cursor, limit=THREAD_MESSAGES))
        )
        page_url = f"/dashboard/conversations/{detail.conversation.id}"
        more = None
        if detail.next_cursor:
            more = f"{page_url}?" + urlencode({"cursor": detail.next_cursor})
        first_seq = detail.messages[0].seq if detail.messages else 1
        earlier = None
        if first_seq > 1:
            start = first_seq - 1 - THREAD_MESSAGES
            earlier = page_url + (f"?{urlencode({'cursor': encode_cursor((start,))})}" if start > 0 else "?cursor=")
        return self._r.page(
            "conversation.html",
            session,
            section="conversations",
            status=reply.pop("status", 200),
            detail=detail,
            more_messages=more,
            earlier_messages=earlier,
            live=detail.next_cursor is None,  # the newest page refreshes itself
            version=f"{len(detail.messages)}-{detail.messages[-1].id if detail.messages else ''}",
            can_write=principal(request).can_write,
            reply_key=reply.get("key") or secrets.token_urlsafe(16),
            reply_text=reply.get("reply_text", ""),
            reply_error=reply.get("reply_error"),
            reply_sent=reply.get("reply_sent", request.query.get("sent") == "1"),
        )

    async def reply(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request)
        text = form.get("text", "").replace("\r\n", "\n")  # browsers send a textarea's line breaks as CRLF
        # The form's own key (a double click, a form sent again: one message). Kept when the page comes back with
        # a refusal: sending again is then safe, whether or not the first attempt reached the customer.
        key = form.get("key", "") if _KEY.fullmatch(form.get("key", "")) else secrets.token_urlsafe(16)
        try:
            sent = AgentMessageRequest.model_validate({"text": text})
        except ValueError:
            words = "Write a message of 1 to 4,096 characters."
            return await self.conversation(request, status=400, reply_text=text[:4096], reply_error=words, key=key)
        try:
            await self._d.conversations.answer(request, GivenBody(request, sent), lambda _: key)
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            if refused.status in (400, 409, 502, 503):
                words = refused.message
                return await self.conversation(
                    request, status=refused.status, reply_text=text, reply_error=words, key=key
                )
            raise
        raise web.HTTPSeeOther(f"/dashboard/conversations/{request.match_info['contact_id']}?sent=1")

    async def pause(self, request: web.Request) -> web.StreamResponse:
        await checked_form(request)
        await self._d.conversations.pause_conversation(request, GivenBody(request, PauseRequest()))
        raise web.HTTPSeeOther(f"/dashboard/conversations/{request.match_info['contact_id']}")

    async def resume(self, request: web.Request) -> web.StreamResponse:
        await checked_form(request)
        await self._d.conversations.resume_conversation(request)
        raise web.HTTPSeeOther(f"/dashboard/conversations/{request.match_info['contact_id']}")

    # --- helpers ------------------------------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """The dashboard is served over TLS (PUBLIC_BASE_URL is https)."""
        return self._d.signin.secure_cookies

    def error_page(self, request: web.Request, status: int, message: str) -> web.Response:
        session = request.get(SESSION)
        heading = {403: "Not allowed", 404: "Not found", 429: "Too many requests"}.get(status, "Something went wrong")
        values = {"person": session.person, "csrf": session.csrf} if session else {"person": None, "csrf": ""}
        return self._r.html("error.html", status, heading=heading, message=message, **values)


def template_helpers() -> dict[str, Any]:
    """The functions templates use to write numbers, money, times and names."""

    def number(value: int | None) -> str:
        return "0" if value is None else f"{value:,}"

    def counted(value: int, one: str, many: str) -> str:
        return f"{value:,} {one if value == 1 else many}"

    def usd(nanousd: int) -> str:
        """Costs are whole billionths of a dollar (core/pricing.py): dollars and cents from a dollar up, else the
        API's own digits."""
        return f"${Decimal(nanousd) / 10**9:,.2f}" if nanousd >= 10**9 else f"${format_usd(nanousd)}"

    def when(epoch_ms: int | None) -> Markup:
        if epoch_ms is None:
            return Markup("")
        at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
        return Markup('<time datetime="{}">{}</time>').format(at.isoformat(), at.strftime("%d %b %Y %H:%M UTC"))

    return {
        "number": number,
        "counted": counted,
        "usd": usd,
        "when": when,
        "platform_name": lambda key: dict(PLATFORMS).get(key, key),
        "role_name": lambda role: ROLES.get(role, role),
        "pause_words": lambda reason: PAUSES.get(reason or "", "paused"),
        "note_words": lambda note: NOTES.get(note, note),
    }
