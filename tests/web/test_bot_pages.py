"""The Bots and Usage pages: settings, channels, knowledge and the try-it chat change what the API would, and
show what it answers, for the people allowed; nothing else."""

from __future__ import annotations

import csv
import html
import io
import re
import secrets
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.channel_traffic import PHONE_ID
from tests.support.harness import Tenant, auth, expect, provision, relay
from tests.support.people import add_person, form_token, sign_in

SNEAKY = '<script>alert("x")</script>'


@pytest.fixture
async def shop(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    await add_person(settings, "vic@bakery.example", "viewer", tenant.account_id)
    return client, tenant, settings


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, name
    return found.group(1)


async def _page(client: TestClient, url: str, status: int = 200) -> str:
    answer = await client.get(url)
    text = await answer.text()
    assert answer.status == status, text[:2000]
    return text


async def test_an_owner_changes_a_bots_settings_and_a_bad_value_is_said_in_words(shop: Any) -> None:
    client, tenant, _ = shop
    await sign_in(client, "anna@bakery.example")
    bots = await client.get("/dashboard/bots", allow_redirects=False)
    assert bots.headers["Location"] == f"/dashboard/accounts/{tenant.account_id}/bots"
    listing = await _page(client, f"/dashboard/accounts/{tenant.account_id}/bots")
    assert f'href="/dashboard/bots/{tenant.bot_id}"' in listing and "Bakery bot" in listing

    page = await _page(client, f"/dashboard/bots/{tenant.bot_id}")
    fields = {
        "csrf": form_token(page),
        "name": "Bakery helper",
        "persona": "You sell bread.\r\nBe brief.",
        "model": "gpt-4.1",
        "temperature": "",
        "max_reply_tokens": "200",
        "memory_tokens": "1500",
        "fallback_message": "Back soon.",
        "media_reply": "",
        "handover_pause_minutes": "15",
        "knowledge_mode": "strict",
        "no_answer_message": "No idea.",
        "knowledge_tokens": "800",
        "handoff_enabled": "on",
        "handoff_message": "A person is coming.",
    }
    saved = await client.post(f"/dashboard/bots/{tenant.bot_id}", data=fields, allow_redirects=False)
    assert saved.status == 303
    bot = await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}", headers=auth()), 200)
    assert (bot["name"], bot["persona"], bot["model"], bot["temperature"]) == (
        "Bakery helper",
        "You sell bread.\nBe brief.",
        "gpt-4.1",
        None,
    )
    assert (bot["max_reply_tokens"], bot["knowledge_mode"], bot["handoff_enabled"], bot["keep_images"]) == (
        200,
        "strict",
        True,
        False,
    )

    # A value the API refuses: the page says which, keeps what was typed, and changes nothing.
    refused = await client.post(
        f"/dashboard/bots/{tenant.bot_id}", data={**fields, "name": "Renamed", "max_reply_tokens": "lots"}
    )
    assert refused.status == 400
    text = html.unescape(await refused.text())
    assert "'max_reply_tokens' must be a whole number" in text and 'value="Renamed"' in text
    assert (await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}", headers=auth()), 200))[
        "name"
    ] == "Bakery helper"
    # A model the plan does not allow.
    wrong = await client.post(f"/dashboard/bots/{tenant.bot_id}", data={**fields, "model": "gpt-9"})
    assert wrong.status == 400 and "the plan allows these models only" in await wrong.text()


async def test_an_owner_adds_a_bot_and_connects_a_channel(shop: Any) -> None:
    client, tenant, _ = shop
    listing = await sign_in(client, "anna@bakery.example")
    listing = await _page(client, f"/dashboard/accounts/{tenant.account_id}/bots")
    created = await client.post(
        f"/dashboard/accounts/{tenant.account_id}/bots",
        data={"csrf": form_token(listing), "name": SNEAKY, "persona": "You help."},
        allow_redirects=False,
    )
    assert created.status == 303
    bot_id = created.headers["Location"].split("/")[-1].split("?")[0]
    page = await _page(client, created.headers["Location"])
    assert SNEAKY not in page and "&lt;script&gt;" in page and "The bot was added" in page

    token = form_token(page)
    bad = await client.post(
        f"/dashboard/bots/{bot_id}/channels",
        data={"csrf": token, "platform": "whatsapp", "external_id": "not-a-number", "access_token": "x"},
    )
    assert bad.status == 400 and "numeric" in await bad.text()
    connected = await client.post(
        f"/dashboard/bots/{bot_id}/channels",
        data={"csrf": token, "platform": "whatsapp", "external_id": PHONE_ID, "access_token": f"token-{PHONE_ID}"},
        allow_redirects=False,
    )
    assert connected.status == 303
    page = await _page(client, f"/dashboard/bots/{bot_id}")
    assert f"WhatsApp</strong> {PHONE_ID}" in page and "working." in page and f"token-{PHONE_ID}" not in page
    [channel] = (await expect(await client.get(f"/api/admin/bots/{bot_id}/channels", headers=auth()), 200))["channels"]
    gone = await client.post(
        f"/dashboard/bots/{bot_id}/channels/{channel['id']}/disconnect", data={"csrf": token}, allow_redirects=False
    )
    assert gone.status == 303
    assert (await expect(await client.get(f"/api/admin/bots/{bot_id}/channels", headers=auth()), 200))["channels"] == []


