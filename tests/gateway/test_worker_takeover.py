"""A worker process dies with events in hand and another worker process takes them up (the reliability test plan,
W7 and Q5): real processes with roles on one PostgreSQL database, SIGKILL, real leases.

One `serve --role web` process takes the webhooks and the admin API; two `serve --role worker` processes (their own
PORT, WORKERS=2 each, INBOX_LEASE_SECONDS=3) answer. Each worker process has a fake OpenAI (0.15 to 0.25 s per
call) and a fake Graph (0.05 s) of its own, all in this test's event loop, so the test knows which process made
each request and what it still had open when it died. The load of tests/support/crash_load.py (40 signed WhatsApp
texts from 10 customers) is posted to the web process; once some replies went out, the worker process that has a
model call running is killed, and only the other one is left.

Checked: the other worker leaves the dead one's events alone while their leases are live, keeps answering the
other conversations meanwhile, and answers every event the dead one held within RECOVERY_MARGIN_SECONDS of its
lease running out, so within the lease plus that margin after the kill; then the plan's W7 bounds (0 lost,
duplicates only for sends the kill cut, each conversation in order, no second model call for a stored reply) and a
consistent quota: used tokens are the usage of the replies sent, and only the dead process's reservations are
still held (they wait for RESERVATION_TTL_SECONDS, 40 s here, and the sweep; tests/gateway/test_crash_recovery.py
waits for that). The web process calls neither the model nor Graph's send API.

PostgreSQL only: on SQLite the gateway serves one process (it always leads the housekeeping, and other processes'
events are found only by polling), so roles in separate processes are a PostgreSQL deployment.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.channel_traffic import PHONE_ID
from tests.support.crash_load import (
    BY_QUESTION,
    MESSAGES,
    START_TIMEOUT_SECONDS,
    TOTAL,
    Left,
    all_answered,
    check_recovered,
    check_takeovers,
    deliver_all,
    gateway_env,
    inbox,
    leases,
    quota,
    replies_sent,
    report,
    takeovers,
    wall_offset,
)
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.harness import connect_channel, provision

pytestmark = pytest.mark.postgresql_only

LEASE_SECONDS = 3
KILL_AFTER_REPLIES = 8


@dataclass
class Process:
    name: str
    gateway: GatewayProcess
    openai: FakeOpenAI
    graph: FakeGraph

    def busy_model_calls(self) -> list[str]:
        """The customer messages this process has a model call running for."""
        return [BY_QUESTION[c.messages[-1]["content"]] for c in self.openai.calls if c.ended_at is None]

    async def idle(self, within: float = 5.0) -> None:
        """Until its fakes have finished every request of the process (cut ones included)."""
        deadline = time.monotonic() + within
        while self.graph.in_flight or self.openai.in_flight:
            assert time.monotonic() < deadline, f"{self.name}'s fakes still have requests open"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # requests already in the sockets' buffers reach the handlers, and end


@pytest.fixture
async def processes(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[tuple[str, Process, list[Process]]]:
    """(database URL, the web process, the two worker processes), started; every process is killed at the end."""
    database_url = database.migrated_url(tmp_path)
    made: list[Process] = []
    try:
        for name in ("web", "worker-a", "worker-b"):
            # Jitter: the two workers of a process must not run in step, or no moment finds a model call running.
            openai = FakeOpenAI(latency=0.15, jitter=0.1, seed=len(made))
            graph = FakeGraph(latency=0.05, implicit_grants=True)
            openai_url = str((await aiohttp_server(openai.app)).make_url("/v1"))
            graph_url = str((await aiohttp_server(graph.app)).make_url("")).rstrip("/")
            env = gateway_env(
                database_url,
                openai_url,
                graph_url,
                free_port(),
                WORKERS="2",
                DATABASE_POOL_SIZE="4",
                LLM_TOTAL_BUDGET="5",
                LLM_ATTEMPT_TIMEOUT="5",
                INBOX_LEASE_SECONDS=str(LEASE_SECONDS),
                RESERVATION_TTL_SECONDS="40",
            )
            role = "web" if name == "web" else "worker"
            gateway = GatewayProcess(env, tmp_path / f"{name}.log", tmp_path, args=("serve", "--role", role))
            made.append(Process(name, gateway, openai, graph))
        web, workers = made[0], made[1:]
        for process in made:  # at once (the schema is migrated: each finds nothing to apply)
            process.gateway.start()
        for process in made:
            await process.gateway.wait_ready(START_TIMEOUT_SECONDS)
        yield database_url, web, workers
    finally:
        for process in made:
            process.gateway.close()


@dataclass(frozen=True)
class Kill:
    victim: Process
    calling: list[str]  # the messages it had a model call running for
    replies: int  # replies Graph had answered, from both workers
    at: float  # wall clock


async def kill_a_busy_worker(workers: list[Process], within: float = 20.0) -> Kill:
    """Once some replies went out, SIGKILL the worker process that has a model call running."""
    deadline = time.monotonic() + within
    while True:
        replies = sum(replies_sent(w.graph.requests) for w in workers)
        busy = [w for w in workers if w.busy_model_calls()]
        if replies >= KILL_AFTER_REPLIES and busy:
            calling = busy[0].busy_model_calls()
            busy[0].gateway.send_signal(signal.SIGKILL)  # no await since the check: its view is the one at the kill
            return Kill(busy[0], calling, replies, time.time())
        assert replies < TOTAL, "everything was answered before a worker was killed"
        assert time.monotonic() < deadline, f"no worker was calling the model in {within} s"
        await asyncio.sleep(0.002)


async def test_a_worker_process_killed_with_events_in_hand_hands_them_over_within_the_lease(
    processes: tuple[str, Process, list[Process]],
) -> None:
    database_url, web, workers = processes
    started = time.monotonic()
    async with aiohttp.ClientSession(base_url=web.gateway.base_url) as admin:
        tenant = await provision(admin, name="Takeover", plan={"monthly_token_limit": 1_000_000})  # type: ignore[arg-type]
        await connect_channel(admin, tenant, "whatsapp", PHONE_ID)  # type: ignore[arg-type]
    await deliver_all(web.gateway.base_url, database_url)
    kill = await kill_a_busy_worker(workers)
    victim, calling, killed = kill.victim, kill.calling, kill.at
    [survivor] = [w for w in workers if w is not victim]
    assert await victim.gateway.wait_exit(10) == -signal.SIGKILL
    await victim.idle()

    # What the dead process held: the events leased to it (its owner is the lessee of a message it was calling the
    # model for), and the reservations of their model calls (a reservation's request id is the inbox event's id).
    snapshot = inbox(database_url)
    [owner] = {snapshot[m]["lease_owner"] for m in calling}
    assert owner is not None
    held = leases({m: r for m, r in snapshot.items() if r["lease_owner"] == owner})
    held_ids = {snapshot[m]["id"] for m in held}
    reservations = [
        r for r in database.rows(database_url, "SELECT * FROM quota_reservations") if r["request_id"] in held_ids
    ]
    left = Left(
        list(victim.graph.requests),
        list(victim.openai.calls),
        snapshot,
        reservations,
        sum(int(r["tokens"]) for r in reservations),
    )
    assert set(calling) <= set(held) and left.reservations

    rows = await all_answered(database_url, within=LEASE_SECONDS + 30, logs=survivor.gateway.log)
    answered = max(int(r["updated_at"]) for r in rows.values()) / 1000
    wall = wall_offset()
    after_kill = [c for c in survivor.graph.requests if c.started_at + wall > killed]
    taken = takeovers(held, after_kill, rows)
    check_takeovers(taken, ready=killed, lease_seconds=LEASE_SECONDS)
    # Meanwhile the survivor kept answering the conversations the dead process held nothing of.
    held_conversations = {MESSAGES[m][0] for m in held}
    meanwhile = [
        m
        for m, row in rows.items()
        if MESSAGES[m][0] not in held_conversations and killed < int(row["updated_at"]) / 1000 < min(held.values())
    ]
    assert meanwhile, "the other conversations waited for the dead process's leases"

    graph = [c for w in workers for c in w.graph.requests]
    calls = [c for w in workers for c in w.openai.calls]
    outcome = check_recovered(graph, calls, left, database_url, tenant.account_id)
    _, reserved, _ = quota(database_url, tenant.account_id)
    # The survivor gave back what the dead process held under the events it took over, not at their expiry.
    assert reserved == 0 and database.rows(database_url, "SELECT COUNT(*) FROM quota_reservations")[0][0] == 0
    assert web.graph.requests == [] and web.openai.calls == []
    for process in (web, survivor):
        process.gateway.send_signal(signal.SIGTERM)
        assert await process.gateway.wait_exit(30) == 0, process.gateway.log()
    assert database.integrity_check(database_url) == "ok"
    report(
        "worker SIGKILL, takeover by the other worker",
        lease_seconds=LEASE_SECONDS,
        replies_before=kill.replies,
        leased_by_dead=len(held),
        lease_left_at_kill=sorted(round(expires - killed, 2) for expires in held.values()),
        taken_after_expiry=sorted(t.after_expiry() for t in taken.values() if t.taken is not None),
        held_answered_after_kill=sorted(round(t.finished - killed, 2) for t in taken.values()),
        answered_meanwhile=len(meanwhile),
        all_answered_after_kill=round(answered - killed, 2),
        reservations_left=len(left.reservations),
        cut_sends=outcome.cut_sends,
        duplicates=outcome.duplicates,
        model_calls=outcome.model_calls,
        seconds=round(time.monotonic() - started, 1),
    )
