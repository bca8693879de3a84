"""Work in flight survives the process dying (the reliability test plan, W7): SIGKILL and SIGTERM, for real.

The gateway runs as a child process with the Procfile's command (`python -m gateway`, configured only through its
environment); the fake OpenAI (0.15 to 0.25 s per call) and the fake Graph (0.05 s per request) run in this test's
event loop, so the test sees every request they get and whether it was still open when the process went away. 40 signed
WhatsApp texts from 10 customers are delivered (each 200 means committed); once some replies have gone out, a reply
is on its way to Graph and a model call is running (other messages are still queued), the process is killed, and the
same command is started again on the same database (SQLite file or PostgreSQL schema: `database.migrated_url`).

Measured against the plan's W7 bounds (tests/support/crash_load.py `check_recovered`): 0 lost, duplicates only for
sends the kill cut, each conversation in order, no second model call for a stored reply, quota exact, and the
backend's integrity check; SIGTERM: the process drains its work and exits 0 within 30 s, then 0 lost and 0
duplicates after a restart. k, the sends in flight, is counted once the process is gone and the fakes are idle,
not at the instant of the signal: a request the process wrote just before it died can still be in the socket
buffer then, and reaches the fake's handler (which records it) a moment later.

Leases are real, and nothing in the database is made to look expired: INBOX_LEASE_SECONDS=3 (the least the gateway
accepts; the holder renews its lease every second while a turn runs). The recovery bound: an event the dead
process held is not touched while its lease is live, and is answered within RECOVERY_MARGIN_SECONDS of the moment
it can be (its lease ran out and the restarted process is ready), so within the lease plus that margin after the
restart. Reservations last longer: RESERVATION_TTL_SECONDS is at least 2 x LLM_TOTAL_BUDGET + 30 = 40 s here. The
fast SIGKILL test makes the dead process's reservations expired in the database before the restart (`expires_at =
0`, the state waiting would reach), which the restarted process's sweeper releases on its first run, at start. One
test waits out live leases instead: it restarts at once, with 25 s leases, so the restarted process meets them live
and must leave them alone; each event it then takes over gives back the reservation the dead attempt left under the
event's id, long before the reservation would expire. The file runs in about a minute.
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

from gateway.settings import Settings, SettingsError
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.channel_traffic import PHONE_ID
from tests.support.crash_load import (
    START_TIMEOUT_SECONDS,
    TOTAL,
    Left,
    Outcome,
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
    text_sends,
    until,
)
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.harness import Tenant, connect_channel, provision

KILL_AFTER_REPLIES = 10
LEASE_SECONDS = 3  # the least INBOX_LEASE_SECONDS the gateway accepts
# The live-lease test restarts at once (see there): leases of 25 s, renewed every 8 s, still have 16 s or more to run
# at the kill, so the restarted process meets them live; they run out well before the reservations would expire
# (about 40 s after the kill), so the takeover, not the sweeper, must be what frees them.
SLOW_RESTART_LEASE_SECONDS = 25
RESERVATION_TTL_SECONDS = 40  # the least the gateway accepts with LLM_TOTAL_BUDGET=5: 2 x 5 + 30
DRAIN_LIMIT_SECONDS = 30.0


def crash_env(database_url: str, openai_url: str, graph_url: str, lease_seconds: int = LEASE_SECONDS) -> dict[str, str]:
    return gateway_env(
        database_url,
        openai_url,
        graph_url,
        free_port(),
        WORKERS="4",
        # All four run whatever the acknowledgements' timing on a loaded test machine: the kill needs a model call
        # and a Graph send in flight at once, which one worker given way to deliveries never has.
        WORKER_ACK_TARGET_MS="0",
        LLM_TOTAL_BUDGET="5",
        LLM_ATTEMPT_TIMEOUT="5",
        INBOX_LEASE_SECONDS=str(lease_seconds),
        RESERVATION_TTL_SECONDS=str(RESERVATION_TTL_SECONDS),
    )


# ---- the scenario ----------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    gateway: GatewayProcess
    openai: FakeOpenAI
    graph: FakeGraph
    database_url: str
    tenant: Tenant


@dataclass(frozen=True)
class AtKill:
    """The fakes' view at the instant the signal was sent (nothing can run between the check and the signal)."""

    replies: int  # replies Graph had answered
    graph_in_flight: int  # reply sends Graph had started and not answered
    model_in_flight: int  # chat completions started and not answered
    at: float  # time.monotonic()


