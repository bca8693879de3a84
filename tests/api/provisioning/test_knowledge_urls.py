"""Knowledge from a URL: the page's readable text, fetched again on request; never an address the operator did not
allow (loopback, private, link-local, cloud metadata), whether named in the URL, resolved from a name or reached by
a redirect."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support.admin_api import ADMIN, expect_error
from tests.support.harness import auth, expect, provision

PAGE = """<html><head><title>Lieferung | Bäckerei Sonne</title><script>var x = "Tracking";</script></head>
<body><nav><a href="/">Start</a> <a href="/jobs">Jobs</a></nav>
<main><h1>Lieferung</h1><p>Wir liefern nach Potsdam, samstags, ab 30 € Bestellwert.</p></main>
<footer>Impressum · Datenschutz</footer></body></html>"""


class Site:
    """A small website on a local port: pages by path, changeable between fetches."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {"/lieferung": ("text/html; charset=utf-8", PAGE.encode())}
        self.redirects: dict[str, str] = {}
        self.requests: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/{path:.*}", self.serve)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if request.path in self.redirects:  # the Location as given, valid or not
            return web.Response(status=302, headers={"Location": self.redirects[request.path]})
        if request.path not in self.pages:
            raise web.HTTPNotFound()
        content_type, body = self.pages[request.path]
        return web.Response(body=body, headers={"Content-Type": content_type})


@pytest.fixture
async def site(aiohttp_server: Any) -> tuple[Site, TestServer]:
    site = Site()
    return site, await aiohttp_server(site.app, host="127.0.0.1")


@pytest.fixture
async def intranet(make_client: MakeClient, settings: Settings) -> TestClient:
    """A gateway whose operator allows exactly 127.0.0.1 (as for an intranet wiki), and nothing else private."""
    return await make_client(replace(settings, knowledge_fetch_allow_networks=("127.0.0.1/32",)))


async def _add(client: TestClient, bot_id: str, body: dict[str, Any]) -> Any:
    return await client.post(f"{ADMIN}/bots/{bot_id}/knowledge", json=body, headers=auth())


async def _documents(client: TestClient, bot_id: str) -> list[Any]:
    return list((await expect(await client.get(f"{ADMIN}/bots/{bot_id}/knowledge", headers=auth()), 200))["documents"])


async def _search(client: TestClient, bot_id: str, q: str) -> list[Any]:
    response = await client.get(f"{ADMIN}/bots/{bot_id}/knowledge/search", params={"q": q}, headers=auth())
    return list((await expect(response, 200))["results"])


async def test_a_page_is_imported_as_its_readable_text_and_fetched_again_on_request(
    intranet: TestClient, site: tuple[Site, TestServer]
) -> None:
    pages, server = site
    tenant = await provision(intranet)
    url = str(server.make_url("/lieferung"))
    document = await expect(await _add(intranet, tenant.bot_id, {"url": url}), 201)

    assert (document["kind"], document["source"], document["title"]) == ("url", url, "Lieferung | Bäckerei Sonne")
    [found] = await _search(intranet, tenant.bot_id, "Liefert ihr nach Potsdam?")
    assert (
        found["text"]
        == "Lieferung | Bäckerei Sonne > Lieferung\n\nWir liefern nach Potsdam, samstags, ab 30 € Bestellwert."
    )
    assert await _search(intranet, tenant.bot_id, "Tracking Impressum Jobs") == []

    pages.pages["/lieferung"] = ("text/html", PAGE.replace("Potsdam", "Teltow").encode())
    again = await expect(await intranet.post(f"{ADMIN}/knowledge/{document['id']}/refetch", headers=auth()), 200)
    assert again["id"] == document["id"] and again["updated_at"] >= document["updated_at"]
    assert await _search(intranet, tenant.bot_id, "Potsdam") == []
    assert "Teltow" in (await _search(intranet, tenant.bot_id, "Teltow"))[0]["text"]
    assert pages.requests == ["/lieferung", "/lieferung"]


