"""Screenshots of the web dashboard's pages at a phone's width and a desktop's, to look at before calling a page done.

    python -m bench.screenshots [--out DIR]

The real gateway app (a temporary SQLite file, 2 inbox workers), the fake OpenAI and the fake Graph API run in this
process on random local ports. A tenant with a WhatsApp channel is provisioned through the admin API, three
customers write (one of them in markup, which must show as text), and an owner is added with `user add`. Debian's
Chromium (found on the PATH) then signs in and photographs the sign-in page, the overview, the inbox and a
conversation at 390 x 844 and 1280 x 800 pixels, into --out (default: a new temporary directory), and prints the
files' paths.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import io
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import PROJECT_DATA, local_settings, provision_with_channel, serving
from gateway.app import create_app
from gateway.cli import main as cli_main
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI

PHONE_ID = "106540352242922"
APP_SECRET = secrets.token_hex(16)
JWT_SECRET = secrets.token_hex(32)
SECRETS_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
PASSWORD = secrets.token_urlsafe(16)  # a new person each run: any password will do
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
CUSTOMERS = (
    ("4915112345678", "Hi! Is my birthday cake ready for pick-up tomorrow?"),
    ("4915187654321", "Do you have gluten-free bread on Saturdays?"),
    ("4915100000000", '<b>bold?</b> <script>alert("x")</script> What are your opening hours?'),
)


def _delivery(wamid: str, customer: str, text: str) -> tuple[bytes, dict[str, str]]:
    message = {
        "from": customer,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_ID},
        "contacts": [{"profile": {"name": "Customer"}, "wa_id": customer}],
        "messages": [message],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    raw = json.dumps(body).encode()
    digest = hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


async def _shots(base: str, out: Path, chromium: str) -> list[Path]:
    from playwright.async_api import async_playwright

    taken: list[Path] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        for size, (width, height) in SIZES.items():
            page = await browser.new_page(viewport={"width": width, "height": height})

            async def shoot(name: str, page: Any = page, size: str = size) -> None:
                path = out / f"{name}-{size}.png"
                await page.screenshot(path=str(path), full_page=True)
                taken.append(path)

            await page.goto(f"{base}/dashboard/login")
            await shoot("login")
            await page.get_by_label("Email").fill("anna@bakery.example")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("heading", name="Overview").wait_for()
            await shoot("overview")
            await page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
            await page.get_by_role("heading", name="Conversations").wait_for()
            await shoot("conversations")
            await page.get_by_role("link", name=f"WhatsApp · {CUSTOMERS[2][0]}").click()
            await page.get_by_label("Reply").wait_for()
            await shoot("conversation")
            await page.close()
        await browser.close()
    return taken


async def run(out: Path) -> list[Path]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium on the PATH (Debian: apt-get install chromium)")
    fake_openai, graph = FakeOpenAI(), FakeGraph(implicit_grants=True)
    with tempfile.TemporaryDirectory(prefix="nexus-screenshots-") as tmp:
        async with serving(fake_openai.app) as (openai_base, _), serving(graph.app) as (graph_base, _):
            secrets_of = {"jwt_secret": JWT_SECRET, "app_secret": APP_SECRET, "secrets_key": SECRETS_KEY}
            database = Path(tmp) / "dashboard.db"
            settings = local_settings(database, openai_base, graph_base, **secrets_of, workers=2)
            async with serving(create_app(settings)) as (base, _):
                tenant = await provision_with_channel(base, JWT_SECRET, PHONE_ID)
                async with aiohttp.ClientSession() as session:
                    for n, (customer, text) in enumerate(CUSTOMERS):
                        raw, headers = _delivery(f"wamid.shot{n}", customer, text)
                        async with session.post(f"{base}/webhooks/whatsapp", data=raw, headers=headers) as answer:
                            answer.raise_for_status()
                for _ in range(200):  # a typing indicator and a reply each, within 10 s
                    if len(graph.requests) >= 2 * len(CUSTOMERS):
                        break
                    await asyncio.sleep(0.05)
                env = {"DATABASE_URL": settings.database_url, "DATA_DIR": str(PROJECT_DATA)}
                argv = ["user", "add", "--email", "anna@bakery.example", "--role", "owner", "--account"]
                added = await asyncio.to_thread(
                    cli_main, [*argv, tenant.account_id], env, io.StringIO(), io.StringIO(PASSWORD + "\n")
                )
                if added != 0:
                    raise SystemExit("user add failed")
                return await _shots(base, out, chromium)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where the PNG files go (default: a new temp dir)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="nexus-dashboard-"))
    out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(run(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
