"""The dashboard in a real Chromium (Debian's, found on the PATH; Playwright downloads nothing): a person signs in,
sees the API's figures, finds a WhatsApp customer in the inbox and answers them from the page."""

from __future__ import annotations

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
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on the PATH: the browser tests need one")
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