async def test_knowledge_is_uploaded_searched_and_deleted_from_the_page(shop: Any) -> None:
    client, tenant, _ = shop
    await sign_in(client, "anna@bakery.example")
    url = f"/dashboard/bots/{tenant.bot_id}/knowledge"
    page = await _page(client, url)
    assert "No documents yet." in page
    upload = FormData()
    upload.add_field("csrf", form_token(page))
    upload.add_field("title", "Opening hours")
    upload.add_field("file", b"We open at 7am and close at 6pm, Monday to Saturday.", filename="hours.txt")
    added = await client.post(url, data=upload, allow_redirects=False)
    assert added.status == 303, await added.text()
    page = await _page(client, added.headers["Location"])
    assert "Opening hours" in page and 'data-status="ready">Ready' in page and "The document was added" in page

    found = await _page(client, f"{url}?q=When+do+you+open")
    assert "shown to the bot" in found and "We open at 7am" in found

    # A file the API cannot take: the words, nothing stored; without the form token: nothing stored either.
    wrong = FormData()
    wrong.add_field("csrf", form_token(page))
    wrong.add_field("file", b"\x00\x01", filename="photo.png", content_type="image/png")
    refused = await client.post(url, data=wrong)
    assert refused.status == 415 and "upload a PDF, .txt, .md or .html file" in await refused.text()
    forged = FormData()
    forged.add_field("file", b"Free bread for all.", filename="free.txt")
    assert (await client.post(url, data=forged)).status == 403
    listed = await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}/knowledge", headers=auth()), 200)
    [document] = listed["documents"]

    deleted = await client.post(
        f"{url}/{document['id']}/delete", data={"csrf": form_token(page)}, allow_redirects=False
    )
    assert deleted.status == 303
    assert (await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}/knowledge", headers=auth()), 200))[
        "documents"
    ] == []


async def test_the_try_it_chat_answers_with_the_turns_figures(shop: Any, fake_openai: FakeOpenAI) -> None:
    client, tenant, _ = shop
    await expect(
        await client.post(
            f"/api/admin/bots/{tenant.bot_id}/knowledge",
            json={"title": "Prices", "text": "A sourdough loaf costs 4 euros."},
            headers=auth(),
        ),
        201,
    )
    await sign_in(client, "anna@bakery.example")
    url = f"/dashboard/bots/{tenant.bot_id}/try"
    page = await _page(client, url)
    fields = {"csrf": form_token(page), "chat": _hidden(page, "chat")}
    first = await client.post(
        url, data={**fields, "key": _hidden(page, "key"), "turns": "", "text": "How much is a sourdough loaf?"}
    )
    text = await first.text()
    assert first.status == 200, text
    assert "How much is a sourdough loaf?" in text and 'data-turn="knowledge">Prices' in text
    usage = await expect(await client.get("/api/dashboard/metrics", headers=auth("owner", tenant.account_id)), 200)
    tokens = re.search(r'data-turn="tokens">([\d,]+) in, ([\d,]+) out', text)
    assert tokens is not None
    assert int(tokens.group(1).replace(",", "")) + int(tokens.group(2).replace(",", "")) == usage["tokens"]["total"]

    # The page carries its turns: a second message shows both, and the bot remembers the first.
    carried = re.search(r'name="turns" value="([^"]*)"', text).group(1)  # type: ignore[union-attr]

    again = {**fields, "key": _hidden(text, "key"), "turns": html.unescape(carried), "text": "And a baguette?"}
    second = await client.post(url, data=again)
    text = await second.text()
    assert text.count('data-turn="tokens"') == 2
    remembered = [m.get("content") for m in fake_openai.calls[-1].messages]
    assert "How much is a sourdough loaf?" in remembered and remembered[-1] == "And a baguette?"
    inbox = await _page(client, "/dashboard/conversations")
    assert "dashboard-test-" in inbox
    # The same form sent again (a reload) is not a second message: the model is not called, nothing is charged.
    calls = len(fake_openai.calls)
    resent = await client.post(url, data=again)
    assert resent.status == 409 and "sent already" in await resent.text()
    assert len(fake_openai.calls) == calls


