"""Screenshots of the web dashboard's pages at a phone's width and a desktop's, to look at before calling a page done.

    python -m bench.screenshots [--out DIR]

The sandbox (sandbox/demo.py: the gateway with the fake model and fake Graph, a demo business on three channels)
runs in this process. Customers write on each channel (one in markup, which must show as text; one asks for a
person, so the bot hands over), and an admin is added beside the sandbox's owner. Debian's Chromium (found on the
PATH) then signs in and photographs each page at 390 x 844 and 1280 x 800 pixels, into --out (default: a new
temporary directory), and prints the files' paths.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import PROJECT_DATA
from core.tokens import TokenCounter
from gateway.settings import Settings
from sandbox.customers import CUSTOMERS
from sandbox.demo import OWNER_EMAIL, Sandbox, running_sandbox

SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
ADMIN = "operator@sandbox.example"
MESSAGES = (
    ("whatsapp", "Hi! When are you open on Saturday?"),
    ("messenger", '<b>bold?</b> <script>alert("x")</script> Do you deliver?'),
    ("instagram", "Can I talk to a person, please?"),
)


async def _shots(box: Sandbox, admin_password: str, out: Path, chromium: str) -> list[Path]:
    from playwright.async_api import async_playwright

    taken: list[Path] = []
    base = box.base_url
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        for size, (width, height) in SIZES.items():
            page = await browser.new_page(viewport={"width": width, "height": height})

            async def shoot(name: str, page: Any = page, size: str = size) -> None:
                await page.get_by_role("heading", level=1).first.wait_for()
                path = out / f"{name}-{size}.png"
                await page.screenshot(path=str(path), full_page=True)
                taken.append(path)

            await page.goto(f"{base}/dashboard/login")
            await shoot("login")
            await _sign_in(page, OWNER_EMAIL, box.password)
            await shoot("overview")
            await page.goto(f"{base}/dashboard/conversations")
            await shoot("conversations")
            await page.get_by_role("link", name=f"Instagram · {CUSTOMERS['instagram'].customer_id}").click()
            await shoot("conversation")
            for name, path in (
                ("bots", "/dashboard/bots"),
                ("bot", f"/dashboard/bots/{box.bot_id}"),
                ("knowledge", f"/dashboard/bots/{box.bot_id}/knowledge?q=Do+you+deliver+on+Saturday"),
                ("try", f"/dashboard/bots/{box.bot_id}/try"),
            ):
                await page.goto(base + path)
                if name == "try":
                    await page.get_by_label("Message").fill("How much is a flat white?")
                    await page.get_by_role("button", name="Send to the bot").click()
                    await page.locator('[data-turn="tokens"]').wait_for()
                await shoot(name)
            await page.goto(f"{base}/dashboard/usage?group_by=platform")
            await shoot("usage")
            await page.goto(f"{base}/dashboard/api-keys")
            await page.get_by_label("Name").fill("Web shop")
            await page.get_by_role("button", name="Issue a key").click()
            await page.get_by_label("The key").wait_for()
            await shoot("api-keys")
            await page.context.clear_cookies()
            await page.goto(f"{base}/dashboard/login")
            await _sign_in(page, ADMIN, admin_password)
            for name, path in (
                ("admin-accounts", "/dashboard/admin/accounts"),
                ("admin-people", "/dashboard/admin/people"),
            ):
                await page.goto(base + path)
                await shoot(name)
            await page.goto(f"{base}/dashboard/admin/accounts/{box.account_id}")
            await shoot("admin-account")
            await page.goto(f"{base}/dashboard/admin/plans")
            await page.get_by_role("row").nth(1).get_by_role("link").click()
            await shoot("admin-plan")
            await page.close()
        await browser.close()
    return taken


async def _sign_in(page: Any, email: str, password: str) -> None:
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()


async def run(out: Path) -> list[Path]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium on the PATH (Debian: apt-get install chromium)")
    base = Settings.from_env({"DATA_DIR": str(PROJECT_DATA), "LOG_LEVEL": "WARNING"})
    async with running_sandbox(base, TokenCounter(PROJECT_DATA / "tokenizers")) as box:
        async with aiohttp.ClientSession() as http:
            for platform, text in MESSAGES:
                await box.deliver(http, CUSTOMERS[platform], text)
        for _ in range(200):  # each answered within 10 s
            if len(box.graph.sent_texts()) >= len(MESSAGES):
                break
            await asyncio.sleep(0.05)
        admin_password = secrets.token_urlsafe(16)
        await box.add_person(ADMIN, "admin", admin_password)
        return await _shots(box, admin_password, out, chromium)


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
