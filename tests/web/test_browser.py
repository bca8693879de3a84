"""The dashboard in a real Chromium (Debian's, found on the PATH; Playwright downloads nothing): a person signs in,
sees the API's figures, finds a WhatsApp customer in the inbox and answers them from the page."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.channel_traffic import NOW_S, PHONE_ID, WA_USER, deliver, settled, until, wa_text
from tests.support.harness import auth, connect_channel, expect, provision
from tests.support.people import PASSWORD, add_person

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on the PATH: the browser tests need one"),
    pytest.mark.any_backend,  # the pages' own behaviour on both backends: tests/web/test_pages.py and the others
]
# The flags a sandboxed, offline machine needs (no background calls out, no GPU).
_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=_FLAGS)
        yield chromium
        await chromium.close()


async def test_a_person_signs_in_and_answers_a_whatsapp_customer(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, fake_graph: FakeGraph, browser: Any
) -> None:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client)
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Is my cake ready?", ts=NOW_S))
    await settled(settings)
    base = str(client.make_url("/")).rstrip("/")
    page = await browser.new_page()

    await page.goto(f"{base}/dashboard/login")
    await page.get_by_label("Email").fill("anna@bakery.example")
    await page.get_by_label("Password").fill("not my password")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").filter(has_text="The email or the password is not right.").wait_for()

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    metrics = await expect(await client.get("/api/dashboard/metrics", headers=auth("owner", tenant.account_id)), 200)
    assert await page.locator('[data-figure="tokens"]').inner_text() == f"{metrics['tokens']['total']:,}"

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    await page.get_by_role("link", name=f"WhatsApp · {WA_USER}").click()
    await page.get_by_text("Is my cake ready?", exact=True).wait_for()
    await page.get_by_label("Reply").fill("Yes! Come by any time, Anna")
    await page.get_by_role("button", name="Send").click()
    await page.get_by_role("status").filter(has_text="Sent.").wait_for()
    await until(lambda: "Yes! Come by any time, Anna" in fake_graph.texts_to("+" + WA_USER))
    await page.get_by_text("The bot is paused: a person answered").wait_for()


async def test_an_owner_uploads_knowledge_and_tries_the_bot(
    make_client: MakeClient, settings: Settings, browser: Any, tmp_path: Any
) -> None:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    hours = tmp_path / "hours.txt"
    hours.write_text("The bakery opens at 7am and closes at 6pm, Monday to Saturday.")
    base = str(client.make_url("/")).rstrip("/")
    page = await browser.new_page()
    await _sign_in(page, base, "anna@bakery.example")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Bots").click()
    await page.get_by_role("link", name="Bakery bot").click()
    await page.get_by_role("navigation", name="This bot").get_by_role("link", name="Knowledge").click()
    await page.get_by_text("No documents yet.").wait_for()
    await page.get_by_label("A file").set_input_files(str(hours))
    await page.get_by_role("button", name="Upload").click()
    await page.get_by_role("status").filter(has_text="The document was added").wait_for()
    row = page.get_by_role("row").filter(has_text="hours.txt")
    assert "Ready" in await row.inner_text()

    await page.get_by_label("A customer's question").fill("When do you open?")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_text("shown to the bot").wait_for()

    await page.get_by_role("navigation", name="This bot").get_by_role("link", name="Try it").click()
    await page.get_by_label("Message").fill("When do you open?")
    await page.get_by_role("button", name="Send to the bot").click()
    await page.locator('[data-turn="knowledge"]').filter(has_text="hours.txt").wait_for()
    metrics = await expect(await client.get("/api/dashboard/metrics", headers=auth("owner", tenant.account_id)), 200)
    tokens = await page.locator('[data-turn="tokens"]').inner_text()
    prompt, completion = (int(part.split()[0].replace(",", "")) for part in tokens.split(", "))
    assert prompt + completion == metrics["tokens"]["total"] > 0


async def test_a_viewer_sees_no_controls_and_another_account_is_not_found(
    make_client: MakeClient, settings: Settings, browser: Any
) -> None:
    settings = replace(settings, workers=2)
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await connect_channel(client, tenant, "whatsapp", PHONE_ID)
    await deliver(client, "/webhooks/whatsapp", wa_text("wamid.1", "Hello there", ts=NOW_S))
    await settled(settings)
    other = await provision(client, name="Other")
    await add_person(settings, "vic@bakery.example", "viewer", tenant.account_id)
    await add_person(settings, "olga@other.example", "owner", other.account_id)
    base = str(client.make_url("/")).rstrip("/")

    page = await browser.new_page()
    await _sign_in(page, base, "vic@bakery.example")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    await page.get_by_role("link", name=f"WhatsApp · {WA_USER}").click()
    await page.get_by_text("Hello there", exact=True).wait_for()
    conversation_url = page.url
    changes = "form[method=post]:not([action='/dashboard/logout'])"
    assert await page.locator(changes).count() == 0
    assert await page.get_by_label("Reply").count() == 0
    for path in (f"/bots/{tenant.bot_id}", f"/bots/{tenant.bot_id}/knowledge", f"/bots/{tenant.bot_id}/try"):
        await page.goto(base + "/dashboard" + path)
        await page.get_by_role("heading", level=1).wait_for()
        assert await page.locator(changes).count() == 0, path
        # Settings are shown in a disabled fieldset: nothing there can be typed into (the search box is a question).
        editable = "input:enabled:not([type=hidden]):not([type=search]), textarea:enabled, select:enabled"
        assert await page.locator(editable).count() == 0, path

    stranger = await browser.new_page()
    await _sign_in(stranger, base, "olga@other.example")
    for url in (conversation_url, f"{base}/dashboard/bots/{tenant.bot_id}"):
        answer = await stranger.goto(url)
        assert answer is not None and answer.status == 404
        await stranger.get_by_role("heading", name="Not found").wait_for()


async def test_an_owner_issues_an_api_key_for_their_app_and_revokes_it(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI, browser: Any
) -> None:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    base = str(client.make_url("/")).rstrip("/")
    page = await browser.new_page()
    await _sign_in(page, base, "anna@bakery.example")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    await page.get_by_role("heading", name="API keys").wait_for()
    await page.get_by_label("Name").fill("Web shop")
    await page.get_by_role("button", name="Issue a key").click()
    await page.get_by_role("status").filter(has_text="Copy it now").wait_for()
    key = await page.get_by_label("The key").input_value()
    ask = {"user_id": "web-shop-42", "message": "Do you deliver?"}
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.post("/api/messages/relay", json=ask, headers=headers)).status == 200

    await page.goto(f"{base}/dashboard/api-keys")
    assert key not in await page.content()  # shown once
    row = page.get_by_role("row").filter(has_text="Web shop")
    assert "never" not in await row.inner_text()  # the call above used it
    asked: list[str] = []

    async def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", lambda dialog: asyncio.ensure_future(answer(dialog, False)))
    await row.get_by_role("button", name="Revoke Web shop").click()  # asked first; "Cancel" keeps the key
    await until(lambda: bool(asked))
    assert "Revoke Web shop?" in asked[0]
    assert (await client.post("/api/messages/relay", json=ask, headers=headers)).status == 200
    page.once("dialog", lambda dialog: asyncio.ensure_future(answer(dialog, True)))
    await row.get_by_role("button", name="Revoke Web shop").click()
    await page.get_by_role("status").filter(has_text="The key is revoked").wait_for()
    assert (await client.post("/api/messages/relay", json=ask, headers=headers)).status == 401


async def _sign_in(page: Any, base: str, email: str) -> None:
    await page.goto(f"{base}/dashboard/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
