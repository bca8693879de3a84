"""Recovery benchmark: how soon after a SIGKILL the messages a gateway process held are answered, with the default
INBOX_LEASE_SECONDS (15 s), next to a baseline measured in the same run.

    python -m bench.recovery                     # SQLite, and PostgreSQL when its server answers: about 70 s
    python -m bench.recovery --runs 3            # each measurement 3 times (median and worst)
    python -m bench.recovery --postgres postgresql://user@host:5432/postgres    # or --no-postgres
    python -m bench.recovery --lease-seconds 5   # another INBOX_LEASE_SECONDS

Every gateway is a real process (`python -m gateway serve --role ...`, the Procfile's command, configured through
its environment) on a database of its own. Each process has a fake OpenAI (0.15 to 0.25 s per call) and a fake
Graph (0.05 s per request) of its own, served by this process's event loop, so a request is known to come from the
process that made it. The load is the crash tests' (tests/support/crash_load.py): 40 signed WhatsApp texts from
10 customers, 4 each. A message is answered when its inbox event is recorded done (the row's last update, by the
gateway's clock; this process reads the database as an operator would).

SQLite, one process (`--role all`, --workers inbox workers):
  recovery: the 40 messages are delivered; once 10 replies went out and a model call is running, the process is
    SIGKILLed and the same command is started again at once. Measured from the kill: the last of the events the
    dead process held (leased, pending) answered; also the last of all 40.
  baseline: the same restart with nothing in flight. A process with WORKERS=0 stores one message from each of as
    many customers as the recovery run's process held (nothing is leased), is SIGKILLed and started again with
    workers; measured from the kill to the last of them answered. That is a restart and one turn, the least a
    recovery by restart can take: what recovery takes beyond it is the wait for the dead process's leases.

PostgreSQL, one `--role web` and two `--role worker` processes (--workers each), when --postgres names a server
that answers (by default $TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres); a database of
its own is created, and dropped at the end:
  takeover: the 40 messages are posted to the web process; once 10 replies went out, the worker process with a
    model call running is SIGKILLed and not restarted: the other takes its events up when their leases run out.
    Measured from the kill: the last event the dead process held answered; also the last of all 40.
  baseline: nothing to take over. Afterwards, as many new messages as the dead process held, one per new
    customer, are posted at once; measured from the post to the last of them answered by the surviving worker.
    The least a takeover can take: what it takes beyond it is the wait for the leases.

Also printed: how much of its lease each held event still had at the kill (the holder renews it every third of the
lease, so between two thirds and all of it), and for SQLite how long the restarted process took to be ready.
The previous default lease (180 s) is not measured: it is the same wait, twelve times longer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
from psycopg.rows import dict_row

from adapters.meta_auth import SIGNATURE_HEADER, sign
from admin.tokens import mint_token
from bench.common import admin_post, provision
from bench.load import PHONE_NUMBER_ID, whatsapp_text
from core.storage.db import DatabaseURL
from gateway.logging import configure_logging
from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support.gateway_process import GatewayProcess, free_port

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = 10
PER_CUSTOMER = 4
KILL_AFTER_REPLIES = 10
START_TIMEOUT = 60.0  # a gateway process ready (imports, migrations, listening), on a loaded machine
KILL_TIMEOUT = 60.0  # until a moment with a model call running
ANSWER_TIMEOUT = 180.0  # until everything is answered after the kill
DEFAULT_POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# ---- the load, the processes, the database ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Secrets:
    """The secrets of a load's gateways, new for each: the Meta app secret, the admin JWT secret, the secrets key."""

    app: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    jwt: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    box: str = field(default_factory=lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())  # a Fernet key


