"""Downloading customers' media keeps to its limits on the wire: a body with no declared length is cut off at
MEDIA_MAX_BYTES while it streams, and a redirect is followed only to an allowed host and only so many times."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from core.media.download import MAX_REDIRECTS, MediaFetcher, MediaUnavailable

MAX_BYTES = 64 * 1024
ENDLESS = 256 * 1024 * 1024


class Cdn:
    """A media host: a file streamed without a length, redirects, and a record of every path asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.streamed = 0  # bytes of the endless file written before the client went away
        self.stream_ended = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/{name}", self._serve)
        self.other_host = ""  # set once the server runs: the same server under a name not allowed

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.asked.append(name)
        if name == "endless.ogg":  # chunked, no Content-Length to refuse it by, and far larger than allowed
            response = web.StreamResponse(headers={"Content-Type": "audio/ogg"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                while self.streamed < ENDLESS:
                    await response.write(b"\0" * (64 * 1024))
                    self.streamed += 64 * 1024
                await response.write_eof()
            except ConnectionError:
                pass  # the client hung up
            finally:
                self.stream_ended.set()
            return response
        if name == "small.ogg":
            return web.Response(body=b"OggS" + b"\0" * 100, content_type="audio/ogg")
        if name == "elsewhere.ogg":
            raise web.HTTPFound(f"{self.other_host}/small.ogg")
        if name == "next.ogg":
            raise web.HTTPFound("/small.ogg")
        if name.startswith("loop"):
            raise web.HTTPFound(f"/loop{int(name[4:].split('.')[0]) + 1}.ogg")
        raise web.HTTPNotFound()


@pytest.fixture
async def cdn(aiohttp_server: Any) -> AsyncIterator[tuple[Cdn, str, MediaFetcher]]:
    host = Cdn()
    server = await aiohttp_server(host.app)
    base = str(server.make_url("")).rstrip("/")
    host.other_host = base.replace("127.0.0.1", "localhost")
    fetcher = MediaFetcher(
        graph_base_url=base,
        graph_version="v23.0",
        allowed_hosts=("127.0.0.1",),
        max_bytes=MAX_BYTES,
        timeout_seconds=5,
    )
    yield host, base, fetcher
    await fetcher.close()


async def test_a_body_without_a_declared_length_is_cut_off_at_the_limit(cdn: tuple[Cdn, str, MediaFetcher]) -> None:
    host, base, fetcher = cdn
    with pytest.raises(MediaUnavailable, match="larger than MEDIA_MAX_BYTES") as refused:
        await fetcher.url(f"{base}/endless.ogg", None)
    assert not refused.value.temporary  # trying again would only download it again
    # The download stopped while the body streamed: the server could write little more than the sockets hold.
    await asyncio.wait_for(host.stream_ended.wait(), 10)
    assert host.streamed < 32 * 1024 * 1024, host.streamed


async def test_a_redirect_is_followed_on_an_allowed_host(cdn: tuple[Cdn, str, MediaFetcher]) -> None:
    host, base, fetcher = cdn
    media = await fetcher.url(f"{base}/next.ogg", None)
    assert media.data.startswith(b"OggS") and media.mime_type == "audio/ogg"
    assert host.asked == ["next.ogg", "small.ogg"]


async def test_a_redirect_to_a_host_not_allowed_is_refused_before_it_is_contacted(
    cdn: tuple[Cdn, str, MediaFetcher],
) -> None:
    host, base, fetcher = cdn
    with pytest.raises(MediaUnavailable, match="localhost, which MEDIA_ALLOWED_HOSTS does not allow"):
        await fetcher.url(f"{base}/elsewhere.ogg", None)
    assert host.asked == ["elsewhere.ogg"]  # the same server answers under "localhost": it was never asked


async def test_redirects_stop_after_the_limit(cdn: tuple[Cdn, str, MediaFetcher]) -> None:
    host, base, fetcher = cdn
    with pytest.raises(MediaUnavailable, match=f"redirected more than {MAX_REDIRECTS} times"):
        await fetcher.url(f"{base}/loop0.ogg", None)
    assert len(host.asked) == MAX_REDIRECTS + 1
