"""Signing people in and out, and knowing who is signed in on each request.

- The session token travels in the `nexus_session` cookie: HttpOnly, SameSite=Lax, Path=/dashboard. Served over
  TLS (PUBLIC_BASE_URL is https), the cookies are `__Host-nexus_session` and `__Host-nexus_signin`: Secure, Path=/,
  no Domain, so a browser takes them from this host alone, never from a sibling subdomain that would plant its own
  (the sign-in form's token rests on its cookie being ours). A new token is issued at every sign-in.
- Every form that changes something carries the session's form token (`csrf`), checked in constant time. The
  sign-in form, before any session exists, carries a token that must equal the `nexus_signin` cookie's (a page of
  another site can neither read that cookie nor set it).
- Sign-in attempts are limited, whether they succeed or not: 5 a minute for one email from one client address,
  30 a minute for one email from anywhere, 30 a minute from one address. (Someone guessing from elsewhere can
  slow a person's sign-in down, not stop it.) A wrong password and an unknown email get the same words, after the
  same work (core/passwords.py); at most 4 passwords are checked at once (argon2 takes 64 MiB each).
- A person of a locked account cannot sign in, and their open sessions stop working.
- Behind a TLS proxy (TRUSTED_PROXIES), a client's address is the one the proxies name in X-Forwarded-For: the
  nearest address that is not itself a trusted proxy. From anywhere else the header is ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from admin.tokens import Principal
from api.jwt_auth import PRINCIPAL
from core.passwords import Passwords
from core.storage.accounts import AccountStore
from core.storage.people import PeopleStore, email_key
from core.storage.rate_limits import RateLimitStore
from core.storage.web_sessions import SessionStore, WebSession

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SESSION_COOKIE = "nexus_session"
SIGNIN_COOKIE = "nexus_signin"
COOKIE_PATH = "/dashboard"
_HOST_ONLY = "__Host-"  # with Secure, Path=/ and no Domain (RFC 6265bis): a browser refuses it otherwise
PER_EMAIL_AND_ADDRESS_PER_MINUTE = 5
PER_EMAIL_PER_MINUTE = 30
PER_ADDRESS_PER_MINUTE = 30
CHECKS_AT_ONCE = 4
SESSION = web.RequestKey("web.session", WebSession)


class SignInRefused(Exception):
    """The words the person is shown, and the status of the page."""

    def __init__(self, words: str, status: int) -> None:
        super().__init__(words)
        self.status = status


@dataclass(frozen=True, slots=True)
class SignIn:
    people: PeopleStore
    sessions: SessionStore
    passwords: Passwords
    limiter: RateLimitStore
    accounts: AccountStore
    secure_cookies: bool
    trusted_proxies: tuple[Network, ...] = ()
    checking: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CHECKS_AT_ONCE))

    @property
    def session_cookie(self) -> str:
        return _HOST_ONLY + SESSION_COOKIE if self.secure_cookies else SESSION_COOKIE

    @property
    def signin_cookie(self) -> str:
        return _HOST_ONLY + SIGNIN_COOKIE if self.secure_cookies else SIGNIN_COOKIE

    @property
    def cookie_path(self) -> str:
        return "/" if self.secure_cookies else COOKIE_PATH

    async def sign_in(self, email: str, password: str, address: str) -> tuple[str, WebSession]:
        """A new session's token and the session; SignInRefused with the words to show otherwise."""
        who = email_key(email)
        for key, limit in (
            (f"signin:{who}@{address}", PER_EMAIL_AND_ADDRESS_PER_MINUTE),
            (f"signin:{who}", PER_EMAIL_PER_MINUTE),
            (f"signin@{address}", PER_ADDRESS_PER_MINUTE),
        ):
            decision = await self.limiter.check(key, limit)
            if not decision.allowed:
                wait = max(1, math.ceil(decision.retry_after))
                raise SignInRefused(f"Too many sign-in attempts. Please wait {wait} seconds and try again.", 429)
        found = await self.people.credentials(email)
        # argon2 takes tens of milliseconds of CPU: off the event loop, for an unknown email as for a known one.
        async with self.checking:
            right = await asyncio.to_thread(self.passwords.verify, found[1] if found else None, password)
        if not right or not found:
            raise SignInRefused("The email or the password is not right.", 401)
        person = found[0]
        if person.account_id is not None and (await self.accounts.get(person.account_id)).locked:
            raise SignInRefused("This account is locked. Please ask the gateway's operator.", 403)
        return await self.sessions.open(person)

    async def signed_in(self, request: web.Request) -> WebSession | None:
        """The request's live session (its person's account not locked), also left on the request with the person
        as the API's caller; None when nobody is signed in."""
        token = request.cookies.get(self.session_cookie)
        session = await self.sessions.find(token) if token else None
        if session is None:
            return None
        person = session.person
        # Read, not cached: a lock takes effect on the next page, in every process.
        if person.account_id is not None and (await self.accounts.get(person.account_id)).locked:
            await self.sessions.revoke(session.id)
            return None
        request[SESSION] = session
        request[PRINCIPAL] = Principal(subject=person.email, role=person.role, account_id=person.account_id)
        return session

    def set_session_cookie(self, response: web.StreamResponse, token: str, session: WebSession, now_ms: int) -> None:
        max_age = max(0, (session.expires_at - now_ms) // 1000)
        response.set_cookie(
            self.session_cookie,
            token,
            max_age=max_age,
            path=self.cookie_path,
            httponly=True,
            samesite="Lax",
            secure=self.secure_cookies,
        )
        response.del_cookie(self.signin_cookie, path=self.cookie_path, secure=self.secure_cookies)

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.session_cookie, path=self.cookie_path, secure=self.secure_cookies)

    def signin_form_token(self, request: web.Request) -> str | None:
        """What the sign-in form's cookie holds (None: no cookie)."""
        return request.cookies.get(self.signin_cookie)

    def signin_token(self, request: web.Request) -> tuple[str, bool]:
        """The sign-in form's token: the cookie's, or a new one (True: set it with `set_signin_cookie`)."""
        token = self.signin_form_token(request)
        if token and len(token) <= 100:
            return token, False
        return secrets.token_urlsafe(32), True

    def set_signin_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(
            self.signin_cookie,
            token,
            path=self.cookie_path,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
        )


def client_address(request: web.Request, trusted_proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or behind trusted proxies the nearest hop of X-Forwarded-For that is not
    one of them (the peer's again when a hop is not an address: a header no proxy of ours wrote)."""
    peer = request.remote or ""
    if not trusted_proxies or not _within(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer
        if not any(address in network for network in trusted_proxies):
            return str(address)
    return peer


def trusted_networks(items: tuple[str, ...]) -> tuple[Network, ...]:
    """TRUSTED_PROXIES (checked by the settings) as networks."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: bare, with a port (1.2.3.4:5678, [::1]:5678), or IPv4 mapped in IPv6."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(text: str, networks: tuple[Network, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in networks)


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of form tokens; a missing one never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))
