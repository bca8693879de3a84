"""A value the database cannot hold (an integer beyond 64 bits, bound or computed) is ValueOutOfRange on both
backends, a 400 at the API, and leaves nothing half-stored; never a 500 and never a 503 that invites a retry of the
same value. The API's fields are bounded well inside 64 bits, so this is the last line of defence."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.envelope import from_domain
from core.errors import ValueOutOfRange
from core.storage.db import POSTGRES, Transaction
from core.storage.migrations import apply_migrations
from tests.support.database import open_database, scratch_url

TOO_BIG = 2**63  # one past the largest signed 64-bit integer


async def test_a_number_beyond_64_bits_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with open_database(scratch_url(tmp_path, "v.db")) as db:
        await apply_migrations(db)
        with pytest.raises(ValueOutOfRange):
            await db.execute("INSERT INTO rate_limits (key, tat_us) VALUES (?, ?)", ("bound", TOO_BIG))

        async def two_writes(tx: Transaction) -> None:
            await tx.execute("INSERT INTO rate_limits (key, tat_us) VALUES (?, ?)", ("first", 1))
            await tx.execute("INSERT INTO rate_limits (key, tat_us) VALUES (?, ?)", ("second", TOO_BIG))

        with pytest.raises(ValueOutOfRange):
            await db.run(two_writes)
        # Computed in SQL, beyond 64 bits on the server: PostgreSQL refuses bigint arithmetic that overflows;
        # SQLite turns such arithmetic into a float, but its SUM() overflows as an error.
        await db.execute("INSERT INTO rate_limits (key, tat_us) VALUES (?, ?)", ("big", 2**62))
        await db.execute("INSERT INTO rate_limits (key, tat_us) VALUES (?, ?)", ("bigger", 2**62))
        with pytest.raises(ValueOutOfRange):
            if db.dialect is POSTGRES:
                await db.execute("UPDATE rate_limits SET tat_us = tat_us + ? WHERE key = ?", (2**62, "big"))
            else:
                await db.fetch_all("SELECT SUM(tat_us) AS n FROM rate_limits")
        rows = await db.fetch_all("SELECT key, tat_us FROM rate_limits ORDER BY key")
        # Nothing of the refused transaction stayed (its first write included), and nothing was changed.
        assert [(r["key"], int(r["tat_us"])) for r in rows] == [("big", 2**62), ("bigger", 2**62)]
        assert await db.ping()


def test_the_api_answers_it_as_a_bad_request() -> None:
    error = from_domain(ValueOutOfRange("postgresql: NumericValueOutOfRange"))
    assert (error.status, error.code) == (400, "bad_request")
    assert "NumericValueOutOfRange" not in error.message  # the driver's words stay in the log
