"""The web dashboard's pages on a big account: the overview and the inbox rendered for one account with 50,000
conversations and 1,000,000 messages (and a usage record per bot reply), next to the JSON API calls that read the
same data, measured in the same run.

    python -m bench.dashboard_pages                                   # SQLite, 50,000 x 20 messages
    python -m bench.dashboard_pages --database postgresql://postgres@127.0.0.1:5432/postgres
    python -m bench.dashboard_pages --conversations 5000              # quicker

The real app (`create_app`) serves on a random 127.0.0.1 port, on a new SQLite file, or on a database of its own on
the PostgreSQL server given (dropped at the end). One account with a bot on WhatsApp is made through the admin API
and its owner with `user add`; then contacts, messages (alternately the customer's and the bot's, all this month, so
every figure of the overview counts them all) and a usage record per bot reply are written straight into the
database through the app's own connection, and the hours that are over are rolled up, as the housekeeping leader
does within a minute (core/storage/rollups.py). The owner signs in through the sign-in form, and each URL is fetched
--repeat times, one at a time:
  - the pages: GET /dashboard/ (the overview) and GET /dashboard/conversations (the inbox's first page);
  - the baseline: the API calls the pages make, as JSON with an owner's token (the overview's three:
    /api/dashboard/metrics, /api/dashboard/usage, /api/status/webhooks, one after the other; the inbox's one:
    /api/conversations).
Times are measured at the client on the loopback interface (HTTP overhead included, about a millisecond). The page
weight of the overview is its HTML with its stylesheet and script, as sent and gzip-compressed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import io
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from admin.tokens import mint_token
from bench.common import PROJECT_DATA, local_settings, provision_with_channel, roll_up_anew, serving
from bench.postgres import BenchDatabase, check_server
from core.clock import month_bounds
from core.storage.db import Database
from gateway.app import create_app
from gateway.cli import main as cli_main
from gateway.keys import STORAGE
from gateway.logging import configure_logging
from sandbox.customers import PHONE_ID
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI

OWNER = "owner@bench.example"
PASSWORD = secrets.token_urlsafe(16)
JWT_SECRET = secrets.token_hex(32)
WORDS = ("bread", "cake", "order", "delivery", "tomorrow", "thanks", "price", "open", "gluten", "birthday", "please")
BATCH = 10_000
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _rows(account_id: str, bot_id: str, conversations: int, per: int, start: int, end: int) -> Iterator[Any]:
    """("contact" | "message" | "usage", row): every contact first, then the messages in time order as traffic
    writes them (the conversations interleaved, each spread over [start, end)), a usage row after each bot reply."""
    total = conversations * per
    span = max(end - start, 1)

    def at(n: int) -> int:
        return start + (n * span) // total

    for i in range(conversations):
        first, last = at(i), at((per - 1) * conversations + i)
        yield "contact", (f"con_bench{i:08d}", account_id, bot_id, "whatsapp", f"49151{i:08d}", per, first, last)
    for seq in range(1, per + 1):
        role = "user" if seq % 2 else "assistant"
        for i in range(conversations):
            n = (seq - 1) * conversations + i
            contact, when = f"con_bench{i:08d}", at(n)
            words = " ".join(WORDS[(i + seq + k) % len(WORDS)] for k in range(12))
            yield "message", (f"msg_b{i:08d}{seq:04d}", account_id, bot_id, contact, seq, role, words, 16, when)
            if role == "assistant":
                latency = 400 + (n * 7919) % 4000  # spread, as a model's answer times are
                yield (
                    "usage",
                    (f"use_b{i:08d}{seq:04d}", account_id, bot_id, contact, "whatsapp", 180, 24, 204, latency, when),
                )


_SQL = {
    "contact": "INSERT INTO contacts (id, account_id, bot_id, platform, external_id, message_count, created_at,"
    " last_message_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "message": "INSERT INTO messages (id, account_id, bot_id, contact_id, seq, role, content, tokens, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "usage": "INSERT INTO usage_records (id, account_id, bot_id, contact_id, channel, model, prompt_tokens,"
    " completion_tokens, total_tokens, cost_nanousd, latency_ms, attempts, outcome, created_at)"
    " VALUES (?, ?, ?, ?, ?, 'gpt-4o-mini', ?, ?, ?, 42000, ?, 1, 'ok', ?)",
}


async def fill(db: Database, account_id: str, bot_id: str, conversations: int, per: int, now: int) -> dict[str, int]:
    """Written in batches, in the order `_rows` gives (contacts first: messages refer to them)."""
    start = month_bounds(now)[0]
    counts = {"contact": 0, "message": 0, "usage": 0}
    batches: dict[str, list[Any]] = {"contact": [], "message": [], "usage": []}

    async def flush() -> None:
        async with db.transaction() as tx:
            for kind in ("contact", "message", "usage"):  # contacts first: messages refer to them
                if batches[kind]:
                    await tx.execute_many(_SQL[kind], batches[kind])
                    counts[kind] += len(batches[kind])
                    batches[kind].clear()

    for kind, row in _rows(account_id, bot_id, conversations, per, start, now - 60_000):
        batches[kind].append(row)
        if len(batches["message"]) + len(batches["contact"]) >= BATCH:
            await flush()
    await flush()
    return counts


async def _timed(
    session: aiohttp.ClientSession, urls: Sequence[str], repeat: int, **kw: Any
) -> tuple[list[float], bytes]:
    runs, body = [], b""
    for _ in range(repeat):
        started = time.perf_counter()
        for url in urls:
            async with session.get(url, **kw) as answer:
                body = await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"GET {url} answered {answer.status}: {body[:300]!r}")
        runs.append((time.perf_counter() - started) * 1000)
    return runs, body


@contextlib.asynccontextmanager
async def gateway(database: str | None) -> AsyncIterator[tuple[str, Any]]:
    app_secret, key = secrets.token_hex(16), base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    async with contextlib.AsyncExitStack() as stack:
        openai_base, _ = await stack.enter_async_context(serving(FakeOpenAI().app))
        graph_base, _ = await stack.enter_async_context(serving(FakeGraph(implicit_grants=True).app))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="nexus-pages-"))
        settings = local_settings(
            Path(tmp) / "pages.db",
            openai_base,
            graph_base,
            jwt_secret=JWT_SECRET,
            app_secret=app_secret,
            secrets_key=key,
            workers=1,
        )
        if database:
            server = await stack.enter_async_context(BenchDatabase(database))
            settings = replace(settings, database_url=server.url())
        base, app = await stack.enter_async_context(serving(create_app(settings)))
        yield base, (app, settings)


async def bench(args: argparse.Namespace) -> int:
    backend = "PostgreSQL" if args.database else "SQLite"
    async with gateway(args.database) as (base, (app, settings)):
        tenant = await provision_with_channel(base, JWT_SECRET, PHONE_ID)
        env = {"DATABASE_URL": settings.database_url, "DATA_DIR": str(PROJECT_DATA)}
        argv = ["user", "add", "--email", OWNER, "--role", "owner", "--account", tenant.account_id]
        if await asyncio.to_thread(cli_main, argv, env, io.StringIO(), io.StringIO(PASSWORD + "\n")) != 0:
            raise SystemExit("user add failed")
        started = time.perf_counter()
        counts = await fill(
            app[STORAGE].db,
            tenant.account_id,
            tenant.bot_id,
            args.conversations,
            args.messages_per,
            int(time.time() * 1000),
        )
        print(
            f"{backend}: {counts['contact']:,} conversations, {counts['message']:,} messages, {counts['usage']:,} usage"
            f" records written in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        # What the housekeeping leader does within a minute of start-up (core/storage/rollups.py): the month's hours
        # that ended 15 minutes ago are rolled up; the rest is read raw. The rows above were written with past
        # times, which the gateway never does: rollups the leader made while they were written start over.
        db = app[STORAGE].db
        started = time.perf_counter()
        hours = await roll_up_anew(db, app[STORAGE].rollups)
        print(f"{hours} hours rolled up in {time.perf_counter() - started:.1f} s", flush=True)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base, cookie_jar=jar) as browser:
            async with browser.get("/dashboard/login") as form:
                csrf = _CSRF.search(await form.text())
            assert csrf is not None
            fields = {"csrf": csrf.group(1), "email": OWNER, "password": PASSWORD}
            async with browser.post("/dashboard/login", data=fields) as signed_in:
                assert signed_in.status == 200, await signed_in.text()
            token = mint_token(
                JWT_SECRET, role="owner", sub="bench", account_id=tenant.account_id, ttl=3600, now=int(time.time())
            )
            api = {"headers": {"Authorization": f"Bearer {token}"}}
            cases: tuple[tuple[str, list[str], dict[str, Any]], ...] = (
                ("overview page", ["/dashboard/"], {}),
                ("  its API calls", ["/api/dashboard/metrics", "/api/dashboard/usage", "/api/status/webhooks"], api),
                ("    metrics", ["/api/dashboard/metrics"], api),
                ("    usage", ["/api/dashboard/usage"], api),
                ("    webhooks status", ["/api/status/webhooks"], api),
                ("inbox page", ["/dashboard/conversations"], {}),
                ("  its API call", ["/api/conversations"], api),
            )
            for _, urls, kw in cases:  # warm the caches once, as a page visited before
                await _timed(browser, urls, 1, **kw)
            await _check(browser, db, tenant.account_id, api)
            results = []
            for name, urls, kw in cases:
                runs, body = await _timed(browser, urls, args.repeat, **kw)
                results.append((name, runs, body))
            overview = results[0][2]
            assets = [
                await _asset(browser, path)
                for path in re.findall(rb'(?:href|src)="(/dashboard/static/[^"]+)"', overview)
            ]
        print(f"\n{'':<18} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}   ({args.repeat} runs each, one at a time)")
        for name, runs, _ in results:
            ordered = sorted(runs)
            p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
            print(f"{name:<18} {statistics.median(runs):>10.1f} {p95:>8.1f} {max(runs):>8.1f}")
        parts = [overview, *assets]
        raw, packed = sum(len(p) for p in parts), sum(len(gzip.compress(p)) for p in parts)
        print(
            f"\noverview page weight: {raw / 1024:.1f} KiB as sent ({len(overview) / 1024:.1f} KiB HTML, "
            f"{sum(len(a) for a in assets) / 1024:.1f} KiB stylesheet and script), {packed / 1024:.1f} KiB gzipped; "
            "no images, fonts or other requests"
        )
    return 0


async def _check(session: aiohttp.ClientSession, db: Database, account_id: str, api: dict[str, Any]) -> None:
    """The overview's figures (from the rollups and the raw rows after them) equal the raw rows' own sums."""
    async with session.get("/api/dashboard/metrics", **api) as answer:
        metrics = await answer.json()
    start = month_bounds(int(time.time() * 1000))[0]
    raw = await db.fetch_one(
        "SELECT (SELECT SUM(total_tokens) FROM usage_records WHERE account_id = ? AND created_at >= ?) AS tokens,"
        " (SELECT COUNT(*) FROM messages WHERE account_id = ? AND created_at >= ? AND role = 'user') AS inbound,"
        " (SELECT COUNT(DISTINCT contact_id) FROM messages WHERE account_id = ? AND created_at >= ?) AS contacts",
        (account_id, start, account_id, start, account_id, start),
    )
    assert raw is not None
    mine = (metrics["tokens"]["total"], metrics["messages"]["inbound"], metrics["conversations"])
    counted = (int(raw["tokens"]), int(raw["inbound"]), int(raw["contacts"]))
    if mine != counted:
        raise SystemExit(f"the overview's figures {mine} differ from the raw rows' {counted}")
    print(
        f"figures checked against the raw rows: {counted[0]:,} tokens, {counted[1]:,} messages in, "
        f"{counted[2]:,} conversations",
        flush=True,
    )


async def _asset(session: aiohttp.ClientSession, path: bytes) -> bytes:
    async with session.get(path.decode().replace("&amp;", "&")) as answer:
        return await answer.read()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--messages-per", type=int, default=20, help="messages in each conversation")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database", help="a postgresql:// server URL: run on a database of the bench's own there")
    args = parser.parse_args(argv)
    if args.database and (why := check_server(args.database)):
        parser.error(why)
    configure_logging("WARNING", "console")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
