"""The crash tests' load and what they check after a crash (the reliability test plan, W7), shared by the tests that
kill a whole gateway (tests/gateway/test_crash_recovery.py) and one worker process of several
(tests/gateway/test_worker_takeover.py).

The load: 40 signed WhatsApp texts from 10 customers, 4 each, in platform order. The fake OpenAI answers each with
"You said: <question>", so every reply names the message it answers, and WhatsApp's reply context names it too.

After the crash and the recovery, `check_recovered` asserts:
  * 0 lost: every message gets a reply, the right one, to the right customer;
  * duplicates <= k: only a message whose reply had reached Graph without the send being recorded may be sent
    twice, where k counts those (the sends the fake Graph saw cut off by the kill, plus any it answered that the
    dying process could not record: both are "in flight" for the sender);
  * each conversation's replies in platform order;
  * no second model call for a reply stored before the kill; total calls <= 40 + calls in flight at the kill;
  * quota: `used_tokens` is the sum of the 'ok' usage rows, one per message, each the usage of the call whose reply
    was sent; `reserved_tokens` is the sum of the reservation rows, and only reservations the dead process left
    may still be held.
`takeovers` measures how soon the events the dead process held were answered once their leases ran out.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sandbox.fakes.graph_server import GraphCall
from sandbox.fakes.openai_server import RecordedCall
from tests.support import database
from tests.support.channel_traffic import wa_message
from tests.support.harness import APP_SECRET, JWT_SECRET, SECRETS_KEY, signed
from tests.support.paths import PROJECT_DATA

CUSTOMERS = 10
PER_CUSTOMER = 4
TOTAL = CUSTOMERS * PER_CUSTOMER
# Once an event can be taken up (its lease ran out and a worker is there), a worker finds it at its next poll
# (INBOX_POLL_SECONDS, 0.5 s) or sooner, and answers it in one turn: a typing indicator and the reply at the fake
# Graph (0.05 s each), a model call (0.15 to 0.25 s) unless the reply was stored, and a few commits; a worker
# busy with another event first finishes that turn. About 1.5 s at worst on an idle machine; the rest of the
# margin is for a loaded 2-core test machine (the whole suite on two backends beside other work).
RECOVERY_MARGIN_SECONDS = 4.0
# How long a gateway process may take to be ready: its imports (the openai SDK alone takes a second) and, on a
# PostgreSQL server other test runs share, its connections and migrations can take many seconds on a loaded machine.
START_TIMEOUT_SECONDS = 60.0
# Lease expiries are stored in whole milliseconds by the gateway's clock, and read against the test's.
CLOCK_TOLERANCE_SECONDS = 0.05


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
    content = {"type": "text", "text": {"body": question(customer, n)}}
    return wa_message(wamid(customer, n), content, wa_id=wa_id(customer), ts=int(time.time()) - 60 + n)


def gateway_env(database_url: str, openai_url: str, graph_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of a gateway process (`python -m gateway`), plus `settings` (INBOX_LEASE_SECONDS=...)."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT_DATA.parent),
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "DATA_DIR": str(PROJECT_DATA),
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": openai_url,
        "GRAPH_API_BASE_URL": graph_url,
        "GRAPH_API_VERSION": "v25.0",
        "ADMIN_JWT_SECRET": JWT_SECRET,
        "SECRETS_KEY": SECRETS_KEY,
        "META_APP_SECRET": APP_SECRET,
        **settings,
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


def leases(rows: dict[str, database.Row]) -> dict[str, float]:
    """The events a process holds, by message id: when each lease runs out (wall clock, seconds)."""
    return {
        m: int(r["lease_expires_at"]) / 1000
        for m, r in rows.items()
        if r["state"] == "pending" and r["lease_owner"] is not None
    }


# ---- what the fakes saw ----------------------------------------------------------------------------------------


def text_sends(requests: Iterable[GraphCall]) -> dict[str, list[GraphCall]]:
    """Reply sends by the customer message they answer (WhatsApp's reply context), in the order they started."""
    sends: dict[str, list[GraphCall]] = defaultdict(list)
    for call in sorted(requests, key=lambda c: c.started_at):
        if call.kind == "text":
            sends[call.body["context"]["message_id"]].append(call)
    return sends


def model_calls(calls: Iterable[RecordedCall]) -> dict[str, list[RecordedCall]]:
    """Chat completions by the customer message they answer (the last user message of the prompt), in order."""
    by_message: dict[str, list[RecordedCall]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.started_at):
        by_message[BY_QUESTION[call.messages[-1]["content"]]].append(call)
    return by_message


def about(call: GraphCall) -> str | None:
    """The customer message a Graph request is about: a reply's context, or a typing indicator's message id."""
    context = call.body.get("context")
    if isinstance(context, dict):
        return context.get("message_id")
    return call.body.get("message_id")


def replies_sent(requests: Iterable[GraphCall]) -> int:
    return sum(1 for c in requests if c.kind == "text" and c.ok)


def wall_offset() -> float:
    """Add to a time.monotonic() reading (what the fakes record) to get the wall clock (what the gateway stores)."""
    return time.time() - time.monotonic()


# ---- driving the load ------------------------------------------------------------------------------------------


async def deliver_all(base_url: str, database_url: str) -> None:
    """Every message, signed; each conversation's in platform order. A 200 means the event is committed."""
    async with aiohttp.ClientSession(base_url=base_url) as meta:

        async def one(customer: int, n: int) -> None:
            raw, headers = signed(wa_text(customer, n))
            async with meta.post("/webhooks/whatsapp", data=raw, headers=headers) as response:
                assert response.status == 200, await response.text()

        for n in range(PER_CUSTOMER):
            await asyncio.gather(*(one(c, n) for c in range(CUSTOMERS)))
    assert len(inbox(database_url)) == TOTAL


async def until(check: Callable[[], bool], within: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.05)


async def all_answered(database_url: str, within: float, logs: Callable[[], str]) -> dict[str, database.Row]:
    def settled() -> bool:
        return all(r["state"] != "pending" for r in inbox(database_url).values())

    def stuck() -> str:
        rows = inbox(database_url).values()
        states = [(r["event_key"], r["state"], r["lease_owner"], r["last_error"]) for r in rows if r["state"] != "done"]
        return f"not settled in {within} s: {states}\n{logs()}"

    await until(settled, within, stuck)
    rows = inbox(database_url)
    assert {r["state"] for r in rows.values()} == {"done"}, stuck()
    return rows


# ---- the checks after recovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Left:
    """What the dead process left behind once it was gone and the fakes had seen its connections close."""

    graph: list[GraphCall]
    calls: list[RecordedCall]
    inbox: dict[str, database.Row]
    reservations: list[database.Row]
    reserved_tokens: int


@dataclass(frozen=True)
class Outcome:
    cut_sends: int  # reply sends the kill cut off (the fake Graph's k)
    unrecorded_sends: int  # messages whose reply reached Graph unrecorded at the kill (cut or answered): the bound
    duplicates: int
    model_calls: int
    model_calls_unstored: int  # messages with a model call before the kill but no stored reply


def check_recovered(
    graph: list[GraphCall], calls: list[RecordedCall], left: Left, database_url: str, account_id: str
) -> Outcome:
    """0 lost, duplicates and model calls within their bounds, in order, quota exact: the W7 assertions.
    `graph` and `calls` are every request the fakes saw, before the kill and after it."""
    sends = text_sends(graph)
    assert set(sends) == set(MESSAGES), f"lost: {sorted(set(MESSAGES) - set(sends))}"
    for message_id, tries in sends.items():
        assert any(c.ok for c in tries), f"{message_id} never answered: {tries}"
        assert {c.text for c in tries} == {expected_reply(message_id)}
        assert {c.recipient for c in tries} == {"+" + wa_id(MESSAGES[message_id][0])}

    # Duplicates: only where a send reached Graph and its success was not recorded before the kill.
    before = text_sends(left.graph)
    cut = {m for m, tries in before.items() if any(c.status is None for c in tries)}
    unrecorded = {m for m in before if left.inbox[m]["reply_parts_sent"] == 0}
    assert cut <= unrecorded
    duplicated = {m for m, tries in sends.items() if len(tries) > 1}
    duplicates = sum(len(tries) - 1 for tries in sends.values())
    assert duplicated <= unrecorded, (duplicated, unrecorded)
    assert duplicates <= len(unrecorded)

    # Each conversation's replies in platform order (the first successful send of each message).
    for customer in range(CUSTOMERS):
        firsts = sorted((min(c.started_at for c in sends[wamid(customer, n)] if c.ok), n) for n in range(PER_CUSTOMER))
        assert [n for _, n in firsts] == list(range(PER_CUSTOMER)), f"customer {customer} out of order"

    # A reply stored before the kill is never generated again; the others at most once more.
    by_message = model_calls(calls)
    stored = {m for m, row in left.inbox.items() if row["reply_text"] is not None}
    assert set(by_message) == set(MESSAGES)
    for message_id in stored:
        assert len(by_message[message_id]) == 1, f"{message_id} had its reply stored, yet the model was called again"
    unstored = {m for m in model_calls(left.calls) if m not in stored}
    total_calls = sum(len(c) for c in by_message.values())
    assert total_calls <= TOTAL + len(unstored)
    assert all(len(c) <= 2 for c in by_message.values())

    # Quota: one charge per message, the usage of the call whose reply was sent; reserved = the reservation rows,
    # and only the dead process's may still be held (until RESERVATION_TTL_SECONDS; the caller waits or not).
    used, reserved, held = quota(database_url, account_id)
    ok_rows = database.rows(database_url, "SELECT total_tokens FROM usage_records WHERE outcome = 'ok'")
    assert len(ok_rows) == TOTAL
    assert used == sum(int(r["total_tokens"]) for r in ok_rows)
    last_ok = [[c for c in tries if c.status == 200][-1] for tries in by_message.values()]
    assert used == sum(c.usage["total_tokens"] for c in last_ok if c.usage is not None)
    assert reserved == held
    still = {r["id"] for r in database.rows(database_url, "SELECT id FROM quota_reservations")}
    assert still <= {r["id"] for r in left.reservations}, "a reservation made after the kill was never released"
    return Outcome(len(cut), len(unrecorded), duplicates, total_calls, len(unstored))


@dataclass(frozen=True)
class Takeover:
    """One event the dead process held, and how it was taken up (seconds, wall clock)."""

    expires: float  # its lease ran out
    taken: float | None  # the new holder's first Graph request about it (None: only the finish was left to do)
    finished: float  # recorded as answered (the inbox row's last update)

    def after_expiry(self) -> float | None:
        return None if self.taken is None else round(self.taken - self.expires, 2)


def takeovers(
    held: dict[str, float], graph_after: Iterable[GraphCall], rows: dict[str, database.Row]
) -> dict[str, Takeover]:
    """How the events in `held` (message id -> lease expiry) were taken up: from the Graph requests made after the
    kill (by the new holder) and the final inbox rows."""
    wall = wall_offset()
    first: dict[str, float] = {}
    for call in graph_after:
        message_id = about(call)
        if message_id in held:
            first[message_id] = min(first.get(message_id, float("inf")), call.started_at + wall)
    return {m: Takeover(expires, first.get(m), int(rows[m]["updated_at"]) / 1000) for m, expires in held.items()}


def check_takeovers(taken: dict[str, Takeover], *, ready: float, lease_seconds: float) -> None:
    """The recovery bound. An event the dead process held is not touched while its lease is live (the fence and
    the claim's lease test), and is answered within RECOVERY_MARGIN_SECONDS of the moment it can be: its lease ran
    out and a worker was `ready` (wall clock) to take it. Since every lease runs out at most `lease_seconds` after
    the kill, everything the dead process held is answered within the lease plus the margin after `ready`."""
    assert taken
    for message_id, t in taken.items():
        if t.taken is not None:
            assert t.taken >= t.expires - CLOCK_TOLERANCE_SECONDS, f"{message_id} taken under a live lease: {t}"
        bound = max(t.expires, ready) + RECOVERY_MARGIN_SECONDS
        assert t.finished <= bound, f"{message_id} answered {t.finished - bound:.2f} s late: {t}"
        assert t.finished <= ready + lease_seconds + RECOVERY_MARGIN_SECONDS


def report(name: str, **values: Any) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in values.items()))  # shown with pytest -s
