"""Work in flight survives the process dying (the reliability test plan, W7): SIGKILL and SIGTERM, for real.

The gateway runs as a child process with the Procfile's command (`python -m gateway`, configured only through its
environment); the fake OpenAI (0.15 to 0.25 s per call) and the fake Graph (0.05 s per request) run in this test's
event loop, so the test sees every request they get and whether it was still open when the process went away. 40 signed
WhatsApp texts from 10 customers are delivered (each 200 means committed); once some replies have gone out, a reply
is on its way to Graph and a model call is running (other messages are still queued), the process is killed, and the
same command is started again on the same SQLite file.

Measured against the plan's W7 bounds:
  * 0 lost: every message gets a reply, the right one, and each conversation's replies stay in order;
  * duplicates <= k: only a message whose reply had reached Graph without the send being recorded may be sent
    twice, where k counts those (the sends the fake Graph saw cut off by the kill, plus any it answered that the
    dying process could not record: both are "in flight" for the sender). k is counted once the process is gone
    and the fakes are idle, not at the instant of the signal: a request the process wrote just before it died can
    still be in the socket buffer then, and reaches the fake's handler (which records it) a moment later;
  * no second model call for a reply stored before the kill; total calls <= 40 + calls in flight at the kill;
  * quota: `used_tokens` is the sum of the 'ok' usage rows, one per message, each the usage of the call whose reply
    was sent; `reserved_tokens` back to 0 (the sweeper releases the dead process's reservations);
  * SQLite `PRAGMA integrity_check` is ok;
  * SIGTERM: the process drains its work and exits 0 within 30 s; after a restart 0 lost and 0 duplicates.

The dead process's leases expire only INBOX_LEASE_SECONDS (40 s at least, with LLM_TOTAL_BUDGET=5) after they were
taken, and its reservations RESERVATION_TTL_SECONDS after they were made. The fast SIGKILL test stands in for that
wait by expiring both in the database before the restart, the state waiting would reach: leases with
`lease_expires_at = 0`, reservations with `expires_at = 0`, which the restarted process's sweeper releases on its
first run, at start. One test, and only that one, waits the real lease and the real sweep instead (about 45 s):
without it nothing would show that the restarted process leaves a live lease alone, takes it over once it expires,
and that the sweeper really gives the reservations back. The file runs in about a minute.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import SWEEP_INTERVAL_SECONDS
from gateway.settings import Settings, SettingsError
from tests.fakes.graph_server import FakeGraph, GraphCall
from tests.fakes.openai_server import FakeOpenAI, RecordedCall
from tests.support import database
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.harness import APP_SECRET, JWT_SECRET, SECRETS_KEY, Tenant, connect_channel, provision, signed
from tests.support.paths import PROJECT_DATA

PHONE_ID = "106540352242922"
CUSTOMERS = 10
PER_CUSTOMER = 4
TOTAL = CUSTOMERS * PER_CUSTOMER
KILL_AFTER_REPLIES = 10
LEASE_SECONDS = 40  # the least RESERVATION_TTL_SECONDS the gateway accepts with LLM_TOTAL_BUDGET=5: 2 x 5 + 30
DRAIN_LIMIT_SECONDS = 30.0


def wamid(customer: int, n: int) -> str:
    return f"wamid.crash.{customer}.{n}"


def question(customer: int, n: int) -> str:
    return f"customer {customer} message {n}"


def wa_id(customer: int) -> str:
    return f"1555{customer:07d}"


MESSAGES = {wamid(c, n): (c, n) for n in range(PER_CUSTOMER) for c in range(CUSTOMERS)}
BY_QUESTION = {question(c, n): w for w, (c, n) in MESSAGES.items()}


def expected_reply(message_id: str) -> str:
    return f"You said: {question(*MESSAGES[message_id])}"  # the fake OpenAI's default answer


def wa_text(customer: int, n: int) -> dict[str, Any]:
    message = {
        "from": wa_id(customer),
        "id": wamid(customer, n),
        "timestamp": str(int(time.time()) - 60 + n),
        "type": "text",
        "text": {"body": question(customer, n)},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_ID},
        "contacts": [{"profile": {"name": f"Customer {customer}"}, "wa_id": wa_id(customer)}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


def gateway_env(database_url: str, openai_url: str, graph_url: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT_DATA.parent),
        "PORT": str(free_port()),
        "DATABASE_URL": database_url,
        "DATA_DIR": str(PROJECT_DATA),
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": openai_url,
        "GRAPH_API_BASE_URL": graph_url,
        "GRAPH_API_VERSION": "v25.0",
        "ADMIN_JWT_SECRET": JWT_SECRET,
        "SECRETS_KEY": SECRETS_KEY,
        "META_APP_SECRET": APP_SECRET,
        "WORKERS": "4",
        # All four run whatever the acknowledgements' timing on a loaded test machine: the kill needs a model call
        # and a Graph send in flight at once, which one worker given way to deliveries never has.
        "WORKER_ACK_TARGET_MS": "0",
        "LLM_TOTAL_BUDGET": "5",
        "LLM_ATTEMPT_TIMEOUT": "5",
        "INBOX_LEASE_SECONDS": str(LEASE_SECONDS),
        "RESERVATION_TTL_SECONDS": str(LEASE_SECONDS),
    }


# ---- reading the database, as an operator would --------------------------------------------------------------


def inbox(database_url: str) -> dict[str, database.Row]:
    return {r["event_key"]: r for r in database.rows(database_url, "SELECT * FROM inbox")}


def quota(database_url: str, account_id: str) -> tuple[int, int, int]:
    """(used_tokens, reserved_tokens, SUM of the reservation rows' tokens)."""
    [state] = database.rows(
        database_url, "SELECT used_tokens, reserved_tokens FROM quota_state WHERE account_id = ?", (account_id,)
    )
    [held] = database.rows(
        database_url, "SELECT COALESCE(SUM(tokens), 0) AS n FROM quota_reservations WHERE account_id = ?", (account_id,)
    )
    return int(state["used_tokens"]), int(state["reserved_tokens"]), int(held["n"])


# ---- what the fakes saw ----------------------------------------------------------------------------------------


def text_sends(requests: list[GraphCall]) -> dict[str, list[GraphCall]]:
    """Reply sends by the customer message they answer (WhatsApp's reply context)."""
    sends: dict[str, list[GraphCall]] = defaultdict(list)
    for call in requests:
        if call.kind == "text":
            sends[call.body["context"]["message_id"]].append(call)
    return sends


def model_calls(calls: list[RecordedCall]) -> dict[str, list[RecordedCall]]:
    """Chat completions by the customer message they answer (the last user message of the prompt)."""
    by_message: dict[str, list[RecordedCall]] = defaultdict(list)
    for call in calls:
        by_message[BY_QUESTION[call.messages[-1]["content"]]].append(call)
    return by_message


def replies_sent(graph: FakeGraph) -> int:
    return sum(1 for c in graph.requests if c.kind == "text" and c.ok)


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


@dataclass(frozen=True)
class Left:
    """What the first process left behind once it was gone and the fakes had seen its connections close."""

    graph: list[GraphCall]
    calls: list[RecordedCall]
    inbox: dict[str, database.Row]
    reservations: list[database.Row]
    reserved_tokens: int


@pytest.fixture
async def scenario(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[Scenario]:
    # Jitter: with equal call times the workers run in step (all calling the model, then all sending), and the
    # kill below would never find a model call and a send in flight at the same moment.
    openai, graph = FakeOpenAI(latency=0.15, jitter=0.1), FakeGraph(latency=0.05, implicit_grants=True)
    openai_url = str((await aiohttp_server(openai.app)).make_url("/v1"))
    graph_url = str((await aiohttp_server(graph.app)).make_url("")).rstrip("/")
    database_url = database.scratch_url(tmp_path)
    gateway = GatewayProcess(gateway_env(database_url, openai_url, graph_url), tmp_path / "gateway.log", tmp_path)
    try:
        gateway.start()
        await gateway.wait_ready()
        async with aiohttp.ClientSession(base_url=gateway.base_url) as admin:
            tenant = await provision(admin, name="Crashy", plan={"monthly_token_limit": 1_000_000})  # type: ignore[arg-type]
            await connect_channel(admin, tenant, "whatsapp", PHONE_ID)  # type: ignore[arg-type]
        yield Scenario(gateway, openai, graph, database_url, tenant)
    finally:
        gateway.close()


async def deliver_all(s: Scenario) -> None:
    """Every message, signed; each conversation's in platform order. A 200 means the event is committed."""
    async with aiohttp.ClientSession(base_url=s.gateway.base_url) as meta:

        async def one(customer: int, n: int) -> None:
            raw, headers = signed(wa_text(customer, n))
            async with meta.post("/webhooks/whatsapp", data=raw, headers=headers) as response:
                assert response.status == 200, await response.text()

        for n in range(PER_CUSTOMER):
            await asyncio.gather(*(one(c, n) for c in range(CUSTOMERS)))
    assert len(inbox(s.database_url)) == TOTAL


async def signal_with_work_in_flight(s: Scenario, sig: signal.Signals, within: float = 20.0) -> AtKill:
    """Wait until some replies went out, a reply is on its way to Graph and a model call is running; signal."""
    deadline = time.monotonic() + within
    while True:
        replies = replies_sent(s.graph)
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


async def until(check: Callable[[], bool], within: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.05)


async def all_answered(s: Scenario, within: float) -> dict[str, database.Row]:
    def settled() -> bool:
        return all(r["state"] != "pending" for r in inbox(s.database_url).values())

    def stuck() -> str:
        rows = inbox(s.database_url).values()
        states = [(r["event_key"], r["state"], r["lease_owner"], r["last_error"]) for r in rows if r["state"] != "done"]
        return f"not settled in {within} s: {states}\n{s.gateway.log()}"

    await until(settled, within, stuck)
    rows = inbox(s.database_url)
    assert {r["state"] for r in rows.values()} == {"done"}, stuck()
    return rows


async def stop_gracefully(s: Scenario) -> float:
    started = time.monotonic()
    s.gateway.send_signal(signal.SIGTERM)
    assert await s.gateway.wait_exit(DRAIN_LIMIT_SECONDS) == 0, s.gateway.log()
    return time.monotonic() - started


# ---- the checks after recovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    cut_sends: int  # reply sends the kill cut off (the fake Graph's k)
    unrecorded_sends: int  # messages whose reply reached Graph unrecorded at the kill (cut or answered): the bound
    duplicates: int
    model_calls: int
    model_calls_unstored: int  # messages with a model call before the kill but no stored reply


def check_recovered(s: Scenario, left: Left) -> Outcome:
    """0 lost, duplicates and model calls within their bounds, in order, quota exact: the W7 assertions."""
    sends = text_sends(s.graph.requests)
    assert set(sends) == set(MESSAGES), f"lost: {sorted(set(MESSAGES) - set(sends))}"
    for message_id, calls in sends.items():
        assert any(c.ok for c in calls), f"{message_id} never answered: {calls}"
        assert {c.text for c in calls} == {expected_reply(message_id)}
        assert {c.recipient for c in calls} == {"+" + wa_id(MESSAGES[message_id][0])}

    # Duplicates: only where a send reached Graph and its success was not recorded before the kill.
    before = text_sends(left.graph)
    cut = {m for m, calls in before.items() if any(c.status is None for c in calls)}
    unrecorded = {m for m in before if left.inbox[m]["reply_parts_sent"] == 0}
    assert cut <= unrecorded
    duplicated = {m for m, calls in sends.items() if len(calls) > 1}
    duplicates = sum(len(calls) - 1 for calls in sends.values())
    assert duplicated <= unrecorded, (duplicated, unrecorded)
    assert duplicates <= len(unrecorded)

    # Each conversation's replies in platform order (the first successful send of each message).
    for customer in range(CUSTOMERS):
        firsts = sorted((min(c.started_at for c in sends[wamid(customer, n)] if c.ok), n) for n in range(PER_CUSTOMER))
        assert [n for _, n in firsts] == list(range(PER_CUSTOMER)), f"customer {customer} out of order"

    # A reply stored before the kill is never generated again; the others at most once more.
    calls = model_calls(s.openai.calls)
    stored = {m for m, row in left.inbox.items() if row["reply_text"] is not None}
    assert set(calls) == set(MESSAGES)
    for message_id in stored:
        assert len(calls[message_id]) == 1, f"{message_id} had its reply stored, yet the model was called again"
    unstored = {m for m in model_calls(left.calls) if m not in stored}
    total_calls = sum(len(c) for c in calls.values())
    assert total_calls <= TOTAL + len(unstored)
    assert all(len(c) <= 2 for c in calls.values())

    # Quota: one charge per message, the usage of the call whose reply was sent; nothing left reserved.
    used, reserved, held = quota(s.database_url, s.tenant.account_id)
    ok_rows = database.rows(s.database_url, "SELECT total_tokens FROM usage_records WHERE outcome = 'ok'")
    assert len(ok_rows) == TOTAL
    assert used == sum(int(r["total_tokens"]) for r in ok_rows)
    last_ok = [[c for c in by if c.status == 200][-1] for by in calls.values()]
    assert used == sum(c.usage["total_tokens"] for c in last_ok if c.usage is not None)
    assert (reserved, held) == (0, 0)
    assert database.rows(s.database_url, "SELECT COUNT(*) FROM quota_reservations")[0][0] == 0
    return Outcome(len(cut), len(unrecorded), duplicates, total_calls, len(unstored))


def report(name: str, **values: Any) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in values.items()))  # shown with pytest -s


