"""Fetching a page for the knowledge base, without letting an owner reach what the operator did not allow.

An owner gives a URL; the gateway fetches it from inside the operator's network. Unless the operator allows it
(KNOWLEDGE_FETCH_ALLOW_PRIVATE=1, or the networks of KNOWLEDGE_FETCH_ALLOW_NETWORKS), a fetch never connects to a
loopback, private, link-local (cloud metadata at 169.254.169.254 included), shared, multicast, reserved or
unspecified address, in IPv4 or IPv6 (IPv4-mapped and 6to4 forms included):
  - a name is checked after DNS resolution, by the resolver the connection itself uses, so a name that resolves to
    a public address when checked and a private one when connecting (DNS rebinding) cannot slip through;
  - an address written in the URL is checked before the request (aiohttp does not resolve those);
  - redirects are followed by us, at most MAX_REDIRECTS, each hop checked as the first.
Only http and https, no credentials in the URL, no proxy from the environment; the whole fetch has a time limit
and the body a size limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from core.knowledge.extract import CONTENT_TYPES, kind_of

MAX_REDIRECTS = 5
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchRefused(ValueError):
    """The URL may not be fetched (its address, scheme or form); nothing was requested from it."""


class FetchFailed(ValueError):
    """The page could not be fetched or is not something the knowledge base reads; the message says why."""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_private: bool = False
    allowed_networks: tuple[_Network, ...] = ()

    def check(self, address: str, host: str) -> None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise FetchRefused(f"{host} did not resolve to an IP address") from None
        if self.allow_private or any(
            ip in network for network in self.allowed_networks if ip.version == network.version
        ):
            return
        if not _public(ip):
            raise FetchRefused(
                f"{host} is a private, loopback or link-local address ({ip}); the gateway does not fetch those"
            )


# IPv6 forms that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, RFC 8215) and the deprecated
# IPv4-compatible ::a.b.c.d. Through a NAT64 gateway 64:ff9b::10.0.0.1 reaches 10.0.0.1.
_EMBEDDING_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, still private where it is used


def _public(ip: _IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _public(ip.ipv4_mapped)
        if ip.sixtofour is not None and not _public(ip.sixtofour):
            return False
        low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if any(ip in network for network in _EMBEDDING_IPV4) and not _public(low):
            return False
        if int(ip) >> 32 == 0 and int(ip) > 0xFFFF:  # ::a.b.c.d
            return _public(low)
        if ip in _SITE_LOCAL:
            return False
    return ip.is_global and not ip.is_multicast


def parse_networks(raw: Iterable[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw if item.strip())


class GuardedResolver(AbstractResolver):
    """The system resolver, refusing a name with any address the policy does not allow."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._policy.check(result["host"], host)
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Page:
    url: str  # where it was finally fetched from (after redirects)
    kind: str  # core/knowledge/extract.py's reader: html, text, markdown or pdf
    data: bytes


class PageFetcher:
    """One HTTP session for knowledge imports, behind the address policy."""

    def __init__(self, policy: AddressPolicy, *, max_bytes: int, timeout_seconds: float) -> None:
        self._policy = policy
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str) -> Page:
        target = _checked_url(url)
        session = self._open()
        try:
            async with asyncio.timeout(self._timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    self._check_literal(target)
                    async with session.get(target, allow_redirects=False, headers=_HEADERS) as response:
                        if response.status in (301, 302, 303, 307, 308):
                            location = response.headers.get("Location")
                            if not location:
                                raise FetchFailed(f"the page answered {response.status} without saying where to")
                            target = _redirected(target, location)
                            continue
                        return await self._page(target, response)
                raise FetchFailed(f"the page redirected more than {MAX_REDIRECTS} times")
        except FetchRefused:
            raise
        except aiohttp.ClientConnectorError:
            raise FetchFailed(f"could not connect to {target.host}") from None
        except TimeoutError:
            raise FetchFailed(f"the page did not arrive within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise FetchFailed(f"the page could not be fetched ({type(exc).__name__})") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._policy), use_dns_cache=False, limit=10)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def _check_literal(self, url: URL) -> None:
        host = url.host or ""
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        self._policy.check(host.strip("[]"), host)

    async def _page(self, url: URL, response: aiohttp.ClientResponse) -> Page:
        if response.status != 200:
            raise FetchFailed(f"the page answered {response.status}")
        content_type = response.headers.get("Content-Type")
        kind = CONTENT_TYPES.get((content_type or "").split(";")[0].strip().lower()) or kind_of(url.path, None)
        if kind is None:
            raise FetchFailed(
                f"the page is {content_type or 'of no declared type'}; an HTML page, text or a PDF is read"
            )
        if response.content_length is not None and response.content_length > self._max_bytes:
            raise FetchFailed(f"the page is larger than {self._max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_bytes:
                raise FetchFailed(f"the page is larger than {self._max_bytes} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        if kind in ("html", "text", "markdown"):
            data = _as_utf8(data, response.charset)
        return Page(str(url), kind, data)


_HEADERS = {
    "User-Agent": "NexusGateway-Knowledge/1 (+knowledge import)",
    "Accept": "text/html,text/plain,application/pdf",
}


def _redirected(current: URL, location: str) -> URL:
    try:
        joined = str(current.join(URL(location)))
    except (ValueError, TypeError):
        raise FetchFailed("the page redirected to an address that is not a valid URL") from None
    return _checked_url(joined)


def _checked_url(raw: str) -> URL:
    try:
        url = URL(raw)
    except (ValueError, TypeError):
        raise FetchRefused("the URL is not valid") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise FetchRefused("only http:// and https:// URLs with a host can be imported")
    if url.user is not None or url.password is not None:
        raise FetchRefused("a URL with a user name or password is not imported")
    return url.with_fragment(None)


def _as_utf8(data: bytes, charset: str | None) -> bytes:
    """Text pages in the charset they declare, re-encoded as the UTF-8 the readers take."""
    if not charset or charset.lower().replace("_", "-") in ("utf-8", "utf8"):
        return data
    try:
        return data.decode(charset).encode("utf-8")
    except (LookupError, UnicodeDecodeError):
        return data  # the reader says it is not UTF-8 text