@pytest.fixture
def lease_seconds() -> int:
    """INBOX_LEASE_SECONDS of the gateway processes: a test may parametrize it."""
    return LEASE_SECONDS


@pytest.fixture
async def scenario(tmp_path: Path, aiohttp_server: Any, lease_seconds: int) -> AsyncIterator[Scenario]:
    # Jitter: with equal call times the workers run in step (all calling the model, then all sending), and the
    # kill below would never find a model call and a send in flight at the same moment.
    openai, graph = FakeOpenAI(latency=0.15, jitter=0.1), FakeGraph(latency=0.05, implicit_grants=True)
    openai_url = str((await aiohttp_server(openai.app)).make_url("/v1"))
    graph_url = str((await aiohttp_server(graph.app)).make_url("")).rstrip("/")
    database_url = database.migrated_url(tmp_path)
    env = crash_env(database_url, openai_url, graph_url, lease_seconds)
    gateway = GatewayProcess(env, tmp_path / "gateway.log", tmp_path)
    try:
        gateway.start()
        await gateway.wait_ready(START_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(base_url=gateway.base_url) as admin:
            tenant = await provision(admin, name="Crashy", plan={"monthly_token_limit": 1_000_000})  # type: ignore[arg-type]
            await connect_channel(admin, tenant, "whatsapp", PHONE_ID)  # type: ignore[arg-type]
        yield Scenario(gateway, openai, graph, database_url, tenant)
    finally:
        gateway.close()


async def signal_with_work_in_flight(s: Scenario, sig: signal.Signals, within: float = 20.0) -> AtKill:
    """Wait until some replies went out, a reply is on its way to Graph and a model call is running; signal."""
    deadline = time.monotonic() + within
    while True:
        replies = replies_sent(s.graph.requests)
        graph_busy = sum(1 for c in s.graph.requests if c.kind == "text" and c.ended_at is None)
        model_busy = sum(1 for c in s.openai.calls if c.ended_at is None)
        if replies >= KILL_AFTER_REPLIES and graph_busy and model_busy:
            s.gateway.send_signal(sig)  # no await since the check: the fakes' view is the one at the signal
            return AtKill(replies, graph_busy, model_busy, time.monotonic())
        assert replies < TOTAL, "everything was answered before work was in flight in every stage"
        assert time.monotonic() < deadline, f"no moment with work in flight in {within} s:\n{s.gateway.log()}"
        await asyncio.sleep(0.002)


async def fakes_idle(s: Scenario, within: float = 5.0) -> None:
    """Until the fakes have finished every request of the process that went away (cut ones included)."""
    deadline = time.monotonic() + within
    while s.graph.in_flight or s.openai.in_flight:
        assert time.monotonic() < deadline, "the fakes still have requests open"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # requests already in the sockets' buffers reach the handlers, and end


async def left_behind(s: Scenario) -> Left:
    await fakes_idle(s)
    _, reserved, held = quota(s.database_url, s.tenant.account_id)
    assert reserved == held  # the ledger is consistent even at a crash: both change in one transaction
    reservations = database.rows(s.database_url, "SELECT * FROM quota_reservations")
    return Left(list(s.graph.requests), list(s.openai.calls), inbox(s.database_url), reservations, reserved)


async def restart(s: Scenario) -> float:
    """Start the same command again; the wall-clock time it was ready (its workers run from before that)."""
    s.gateway.start()
    await s.gateway.wait_ready(START_TIMEOUT_SECONDS)
    return time.time()


async def stop_gracefully(s: Scenario) -> float:
    started = time.monotonic()
    s.gateway.send_signal(signal.SIGTERM)
    assert await s.gateway.wait_exit(DRAIN_LIMIT_SECONDS) == 0, s.gateway.log()
    return time.monotonic() - started


def recovered(s: Scenario, left: Left) -> Outcome:
    return check_recovered(s.graph.requests, s.openai.calls, left, s.database_url, s.tenant.account_id)


# ---- the tests -------------------------------------------------------------------------------------------------


def test_the_crash_settings_are_the_least_the_gateway_accepts(tmp_path: Path) -> None:
    env = crash_env(database.scratch_url(tmp_path, "g.db"), "http://127.0.0.1:9/v1", "http://127.0.0.1:9")
    settings = Settings.from_env(env)
    assert (settings.workers, settings.inbox_lease_seconds, settings.reservation_ttl_seconds) == (4, 3, 40)
    assert (settings.llm_total_budget, settings.llm_attempt_timeout) == (5.0, 5.0)
    with pytest.raises(SettingsError, match="RESERVATION_TTL_SECONDS"):
        Settings.from_env({**env, "RESERVATION_TTL_SECONDS": str(RESERVATION_TTL_SECONDS - 1)})
    with pytest.raises(SettingsError, match="INBOX_LEASE_SECONDS"):
        Settings.from_env({**env, "INBOX_LEASE_SECONDS": str(LEASE_SECONDS - 1)})


async def test_sigkill_with_work_in_flight_loses_nothing_and_recovers_within_the_lease(scenario: Scenario) -> None:
    s = scenario
    started = time.monotonic()
    await deliver_all(s.gateway.base_url, s.database_url)
    at_kill = await signal_with_work_in_flight(s, signal.SIGKILL)
    assert await s.gateway.wait_exit(10) == -signal.SIGKILL
    killed = time.time()
    left = await left_behind(s)
    held = leases(left.inbox)
    queued = sum(1 for r in left.inbox.values() if r["state"] == "pending" and r["lease_owner"] is None)
    assert any(r["state"] == "done" for r in left.inbox.values()) and held and queued
    assert database.integrity_check(s.database_url) == "ok"

    # Stands in for waiting out RESERVATION_TTL_SECONDS (see the module docstring): the dead process's
    # reservations are made expired, as they would be by then. Its leases are left as they are. The events it held
    # give their reservations back when they are taken over; one more, of a relay request the kill cut (no inbox
    # event will ever come back for it), only the restarted process's sweeper can release.
    expired = database.execute(s.database_url, "UPDATE quota_reservations SET expires_at = 0")
    assert expired == len(left.reservations) >= 1
    database.insert(
        s.database_url,
        "quota_reservations",
        [
            {
                "id": "rsv_relay_cut",
                "account_id": s.tenant.account_id,
                "tokens": 321,
                "request_id": "relay-cut",
                "created_at": 0,
                "expires_at": 0,
            }
        ],
    )
    database.execute(
        s.database_url,
        "UPDATE quota_state SET reserved_tokens = reserved_tokens + 321 WHERE account_id = ?",
        (s.tenant.account_id,),
    )

    ready = await restart(s)
    live_at_ready = sum(1 for expires in held.values() if expires > ready)  # leases the new process had to wait out
    rows = await all_answered(s.database_url, within=30, logs=s.gateway.log)
    taken = takeovers(held, s.graph.requests[len(left.graph) :], rows)
    check_takeovers(taken, ready=ready, lease_seconds=LEASE_SECONDS)
    await until(
        lambda: quota(s.database_url, s.tenant.account_id)[1:] == (0, 0), 5, lambda: "reservations were not released"
    )
    outcome = recovered(s, left)
    assert database.rows(s.database_url, "SELECT COUNT(*) FROM quota_reservations")[0][0] == 0
    assert "stale_reservations_released" in s.gateway.log(tail=10**7)  # the sweeper ran, and took the relay's
    await stop_gracefully(s)
    assert database.integrity_check(s.database_url) == "ok"
    report(
        "SIGKILL, real leases, reservations expired in the database",
        replies_before=at_kill.replies,
        graph_in_flight_at_kill=at_kill.graph_in_flight,
        model_in_flight_at_kill=at_kill.model_in_flight,
        leased=len(held),
        live_at_ready=live_at_ready,
        queued=queued,
        ready_after_kill=round(ready - killed, 2),
        taken_after_expiry=sorted(t.after_expiry() for t in taken.values() if t.taken is not None),
        held_answered_after_kill=round(max(t.finished for t in taken.values()) - killed, 2),
        reservations_left=len(left.reservations),
        reserved_tokens_left=left.reserved_tokens,
        cut_sends=outcome.cut_sends,
        unrecorded_sends=outcome.unrecorded_sends,
        duplicates=outcome.duplicates,
        model_calls=outcome.model_calls,
        model_calls_unstored=outcome.model_calls_unstored,
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.mark.parametrize("lease_seconds", [SLOW_RESTART_LEASE_SECONDS])
async def test_sigkill_then_live_leases_are_waited_out_and_the_takeover_frees_the_dead_reservations(
    scenario: Scenario,
) -> None:
    """No help from the test: the restarted process leaves the dead one's live leases alone and takes their events
    up once the leases run out; each takeover gives back the reservation the dead attempt left under that event,
    at once, not when it expires (the account's reserved tokens would otherwise count those turns twice)."""
    s = scenario
    started = time.monotonic()
    await deliver_all(s.gateway.base_url, s.database_url)
    at_kill = await signal_with_work_in_flight(s, signal.SIGKILL)
    assert await s.gateway.wait_exit(10) == -signal.SIGKILL
    killed = time.time()
    left = await left_behind(s)
    held = leases(left.inbox)
    assert held and left.reservations
    expiries = [int(r["expires_at"]) / 1000 for r in left.reservations]
    # Every reservation left is a model call the kill cut, under the id of an event the dead process held.
    assert {r["request_id"] for r in left.reservations} <= {left.inbox[m]["id"] for m in held}

    ready = await restart(s)
    live_at_ready = sum(1 for expires in held.values() if expires > ready)
    assert live_at_ready, "the restarted process met no live lease: nothing shows it waits them out"
    rows = await all_answered(s.database_url, within=max(held.values()) - time.time() + 15, logs=s.gateway.log)
    taken = takeovers(held, s.graph.requests[len(left.graph) :], rows)
    check_takeovers(taken, ready=ready, lease_seconds=SLOW_RESTART_LEASE_SECONDS)

    # Everything was answered before the dead reservations would have expired, and none is held any more.
    assert time.time() < min(expiries)
    assert quota(s.database_url, s.tenant.account_id)[1:] == (0, 0)
    assert database.rows(s.database_url, "SELECT COUNT(*) FROM quota_reservations")[0][0] == 0
    assert "abandoned_reservation_released" in s.gateway.log(tail=10**7)
    outcome = recovered(s, left)
    await stop_gracefully(s)
    assert database.integrity_check(s.database_url) == "ok"
    report(
        "SIGKILL, real lease, reservations freed by the takeover",
        replies_before=at_kill.replies,
        graph_in_flight_at_kill=at_kill.graph_in_flight,
        model_in_flight_at_kill=at_kill.model_in_flight,
        leased=len(held),
        live_at_ready=live_at_ready,
        taken_after_expiry=sorted(t.after_expiry() for t in taken.values() if t.taken is not None),
        held_answered_after_kill=round(max(t.finished for t in taken.values()) - killed, 2),
        reservations_left=len(left.reservations),
        freed_before_expiry=round(min(expiries) - time.time(), 1),
        cut_sends=outcome.cut_sends,
        unrecorded_sends=outcome.unrecorded_sends,
        duplicates=outcome.duplicates,
        model_calls=outcome.model_calls,
        seconds=round(time.monotonic() - started, 1),
    )


async def test_sigterm_drains_in_flight_work_and_a_restart_answers_the_rest_once(scenario: Scenario) -> None:
    s = scenario
    started = time.monotonic()
    await deliver_all(s.gateway.base_url, s.database_url)
    at_term = await signal_with_work_in_flight(s, signal.SIGTERM)
    assert await s.gateway.wait_exit(DRAIN_LIMIT_SECONDS) == 0, s.gateway.log()
    drain = time.monotonic() - at_term.at
    left = await left_behind(s)
    # Drained: whatever was started was finished; nothing cut, no lease or reservation left behind.
    assert all(c.status == 200 for c in left.graph), [c for c in left.graph if c.status != 200]
    assert all(c.status == 200 for c in left.calls)
    assert [m for m, r in left.inbox.items() if r["lease_owner"] is not None] == []
    assert (left.reserved_tokens, left.reservations) == (0, [])
    answered = {m for m, r in left.inbox.items() if r["state"] == "done"}
    assert answered == set(text_sends(left.graph)) and len(answered) < TOTAL

    await restart(s)
    await all_answered(s.database_url, within=30, logs=s.gateway.log)
    outcome = recovered(s, left)
    assert outcome.duplicates == 0 and outcome.model_calls == TOTAL
    assert all(len(calls) == 1 for calls in text_sends(s.graph.requests).values())
    assert quota(s.database_url, s.tenant.account_id)[1:] == (0, 0)
    await stop_gracefully(s)
    assert database.integrity_check(s.database_url) == "ok"
    report(
        "SIGTERM",
        replies_before=at_term.replies,
        graph_in_flight_at_term=at_term.graph_in_flight,
        model_in_flight_at_term=at_term.model_in_flight,
        answered_by_the_drain=len(answered) - at_term.replies,
        drain_seconds=round(drain, 2),
        duplicates=outcome.duplicates,
        model_calls=outcome.model_calls,
        seconds=round(time.monotonic() - started, 1),
    )