# ---- the tests -------------------------------------------------------------------------------------------------


def test_the_crash_settings_are_the_least_the_gateway_accepts(tmp_path: Path) -> None:
    env = gateway_env(database.scratch_url(tmp_path, "g.db"), "http://127.0.0.1:9/v1", "http://127.0.0.1:9")
    settings = Settings.from_env(env)
    assert (settings.workers, settings.inbox_lease_seconds, settings.reservation_ttl_seconds) == (4, 40, 40)
    assert (settings.llm_total_budget, settings.llm_attempt_timeout) == (5.0, 5.0)
    with pytest.raises(SettingsError, match="RESERVATION_TTL_SECONDS"):
        Settings.from_env({**env, "RESERVATION_TTL_SECONDS": str(LEASE_SECONDS - 1)})
    with pytest.raises(SettingsError, match="INBOX_LEASE_SECONDS"):
        Settings.from_env({**env, "INBOX_LEASE_SECONDS": "2"})


async def test_sigkill_with_work_in_flight_loses_nothing_after_restart(scenario: Scenario) -> None:
    s = scenario
    started = time.monotonic()
    await deliver_all(s)
    at_kill = await signal_with_work_in_flight(s, signal.SIGKILL)
    assert await s.gateway.wait_exit(10) == -signal.SIGKILL
    left = await left_behind(s)
    states = [r["state"] for r in left.inbox.values()]
    queued = sum(1 for r in left.inbox.values() if r["state"] == "pending" and r["lease_owner"] is None)
    leased_now = sum(1 for r in left.inbox.values() if r["state"] == "pending" and r["lease_owner"] is not None)
    assert "done" in states and leased_now and queued  # messages answered, in the dead process's hands, and queued
    assert database.integrity_check(s.database_url) == "ok"

    # Stands in for waiting out INBOX_LEASE_SECONDS and RESERVATION_TTL_SECONDS (see the module docstring and the
    # next test, which waits for real): the dead process's leases and reservations are made expired, as they
    # would be by then; the restarted process's sweeper releases the reservations on its first run, at start.
    leased = database.execute(
        s.database_url, "UPDATE inbox SET lease_expires_at = 0 WHERE lease_owner IS NOT NULL AND state = 'pending'"
    )
    expired = database.execute(s.database_url, "UPDATE quota_reservations SET expires_at = 0")
    assert leased == leased_now and expired == len(left.reservations) >= 1

    s.gateway.start()
    await s.gateway.wait_ready()
    await all_answered(s, within=30)
    await until(
        lambda: quota(s.database_url, s.tenant.account_id)[1:] == (0, 0), 5, lambda: "reservations were not released"
    )
    outcome = check_recovered(s, left)
    await stop_gracefully(s)
    assert database.integrity_check(s.database_url) == "ok"
    report(
        "SIGKILL, leases expired in the file",
        replies_before=at_kill.replies,
        graph_in_flight_at_kill=at_kill.graph_in_flight,
        model_in_flight_at_kill=at_kill.model_in_flight,
        leased=leased,
        queued=queued,
        reservations_left=len(left.reservations),
        reserved_tokens_left=left.reserved_tokens,
        cut_sends=outcome.cut_sends,
        unrecorded_sends=outcome.unrecorded_sends,
        duplicates=outcome.duplicates,
        model_calls=outcome.model_calls,
        model_calls_unstored=outcome.model_calls_unstored,
        seconds=round(time.monotonic() - started, 1),
    )


