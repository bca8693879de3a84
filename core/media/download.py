"""Downloading a customer's media from Meta, never on the webhook's acknowledgement path (the channel worker does).

- WhatsApp sends a media id: `GET /{version}/{media-id}` (the channel's token) answers a short-lived URL (about
  5 minutes) with the MIME type and size, and the bytes come from that URL with the same token.
- Messenger and Instagram send the attachment's CDN URL; it needs no token and expires (undocumented), so it is
  fetched at once.
Only hosts in MEDIA_ALLOWED_HOSTS are contacted for the bytes (a name, or a suffix matching its subdomains),
redirects included (followed by hand, each checked); the size is capped (MEDIA_MAX_BYTES) while reading, and the
whole download has a deadline (MEDIA_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from yarl import URL

MAX_REDIRECTS = 3


class MediaUnavailable(Exception):
    """The media cannot be had: expired, refused, too large, from a host not allowed, or the download failed.
    The message says why (for the log; the customer gets a plain sentence)."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary  # worth another try later (a timeout, a 5xx)


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    mime_type: str  # as the platform declared it, without parameters ("audio/ogg")


class MediaFetcher:
    def __init__(
        self,
        *,
        graph_base_url: str,
        graph_version: str,
        allowed_hosts: tuple[str, ...],
        max_bytes: int,
        timeout_seconds: float,
    ) -> None:
        self._graph = URL(graph_base_url.rstrip("/") + "/" + graph_version + "/")
        self._allowed = tuple(host.lower().lstrip(".") for host in allowed_hosts)
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def whatsapp(self, media_id: str, access_token: str, phone_number_id: str) -> Media:
        """A WhatsApp media id's bytes: its URL from Graph (asked for the number the message came to, so Graph
        checks the media belongs to it), then the bytes, both with the channel's token."""
        if not media_id.isdigit():  # Meta's media ids are numbers; anything else would be a path into Graph
            raise MediaUnavailable("the media id is not a number")
        auth = {"Authorization": f"Bearer {access_token}"}
        try:
            async with asyncio.timeout(self._timeout):
                node_url = (self._graph / media_id).with_query(phone_number_id=phone_number_id)
                async with self._open().get(node_url, headers=auth, allow_redirects=False) as response:
                    raw = await response.read()
                    if response.status != 200:
                        raise MediaUnavailable(
                            f"Graph answered {response.status} for the media id: {_graph_message(raw)}",
                            temporary=response.status >= 500 or response.status == 429,
                        )
                node = json.loads(raw)
                if not isinstance(node, dict) or not isinstance(node.get("url"), str):
                    raise MediaUnavailable("Graph's media node has no url")
                size = int(node.get("file_size") or 0)
                if size > self._max_bytes:
                    raise MediaUnavailable(f"the media is {size} bytes, more than MEDIA_MAX_BYTES ({self._max_bytes})")
                data, served = await self._download(URL(node["url"]), auth)
                return Media(data, _bare(str(node.get("mime_type") or served)))
        except TimeoutError:
            raise MediaUnavailable(f"the media did not arrive within {self._timeout:g} s", temporary=True) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise MediaUnavailable(f"the media could not be fetched ({type(exc).__name__})", temporary=True) from None

    async def url(self, url: str, mime_type: str | None) -> Media:
        """A Messenger or Instagram attachment's bytes, from its CDN URL (no token)."""
        try:
            async with asyncio.timeout(self._timeout):
                data, served = await self._download(URL(url), {})
                return Media(data, _bare(mime_type or served))
        except TimeoutError:
            raise MediaUnavailable(f"the media did not arrive within {self._timeout:g} s", temporary=True) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise MediaUnavailable(f"the media could not be fetched ({type(exc).__name__})", temporary=True) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _download(self, url: URL, headers: dict[str, str]) -> tuple[bytes, str]:
        """The bytes, and the Content-Type they were served with."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_host(url)
            async with self._open().get(url, headers=headers, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    target = url.join(URL(response.headers["Location"]))
                    if url.scheme == "https" and target.scheme != "https":
                        # The channel's token travels with the request: never down to plain http.
                        raise MediaUnavailable("the media URL redirected from https to http")
                    url = target
                    continue
                if response.status != 200:
                    raise MediaUnavailable(
                        f"the media URL answered {response.status}",
                        temporary=response.status >= 500 or response.status == 429,
                    )
                if (response.content_length or 0) > self._max_bytes:
                    raise MediaUnavailable(f"the media is larger than MEDIA_MAX_BYTES ({self._max_bytes})")
                data = bytearray()
                async for block in response.content.iter_chunked(64 * 1024):
                    data += block
                    if len(data) > self._max_bytes:
                        raise MediaUnavailable(f"the media is larger than MEDIA_MAX_BYTES ({self._max_bytes})")
                return bytes(data), response.headers.get("Content-Type", "")
        raise MediaUnavailable(f"the media URL redirected more than {MAX_REDIRECTS} times")

    def _check_host(self, url: URL) -> None:
        host = (url.host or "").lower()
        if url.scheme not in ("http", "https") or not any(
            host == allowed or host.endswith("." + allowed) for allowed in self._allowed
        ):
            raise MediaUnavailable(f"the media is on {host or 'no host'}, which MEDIA_ALLOWED_HOSTS does not allow")

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session


def _bare(mime_type: str) -> str:
    return mime_type.split(";", 1)[0].strip().lower()


def _graph_message(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error") or {}
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")