async def test_a_document_is_replaced_in_place_and_only_pages_are_fetched_again(intranet: TestClient) -> None:
    tenant = await provision(intranet)
    document = await expect(await _add(intranet, tenant.bot_id, {"title": "Zeiten", "text": "Mo-Fr 7-19 Uhr"}), 201)
    changed = await expect(
        await intranet.put(
            f"{ADMIN}/knowledge/{document['id']}", json={"title": "Zeiten", "text": "Mo-Sa 6-20 Uhr"}, headers=auth()
        ),
        200,
    )
    assert changed["id"] == document["id"] and changed["chunks"] == 1
    assert "Mo-Sa 6-20 Uhr" in (await _search(intranet, tenant.bot_id, "Zeiten"))[0]["text"]
    body = await expect(await intranet.post(f"{ADMIN}/knowledge/{document['id']}/refetch", headers=auth()), 409)
    assert "URL" in body["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/lieferung",
        "http://localhost:{port}/lieferung",  # a name that resolves to loopback
        "http://[::1]:{port}/lieferung",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.1.2.3/intranet",
        "http://0.0.0.0:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/lieferung",  # loopback written as IPv6
        "http://[64:ff9b::a00:1]/",  # 10.0.0.1 through a NAT64 gateway
        "file:///etc/passwd",
        "http://user:secret@example.com/",
    ],
)
async def test_addresses_the_operator_did_not_allow_are_refused_and_store_nothing(
    client: TestClient, site: tuple[Site, TestServer], url: str
) -> None:
    pages, server = site
    tenant = await provision(client)
    error = await expect_error(await _add(client, tenant.bot_id, {"url": url.format(port=server.port)}), 400)
    assert error["details"] == {"field": "url"}
    assert await _documents(client, tenant.bot_id) == []
    assert pages.requests == []  # not even asked


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:{port}/lieferung"])
async def test_a_redirect_to_a_private_address_is_refused(
    intranet: TestClient, site: tuple[Site, TestServer], target: str
) -> None:
    pages, server = site
    pages.redirects["/moved"] = target.format(port=server.port)
    tenant = await provision(intranet)
    error = await expect_error(await _add(intranet, tenant.bot_id, {"url": str(server.make_url("/moved"))}), 400)
    assert "private, loopback or link-local" in error["message"]
    assert await _documents(intranet, tenant.bot_id) == []
    assert pages.requests == ["/moved"]


async def test_pages_that_cannot_be_fetched_or_read_say_why(
    intranet: TestClient, site: tuple[Site, TestServer]
) -> None:
    pages, server = site
    pages.pages["/photo"] = ("image/jpeg", b"\xff\xd8\xff")
    pages.pages["/huge"] = ("text/plain", b"a" * (30 * 1024 * 1024))
    for path in range(6):
        pages.redirects[f"/loop{path}"] = f"/loop{path + 1}"
    pages.redirects["/broken"] = "http://[::1"
    pages.pages["/mangled"] = ("text/html", b"<p>Hallo</p><![foo[ x ]]>")
    tenant = await provision(intranet)
    for path, reason in [
        ("/missing", "answered 404"),
        ("/photo", "image/jpeg"),
        ("/huge", "larger than"),
        ("/loop0", "redirected more than 5 times"),
        ("/broken", "not a valid URL"),
    ]:
        body = await expect(await _add(intranet, tenant.bot_id, {"url": str(server.make_url(path))}), 422)
        assert body["error"]["code"] == "fetch_failed" and reason in body["error"]["message"], body
    mangled = await expect(await _add(intranet, tenant.bot_id, {"url": str(server.make_url("/mangled"))}), 422)
    assert mangled["error"]["code"] == "unreadable_document" and "malformed" in mangled["error"]["message"]
    assert await _documents(intranet, tenant.bot_id) == []


async def test_the_operator_may_allow_every_private_address(
    make_client: MakeClient, settings: Settings, site: tuple[Site, TestServer]
) -> None:
    _, server = site
    client = await make_client(replace(settings, knowledge_fetch_allow_private=True))
    tenant = await provision(client)
    url = f"http://localhost:{server.port}/lieferung"
    assert (await expect(await _add(client, tenant.bot_id, {"url": url}), 201))["source"] == url