async def test_a_viewer_sees_bots_and_knowledge_without_controls(shop: Any) -> None:
    client, tenant, _ = shop
    await sign_in(client, "vic@bakery.example")
    for url in (
        f"/dashboard/accounts/{tenant.account_id}/bots",
        f"/dashboard/bots/{tenant.bot_id}",
        f"/dashboard/bots/{tenant.bot_id}/knowledge",
        f"/dashboard/bots/{tenant.bot_id}/try",
    ):
        page = await _page(client, url)
        assert 'method="post"' not in page.replace('method="post" action="/dashboard/logout"', ""), url
    page = await _page(client, f"/dashboard/bots/{tenant.bot_id}")
    refused = await client.post(
        f"/dashboard/bots/{tenant.bot_id}/try",
        data={"csrf": form_token(page), "text": "Hi", "turns": "", "key": "k" * 16},
    )
    assert refused.status == 403


async def test_another_accounts_bot_pages_are_not_found(shop: Any) -> None:
    client, tenant, settings = shop
    other = await provision(client, name="Other")
    await add_person(settings, "olga@other.example", "owner", other.account_id)
    page = await sign_in(client, "olga@other.example")
    for url in (
        f"/dashboard/accounts/{tenant.account_id}/bots",
        f"/dashboard/bots/{tenant.bot_id}",
        f"/dashboard/bots/{tenant.bot_id}/knowledge?q=bread",
        f"/dashboard/bots/{tenant.bot_id}/try",
        f"/dashboard/usage?account_id={tenant.account_id}",
        f"/dashboard/usage/export.csv?account_id={tenant.account_id}",
    ):
        assert (await client.get(url)).status == 404, url
    token = form_token(page)
    for url in (f"/dashboard/bots/{tenant.bot_id}", f"/dashboard/bots/{tenant.bot_id}/try"):
        assert (await client.post(url, data={"csrf": token, "name": "Mine", "text": "hi"})).status == 404, url
    # And a document of the other account's bot, under one's own bot's address.
    document = await expect(
        await client.post(
            f"/api/admin/bots/{tenant.bot_id}/knowledge", json={"title": "T", "text": "Secret."}, headers=auth()
        ),
        201,
    )
    stolen = await client.post(
        f"/dashboard/bots/{other.bot_id}/knowledge/{document['id']}/delete", data={"csrf": token}
    )
    assert stolen.status == 404


async def test_the_usage_page_and_its_export_show_the_apis_figures(shop: Any) -> None:
    client, tenant, _ = shop
    await expect(await relay(client, tenant, "Hello"), 200)
    await sign_in(client, "anna@bakery.example")
    page = await _page(client, "/dashboard/usage?group_by=platform&from=&to=")
    report = await expect(
        await client.get("/api/dashboard/usage?group_by=platform", headers=auth("owner", tenant.account_id)), 200
    )
    [series] = report["series"]
    assert f"<td>{series['totals']['prompt_tokens']:,}</td>" in page and "Your app</th>" in page
    assert "Activity" in page
    export_url = re.search(r'href="(/dashboard/usage/export\.csv\?[^"]+)"', page).group(1)  # type: ignore[union-attr]
    export = await client.get(export_url.replace("&amp;", "&"))
    assert export.status == 200 and export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await export.text())))
    assert len(rows) == 1 and int(rows[0]["prompt_tokens"]) == series["totals"]["prompt_tokens"]
    # A bad parameter is a page that says which.
    bad = await client.get("/dashboard/usage?group_by=colour")
    assert bad.status == 400 and "group_by" in await bad.text()


async def test_long_fields_are_kept_whole_and_a_bad_carried_chat_is_ignored(shop: Any) -> None:
    client, tenant, _ = shop
    await sign_in(client, "anna@bakery.example")
    page = await _page(client, f"/dashboard/bots/{tenant.bot_id}")
    persona = "You bake bread. " * 900  # 14,400 characters: beyond a short field's limit, within the persona's
    fields = {"csrf": form_token(page), "name": "Bakery bot", "persona": persona, "knowledge_mode": "augment"}
    saved = await client.post(f"/dashboard/bots/{tenant.bot_id}", data=fields, allow_redirects=False)
    assert saved.status == 303, await saved.text()
    bot = await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}", headers=auth()), 200)
    assert bot["persona"] == persona.strip()  # whole (the API trims the ends of a text)
    # A short field sent too long is refused in words, never cut short.
    refused = await client.post(f"/dashboard/bots/{tenant.bot_id}", data={**fields, "name": "x" * 9000})
    assert refused.status == 400 and "longer than 8,192 characters" in await refused.text()

    # What the try-it page carries is only shown back: nonsense in it is dropped, never a failure.
    url = f"/dashboard/bots/{tenant.bot_id}/try"
    page = await _page(client, url)
    for carried in ('[{"asked": "a", "prompt_tokens": Infinity}]', "[" * 50_000, '{"not": "a list"}', "1e999"):
        fields = {"csrf": form_token(page), "chat": "zz", "key": secrets.token_urlsafe(12), "turns": carried}
        answer = await client.post(url, data={**fields, "text": "Hello"})
        assert answer.status == 200, await answer.text()