class Load:
    """Messages from customers, as Meta delivers them (bench.webhooks' payloads): customer c's n-th message is
    delivery number n x CUSTOMERS + c, so each customer's come in order, one batch after another."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.secrets = Secrets()
        self.now = int(time.time())
        self.by_text: dict[str, str] = {}  # the text a model call is asked about -> the message id

    def payload(self, customer: int, n: int) -> dict[str, Any]:
        body: dict[str, Any] = whatsapp_text(n * CUSTOMERS + customer, self.tag, CUSTOMERS, self.now)
        [message] = body["entry"][0]["changes"][0]["value"]["messages"]
        self.by_text[message["text"]["body"]] = message["id"]
        return body

    async def deliver(self, base_url: str, batches: Sequence[Sequence[tuple[int, int]]]) -> list[str]:
        """Each batch of (customer, n) at once, the batches one after another; the message ids delivered."""
        delivered: list[str] = []
        async with aiohttp.ClientSession() as meta:

            async def one(customer: int, n: int) -> None:
                body = self.payload(customer, n)
                raw = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(raw, self.secrets.app)}
                async with meta.post(f"{base_url}/webhooks/whatsapp", data=raw, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"delivery answered {response.status}: {await response.text()}")
                delivered.append(body["entry"][0]["changes"][0]["value"]["messages"][0]["id"])

            for batch in batches:
                await asyncio.gather(*(one(c, n) for c, n in batch))
        return delivered

    async def deliver_all(self, base_url: str) -> list[str]:
        return await self.deliver(base_url, [[(c, n) for c in range(CUSTOMERS)] for n in range(PER_CUSTOMER)])


def gateway_env(keys: Secrets, database_url: str, openai_url: str, graph_url: str, **settings: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(PROJECT_ROOT),
        "PORT": str(free_port()),
        "DATABASE_URL": database_url,
        "DATA_DIR": str(PROJECT_ROOT / "data"),
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": openai_url,
        "GRAPH_API_BASE_URL": graph_url,
        "ADMIN_JWT_SECRET": keys.jwt,
        "SECRETS_KEY": keys.box,
        "META_APP_SECRET": keys.app,
        **settings,
    }


def inbox(database_url: str) -> dict[str, dict[str, Any]]:
    """The inbox rows by message id, read as an operator would (a connection of this process's own)."""
    sql = "SELECT event_key, state, lease_owner, lease_expires_at, updated_at FROM inbox"
    where = DatabaseURL.parse(database_url)
    if where.path is not None:
        with closing(sqlite3.connect(where.path, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            return {row["event_key"]: dict(row) for row in conn.execute(sql)}
    with closing(psycopg.connect(database_url, row_factory=dict_row)) as pg:
        return {row["event_key"]: row for row in pg.execute(sql)}


def leases(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The events under a lease, by message id: when each lease runs out (wall clock, seconds)."""
    return {
        m: int(r["lease_expires_at"]) / 1000
        for m, r in rows.items()
        if r["state"] == "pending" and r["lease_owner"] is not None
    }


@dataclass(frozen=True, slots=True)
class Measured:
    backend: str
    what: str
    seconds: float  # the figure: from the kill (baseline PostgreSQL: the post) to the last held event answered
    held: int  # events the dead process held (baseline: messages waiting)
    all_answered: float | None = None  # from the kill to the last of the 40 answered
    lease_left: tuple[float, ...] = ()  # what each held event's lease still had to run at the kill
    ready: float | None = None  # from the kill to the restarted process ready


class Process:
    """A gateway process with its own fake OpenAI and fake Graph."""

    def __init__(self, name: str, seed: int, load: Load) -> None:
        self.name = name
        self.load = load
        self.openai = FakeOpenAI(latency=0.15, jitter=0.1, seed=seed)
        self.graph = FakeGraph(latency=0.05, implicit_grants=True)
        self.gateway: GatewayProcess | None = None

    @contextlib.asynccontextmanager
    async def serving(self, workdir: Path, database_url: str, role: str, **settings: str) -> AsyncIterator[Process]:
        """Its fakes listening and its gateway configured (not started); the gateway killed on leaving."""
        async with self.openai.serve(HOST, 0) as openai_url, self.graph.serve(HOST, 0) as graph_url:
            env = gateway_env(self.load.secrets, database_url, openai_url, graph_url, **settings)
            self.gateway = GatewayProcess(env, workdir / f"{self.name}.log", workdir, args=("serve", "--role", role))
            try:
                yield self
            finally:
                self.gateway.close()

    @property
    def process(self) -> GatewayProcess:
        assert self.gateway is not None, "not serving"
        return self.gateway

    def calling(self) -> list[str]:
        """The customer messages it has a model call running for."""
        return [self.load.by_text[c.messages[-1]["content"]] for c in self.openai.calls if c.ended_at is None]


async def provision_channel(base_url: str, keys: Secrets) -> None:
    """A plan, an account, a bot and the WhatsApp channel, through the admin HTTP API."""
    token = mint_token(keys.jwt, role="admin", sub="bench", account_id=None, ttl=3600, now=int(time.time()))
    async with aiohttp.ClientSession() as session:
        tenant = await provision(session, base_url, token)
        channel = {"platform": "whatsapp", "external_id": PHONE_NUMBER_ID, "access_token": f"token-{PHONE_NUMBER_ID}"}
        await admin_post(session, base_url, token, f"/bots/{tenant.bot_id}/channels", channel)


async def kill_when_calling(processes: Sequence[Process]) -> tuple[Process, list[str], float]:
    """Once KILL_AFTER_REPLIES replies went out, SIGKILL the first process with a model call running: (it, the
    messages it was calling the model for, the wall-clock time of the kill)."""
    deadline = time.monotonic() + KILL_TIMEOUT
    while time.monotonic() < deadline:
        replies = sum(1 for p in processes for c in p.graph.requests if c.kind == "text" and c.ok)
        busy = [p for p in processes if p.calling()]
        if replies >= KILL_AFTER_REPLIES and busy:
            calling = busy[0].calling()
            busy[0].process.send_signal(signal.SIGKILL)
            return busy[0], calling, time.time()
        await asyncio.sleep(0.002)
    raise RuntimeError(f"no model call running after {KILL_AFTER_REPLIES} replies within {KILL_TIMEOUT:g} s")


async def answered(database_url: str, message_ids: Collection[str]) -> dict[str, float]:
    """When each of the messages was answered (wall clock), once none of them is pending any more."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        rows = await asyncio.to_thread(inbox, database_url)
        if all(m in rows and rows[m]["state"] != "pending" for m in message_ids):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all answered within {ANSWER_TIMEOUT:g} s")
        await asyncio.sleep(0.05)
    failed = {m: rows[m]["state"] for m in message_ids if rows[m]["state"] != "done"}
    if failed:
        raise RuntimeError(f"not answered: {failed}")
    return {m: int(rows[m]["updated_at"]) / 1000 for m in message_ids}


async def ready(process: GatewayProcess) -> None:
    process.start()
    await process.wait_ready(START_TIMEOUT)


# ---- SQLite: one process, restarted ----------------------------------------------------------------------------


async def sqlite_recovery(args: argparse.Namespace, workdir: Path) -> Measured:
    url = f"sqlite:///{workdir / 'recovery.db'}"
    load = Load("SQLR")
    async with Process("sqlite-recovery", 1, load).serving(workdir, url, "all", **settings(args)) as one:
        await ready(one.process)
        await provision_channel(one.process.base_url, load.secrets)
        messages = await load.deliver_all(one.process.base_url)
        _, _, killed = await kill_when_calling([one])
        await one.process.wait_exit(10)
        held = leases(await asyncio.to_thread(inbox, url))
        await ready(one.process)
        up = time.time()
        done = await answered(url, messages)
    return Measured(
        "sqlite",
        "recovery: the last event the dead process held answered, from the kill",
        max(done[m] for m in held) - killed,
        len(held),
        max(done.values()) - killed,
        tuple(expires - killed for expires in held.values()),
        up - killed,
    )


async def sqlite_baseline(args: argparse.Namespace, workdir: Path, count: int) -> Measured:
    url = f"sqlite:///{workdir / 'baseline.db'}"
    load = Load("SQLB")
    ingest_only = settings(args, workers=0)
    async with Process("sqlite-baseline", 2, load).serving(workdir, url, "all", **ingest_only) as one:
        await ready(one.process)
        await provision_channel(one.process.base_url, load.secrets)
        messages = await load.deliver(one.process.base_url, [[(customer, 0) for customer in range(count)]])
        one.process.send_signal(signal.SIGKILL)
        killed = time.time()
        await one.process.wait_exit(10)
        if leases(await asyncio.to_thread(inbox, url)):
            raise RuntimeError("an ingest-only process held a lease")
        one.process.env["WORKERS"] = str(args.workers)
        await ready(one.process)
        up = time.time()
        done = await answered(url, messages)
    return Measured(
        "sqlite",
        "baseline: a restart with nothing in flight, from the kill",
        max(done.values()) - killed,
        count,
        ready=up - killed,
    )


# ---- PostgreSQL: a web process and two workers, one killed -----------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database(server_url: str) -> AsyncIterator[str]:
    """A database of its own on the server, dropped on leaving; yields its URL."""
    name = f"bench_recovery_{os.getpid()}_{secrets.token_hex(3)}"
    with closing(psycopg.connect(server_url, autocommit=True)) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with closing(psycopg.connect(server_url, autocommit=True)) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def postgres_takeover(args: argparse.Namespace, workdir: Path, server_url: str) -> tuple[Measured, Measured]:
    load = Load("PGT")
    async with postgres_database(server_url) as url, contextlib.AsyncExitStack() as stack:
        env = settings(args, DATABASE_POOL_SIZE="4")
        web = await stack.enter_async_context(Process("pg-web", 3, load).serving(workdir, url, "web", **env))
        workers: list[Process] = []
        for n in (1, 2):
            worker = Process(f"pg-worker-{n}", 3 + n, load)
            workers.append(await stack.enter_async_context(worker.serving(workdir, url, "worker", **env)))
        for process in (web, *workers):  # at once: one applies the migrations, the others wait for its lock
            process.process.start()
        for process in (web, *workers):
            await process.process.wait_ready(START_TIMEOUT)
        await provision_channel(web.process.base_url, load.secrets)
        messages = await load.deliver_all(web.process.base_url)
        victim, calling, killed = await kill_when_calling(workers)
        await victim.process.wait_exit(10)
        rows = await asyncio.to_thread(inbox, url)
        owner = rows[calling[0]]["lease_owner"]
        held = leases({m: r for m, r in rows.items() if r["lease_owner"] == owner})
        done = await answered(url, messages)
        takeover = Measured(
            "postgresql",
            "takeover: the last event the dead worker held answered, from the kill",
            max(done[m] for m in held) - killed,
            len(held),
            max(done.values()) - killed,
            tuple(expires - killed for expires in held.values()),
        )

        # Everything is answered: as many new messages as were held, each customer's next one, at once.
        posted = time.time()
        fresh = await load.deliver(web.process.base_url, [[(c, PER_CUSTOMER) for c in range(len(held))]])
        done = await answered(url, fresh)
        baseline = Measured(
            "postgresql",
            "baseline: the surviving worker, nothing to take over, from the post",
            max(done.values()) - posted,
            len(fresh),
        )
    return baseline, takeover


def postgres_reachable(url: str) -> bool:
    try:
        with closing(psycopg.connect(url, connect_timeout=3)):
            return True
    except psycopg.Error:
        return False


def settings(args: argparse.Namespace, workers: int | None = None, **more: str) -> dict[str, str]:
    return {
        "WORKERS": str(args.workers if workers is None else workers),
        "INBOX_LEASE_SECONDS": str(args.lease_seconds),
        "LOG_LEVEL": "WARNING",
        **more,
    }


# ---- the run ---------------------------------------------------------------------------------------------------


def show(m: Measured) -> None:
    extra = [f"{m.held} held" if m.lease_left else f"{m.held} waiting"]
    if m.lease_left:
        extra.append(f"lease left at the kill {min(m.lease_left):.1f}-{max(m.lease_left):.1f} s")
    if m.all_answered is not None:
        extra.append(f"all 40 answered {m.all_answered:.1f} s")
    if m.ready is not None:
        extra.append(f"restarted process ready {m.ready:.1f} s")
    print(f"  {m.backend:<10} {m.what:<72} {m.seconds:6.2f} s   ({'; '.join(extra)})", flush=True)


async def bench(args: argparse.Namespace) -> int:
    postgres = None if args.no_postgres else args.postgres
    if postgres is not None and not postgres_reachable(postgres):
        print(f"PostgreSQL at {postgres} does not answer: SQLite only (--postgres URL to name another server)")
        postgres = None
    print(
        f"recovery after SIGKILL: INBOX_LEASE_SECONDS={args.lease_seconds}, {args.workers} inbox workers per process,"
        " fake model 0.15-0.25 s, fake Graph 0.05 s; 40 messages from 10 customers\n",
        flush=True,
    )
    results: list[Measured] = []
    for run in range(1, args.runs + 1):
        print(f"run {run} of {args.runs}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
            recovery = await sqlite_recovery(args, Path(tmp))
            baseline = await sqlite_baseline(args, Path(tmp), recovery.held)
            results += [baseline, recovery]
            show(baseline)
            show(recovery)
            if postgres is not None:
                pair = await postgres_takeover(args, Path(tmp), postgres)
                results += pair
                for measured in pair:
                    show(measured)

    print(f"\nover {args.runs} run(s), seconds (median / worst), lease {args.lease_seconds} s:")
    for backend in ("sqlite", "postgresql"):
        mine = [m for m in results if m.backend == backend]
        if not mine:
            continue
        base = [m.seconds for m in mine if m.what.startswith("baseline")]
        held = [m.seconds for m in mine if not m.what.startswith("baseline")]
        over = statistics.median(held) - statistics.median(base)
        print(
            f"  {backend:<10} baseline {statistics.median(base):5.2f} / {max(base):5.2f}"
            f"   after the kill {statistics.median(held):5.2f} / {max(held):5.2f}"
            f"   beyond the baseline {over:5.2f} (the lease: {args.lease_seconds} s)"
        )
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.split("\n\n")[0])

    def bounded(low: int, high: int) -> Callable[[str], int]:
        def convert(raw: str) -> int:
            value = int(raw)
            if not low <= value <= high:
                raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {raw}")
            return value

        return convert

    default_lease = Settings().inbox_lease_seconds
    add = parser.add_argument
    add("--runs", type=bounded(1, 20), default=1, help="times each measurement is made (1)")
    add("--workers", type=bounded(1, 64), default=4, help="inbox workers per worker process (4)")
    add(
        "--lease-seconds",
        type=bounded(3, 600),
        default=default_lease,
        help=f"INBOX_LEASE_SECONDS of every process (the default, {default_lease})",
    )
    add("--postgres", default=DEFAULT_POSTGRES, help="a PostgreSQL server URL ($TEST_POSTGRES_URL or the local one)")
    add("--no-postgres", action="store_true", help="SQLite only")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
