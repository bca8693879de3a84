"""Hourly rollups of usage and messages, so that a report over a month or a year sums a few hundred rows per
account instead of every call and message.

- `usage_hourly` holds, per account and hour, the figures the usage reports sum (core/storage/reads/totals.py and
  usage_series.py), split by bot, platform, model and outcome; `message_hourly` the customer's and the bot's
  messages per account and hour.
- The housekeeping leader rolls up hours once they have ended GRACE_MS ago (a row is stamped when it is written and
  committed at once, so none arrives later in an hour already rolled up), one hour with rows per transaction (hours
  with none are passed over), and records in `rollups` the end of the last hour rolled up ("through").
- Readers take rollup rows for the whole hours of their range before "through" and the raw rows for the rest (the
  range's partial first and last hours, and the hours not rolled up yet): `split`. Raw rows are never deleted but
  by an erasure, which takes its messages out of `message_hourly` in the same commit (`forget_messages`); an
  erasure keeps usage rows (it only unlinks them from the customer), so `usage_hourly` stays right.
- On PostgreSQL the rollup and an erasure lock the `rollups` row, so neither reads the other's half-done work.
"""

from __future__ import annotations

from core.storage.db import Database, Params, Transaction

HOUR_MS = 3_600_000
GRACE_MS = 15 * 60_000
_NAME = "hourly"

_USAGE = """INSERT INTO usage_hourly (account_id, hour, bot_key, channel, model, outcome, turns, requests, refusals,
    prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost_nanousd, uncosted, unpriced, samples,
    latency_sum)
    SELECT account_id, ?, COALESCE(bot_id, ''), channel, model, outcome, COUNT(*),
        SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END),
        SUM(CASE WHEN attempts = 0 AND outcome = 'quota_exceeded' THEN 1 ELSE 0 END),
        SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens), SUM(reasoning_tokens),
        COALESCE(SUM(cost_nanousd), 0), COUNT(*) - COUNT(cost_nanousd),
        SUM(CASE WHEN attempts > 0 AND cost_nanousd IS NULL THEN 1 ELSE 0 END),
        SUM(CASE WHEN outcome = 'ok' AND attempts > 0 AND latency_ms IS NOT NULL THEN 1 ELSE 0 END),
        COALESCE(SUM(CASE WHEN outcome = 'ok' AND attempts > 0 THEN latency_ms ELSE 0 END), 0)
    FROM usage_records WHERE created_at >= ? AND created_at < ?
    GROUP BY account_id, COALESCE(bot_id, ''), channel, model, outcome"""
_MESSAGES = """INSERT INTO message_hourly (account_id, hour, inbound, outbound)
    SELECT account_id, ?, SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END),
        SUM(CASE WHEN role = 'assistant' THEN 1 ELSE 0 END)
    FROM messages WHERE created_at >= ? AND created_at < ? GROUP BY account_id"""

# The usage of a range as rows with the figures to sum: rollup rows (their hour as created_at), then raw rows.
_USAGE_ROLLED = """SELECT hour AS created_at, CASE WHEN bot_key = '' THEN NULL ELSE bot_key END AS bot_id, channel,
    model, outcome, turns, requests, refusals, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens,
    cost_nanousd AS cost, uncosted, unpriced, samples, latency_sum FROM usage_hourly WHERE {where}"""
_USAGE_RAW = """SELECT created_at, bot_id, channel, model, outcome, 1 AS turns,
    CASE WHEN attempts > 0 THEN 1 ELSE 0 END AS requests,
    CASE WHEN attempts = 0 AND outcome = 'quota_exceeded' THEN 1 ELSE 0 END AS refusals,
    prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, COALESCE(cost_nanousd, 0) AS cost,
    CASE WHEN cost_nanousd IS NULL THEN 1 ELSE 0 END AS uncosted,
    CASE WHEN attempts > 0 AND cost_nanousd IS NULL THEN 1 ELSE 0 END AS unpriced,
    CASE WHEN outcome = 'ok' AND attempts > 0 AND latency_ms IS NOT NULL THEN 1 ELSE 0 END AS samples,
    CASE WHEN outcome = 'ok' AND attempts > 0 THEN COALESCE(latency_ms, 0) ELSE 0 END AS latency_sum
    FROM usage_records WHERE {where}"""
_MESSAGES_ROLLED = "SELECT inbound, outbound FROM message_hourly WHERE {where}"
_MESSAGES_RAW = """SELECT CASE WHEN role = 'user' THEN 1 ELSE 0 END AS inbound,
    CASE WHEN role = 'assistant' THEN 1 ELSE 0 END AS outbound FROM messages WHERE {where}"""