async def test_sigkill_then_the_real_lease_and_sweep_recover_everything(scenario: Scenario) -> None:
    """No help from the test: the restarted process waits out the lease, and its sweeper frees the reservations."""
    s = scenario
    started = time.monotonic()
    await deliver_all(s)
    at_kill = await signal_with_work_in_flight(s, signal.SIGKILL)
    assert await s.gateway.wait_exit(10) == -signal.SIGKILL
    left = await left_behind(s)
    leases = {m: int(r["lease_expires_at"]) / 1000 for m, r in left.inbox.items() if r["lease_owner"] is not None}
    held_by_dead = {MESSAGES[m][0] for m in leases}  # conversations whose next message the dead process holds
    assert leases and left.reservations

    # The sweeper runs at start, then every SWEEP_INTERVAL_SECONDS: restart late enough that its second run comes
    # after the dead process's reservations expire (that is still before its leases do: nothing waits longer).
    sweep_due = max(int(r["expires_at"]) for r in left.reservations) / 1000 + 1.0
    await asyncio.sleep(max(0.0, sweep_due - SWEEP_INTERVAL_SECONDS - time.time()))
    restarted_wall = time.time()
    assert restarted_wall < min(leases.values()) - 20  # the new process meets live leases for a good while
    s.gateway.start()
    await s.gateway.wait_ready()
    await all_answered(s, within=max(leases.values()) - time.time() + 10)

    wall = time.time() - time.monotonic()  # the fakes record monotonic times
    after = s.graph.requests[len(left.graph) :]
    takeover = {}  # seconds from a lease's expiry to the restarted process's first request for its message
    for message_id, expires in leases.items():
        mine = [c.started_at for c in after if message_id in (c.body.get("message_id"), _context(c))]
        if not mine:  # killed between recording its last part and finishing it: nothing left to send
            assert left.inbox[message_id]["reply_parts_sent"] >= 1, message_id
            continue
        takeover[message_id] = round(min(mine) + wall - expires, 2)
    # Not taken over while its lease was live, and taken over promptly once it ran out (the pool polls every 0.5 s).
    assert takeover and all(-0.05 <= delay <= 3.0 for delay in takeover.values()), takeover
    for message_id, (customer, _) in MESSAGES.items():
        if customer not in held_by_dead:  # conversations the dead process held nothing of are not delayed
            ended = max(c.ended_at or 0 for c in text_sends(s.graph.requests)[message_id])
            assert ended + wall < min(leases.values()), message_id

    await until(
        lambda: quota(s.database_url, s.tenant.account_id)[1:] == (0, 0),
        sweep_due + 10 - time.time(),
        lambda: f"reservations not released: {quota(s.database_url, s.tenant.account_id)}\n{s.gateway.log()}",
    )
    outcome = check_recovered(s, left)
    assert "stale_reservations_released" in s.gateway.log(tail=10**7)
    await stop_gracefully(s)
    assert database.integrity_check(s.database_url) == "ok"
    report(
        "SIGKILL, real lease and sweep",
        replies_before=at_kill.replies,
        graph_in_flight_at_kill=at_kill.graph_in_flight,
        model_in_flight_at_kill=at_kill.model_in_flight,
        leased=len(leases),
        takeover_after_expiry=sorted(takeover.values()),
        restart_after=round(restarted_wall - (time.time() - time.monotonic() + at_kill.at), 1),
        reservations_left=len(left.reservations),
        cut_sends=outcome.cut_sends,
        unrecorded_sends=outcome.unrecorded_sends,
        duplicates=outcome.duplicates,
        model_calls=outcome.model_calls,
        seconds=round(time.monotonic() - started, 1),
    )


async def test_sigterm_drains_in_flight_work_and_a_restart_answers_the_rest_once(scenario: Scenario) -> None:
    s = scenario
    started = time.monotonic()
    await deliver_all(s)
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

    s.gateway.start()
    await s.gateway.wait_ready()
    await all_answered(s, within=30)
    outcome = check_recovered(s, left)
    assert outcome.duplicates == 0 and outcome.model_calls == TOTAL
    assert all(len(calls) == 1 for calls in text_sends(s.graph.requests).values())
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


def _context(call: GraphCall) -> str | None:
    context = call.body.get("context")
    return context.get("message_id") if isinstance(context, dict) else None