def split(start: int, end: int, through: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """[start, end) as the whole hours read from the rollups (before `through`), and the ranges read raw."""
    first = -(-start // HOUR_MS) * HOUR_MS
    last = min(end - end % HOUR_MS, through)
    if last <= first:
        return None, [(start, end)] if start < end else []
    return (first, last), [(lo, hi) for lo, hi in ((start, first), (last, end)) if lo < hi]


def usage_source(account_id: str | None, start: int, end: int, through: int) -> tuple[str, Params]:
    """A derived table (`... AS u`) of the range's usage, one row per call or per rolled-up group, each with the
    figures to sum: turns, requests, refusals, the token counts, cost, uncosted, unpriced, samples, latency_sum."""
    return _source(_USAGE_ROLLED, _USAGE_RAW, "u", account_id, start, end, through)


def message_source(account_id: str | None, start: int, end: int, through: int) -> tuple[str, Params]:
    """A derived table (`... AS m`) of the range's messages as inbound and outbound counts to sum."""
    return _source(_MESSAGES_ROLLED, _MESSAGES_RAW, "m", account_id, start, end, through)


def _source(
    rolled: str, raw: str, alias: str, account_id: str | None, start: int, end: int, through: int
) -> tuple[str, Params]:
    whole, partial = split(start, end, through)
    parts: list[str] = []
    params: list[object] = []
    account = [] if account_id is None else [account_id]
    scoped = "" if account_id is None else "account_id = ? AND "
    if whole is not None:
        parts.append(rolled.format(where=f"{scoped}hour >= ? AND hour < ?"))
        params += [*account, *whole]
    for lo, hi in partial or [(0, 0)]:  # an empty range still gives the derived table its columns
        parts.append(raw.format(where=f"{scoped}created_at >= ? AND created_at < ?"))
        params += [*account, lo, hi]
    return f"({' UNION ALL '.join(parts)}) {alias}", tuple(params)


async def through(db: Database | Transaction) -> int:
    row = await db.fetch_one("SELECT through FROM rollups WHERE name = ?", (_NAME,))
    return 0 if row is None else int(row["through"])


async def _locked_through(tx: Transaction) -> int:
    await tx.execute("INSERT INTO rollups (name, through) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (_NAME,))
    row = await tx.fetch_one(f"SELECT through FROM rollups WHERE name = ?{tx.dialect.locked()}", (_NAME,))
    assert row is not None
    return int(row["through"])


async def forget_messages(tx: Transaction, contact_id: str) -> None:
    """Before an erasure deletes a contact's messages: take the rolled-up ones out of `message_hourly`."""
    upto = await _locked_through(tx)
    rows = await tx.fetch_all(
        "SELECT account_id, created_at - created_at % 3600000 AS hour,"
        " SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END) AS inbound,"
        " SUM(CASE WHEN role = 'assistant' THEN 1 ELSE 0 END) AS outbound"
        " FROM messages WHERE contact_id = ? AND created_at < ?"
        " GROUP BY account_id, created_at - created_at % 3600000",
        (contact_id, upto),
    )
    for row in rows:
        await tx.execute(
            "UPDATE message_hourly SET inbound = inbound - ?, outbound = outbound - ?"
            " WHERE account_id = ? AND hour = ?",
            (int(row["inbound"]), int(row["outbound"]), row["account_id"], int(row["hour"])),
        )


class Rollups:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def advance(self, now_ms: int, *, max_hours: int = 24 * 31) -> int:
        """Roll up the hours that ended GRACE_MS before `now_ms`, at most `max_hours` with rows, one per
        transaction; how many were rolled up. "through" moves only past hours that had rows: a row stamped earlier
        than the newest rolled-up hour is never written (rows are stamped when written), and one stamped after it
        is read raw until its hour is rolled up."""
        limit = (now_ms - GRACE_MS) - (now_ms - GRACE_MS) % HOUR_MS
        done = 0
        while done < max_hours:
            async with self._db.transaction() as tx:
                upto = await _locked_through(tx)
                if upto >= limit:
                    return done
                nxt = await _next_row(tx, upto)
                if nxt is None or nxt >= limit:  # nothing more to roll up yet ("through" stays after the last row)
                    return done
                hour = nxt - nxt % HOUR_MS
                await tx.execute(_USAGE, (hour, hour, hour + HOUR_MS))
                await tx.execute(_MESSAGES, (hour, hour, hour + HOUR_MS))
                await _set(tx, hour + HOUR_MS)
            done += 1
        return done


async def _next_row(tx: Transaction, after: int) -> int | None:
    """The time of the first usage row or message at or after `after`."""
    row = await tx.fetch_one(
        "SELECT (SELECT MIN(created_at) FROM usage_records WHERE created_at >= ?) AS usage,"
        " (SELECT MIN(created_at) FROM messages WHERE created_at >= ?) AS message",
        (after, after),
    )
    found = [int(v) for v in (row["usage"], row["message"]) if v is not None] if row else []
    return min(found) if found else None


async def _set(tx: Transaction, value: int) -> None:
    await tx.execute("UPDATE rollups SET through = ? WHERE name = ?", (value, _NAME))
