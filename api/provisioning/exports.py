"""`GET /api/admin/logs/export`: usage records streamed as CSV or NDJSON, a year of them without holding them.

The answer is written page by page from a keyset-paginated query (core/storage/reads/usage_export.py): memory stays flat
whatever the range. The columns are a stable, documented contract (EXPORT_COLUMNS); new columns are only ever
appended. An admin exports any one account or all; owners and viewers export their own account only.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from aiohttp import web
from pydantic import ConfigDict, Field

from admin.access import check_account, own_account
from api.bodies import Query
from api.errors import bad_request
from api.jwt_auth import principal
from api.operations import JWT, Answer, OperationTable
from api.query import AccountId, Instant, QueryModel
from api.read_slots import ReadSlots
from core.pricing import format_usd
from core.storage.accounts import AccountStore
from core.storage.reads.usage_export import ExportFilter, ExportReader, ExportRow

log = structlog.get_logger("api.provisioning.exports")

EXPORT_COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "account_id",
    "bot_id",
    "contact_id",
    "channel",
    "model",
    "response_model",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "latency_ms",
    "attempts",
    "outcome",
    "error_code",
    "request_id",
    "reported_usage",
)
# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"); such text cells get a
# leading apostrophe in CSV. Ids, models and codes never start with them, so real data round-trips unchanged.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Format:
    content_type: str
    extension: str
    header: Callable[[], str]
    render: Callable[[Sequence[ExportRow]], str]


def row_values(row: ExportRow) -> dict[str, Any]:
    """One record as the export shows it: ISO time with milliseconds, cost as a USD decimal string or null."""
    return {
        "id": row.id,
        "created_at": _iso_ms(row.created_at),
        "account_id": row.account_id,
        "bot_id": row.bot_id,
        "contact_id": row.contact_id,
        "channel": row.channel,
        "model": row.model,
        "response_model": row.response_model,
        "prompt_tokens": row.prompt_tokens,
        "cached_tokens": row.cached_tokens,
        "completion_tokens": row.completion_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "total_tokens": row.total_tokens,
        "cost_usd": None if row.cost_nanousd is None else format_usd(row.cost_nanousd),
        "latency_ms": row.latency_ms,
        "attempts": row.attempts,
        "outcome": row.outcome,
        "error_code": row.error_code,
        "request_id": row.request_id,
        # Set only where the provider reported usage the request cannot have cost (core/usage_bounds.py): its
        # figures as it sent them, JSON text; the token columns hold what was charged.
        "reported_usage": row.reported_usage,
    }


def _csv_header() -> str:
    return _csv_lines([EXPORT_COLUMNS])


def _csv_page(rows: Sequence[ExportRow]) -> str:
    return _csv_lines([[_csv_cell(v) for v in row_values(r).values()] for r in rows])


def _csv_lines(lines: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)  # RFC 4180: CRLF, quotes doubled where needed
    return buffer.getvalue()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""  # unknown (no price, no latency) is an empty cell, never "None"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _ndjson_page(rows: Sequence[ExportRow]) -> str:
    return "".join(json.dumps(row_values(r), separators=(",", ":"), ensure_ascii=False) + "\n" for r in rows)


FORMATS = {
    "csv": _Format("text/csv", "csv", _csv_header, _csv_page),
    "ndjson": _Format("application/x-ndjson", "ndjson", lambda: "", _ndjson_page),
}


class ExportQuery(QueryModel):
    model_config = ConfigDict(extra="forbid")  # every parameter changes the file: a typo must not go unnoticed

    format: Literal["csv", "ndjson"] = Field(default="csv", description="the file format")
    from_: Annotated[int, Instant()] | None = Field(
        default=None,
        alias="from",
        description="start (inclusive): epoch milliseconds or ISO-8601 (no offset means UTC); default: the first "
        "record",
    )
    to: Annotated[int, Instant()] | None = Field(default=None, description="end (exclusive), same forms; default now")
    account_id: AccountId | None = Field(
        default=None, description="admin: one account (404 if unknown), default all; owner or viewer: only their own"
    )


class Exports:
    def __init__(self, exports: ExportReader, accounts: AccountStore, slots: ReadSlots) -> None:
        self._exports = exports  # a year of records: on the reports connection, off the relay's and webhooks'
        self._accounts = accounts
        self._slots = slots  # at most two exports streaming at once in this process (else 429)

    async def export_usage(self, request: web.Request, query: Query[ExportQuery]) -> web.StreamResponse:
        who = principal(request)
        asked = query.parse()
        if asked.from_ is not None and asked.to is not None and asked.from_ >= asked.to:
            raise bad_request("'from' must be earlier than 'to'", field="from")
        account_id = asked.account_id or own_account(who)
        if account_id is not None:
            check_account(who, account_id)  # another account's id is a 404, as if it did not exist
            await self._accounts.get(account_id)  # an admin naming an unknown account gets a 404 too
        where = ExportFilter(account_id, asked.from_, asked.to)
        # The slot is held until the last byte is written: a slow download keeps its read (and its slot) open.
        async with self._slots.slot():
            return await _stream(request, self._exports, where, FORMATS[asked.format])


async def _stream(request: web.Request, exports: ExportReader, where: ExportFilter, fmt: _Format) -> web.StreamResponse:
    account_id = where.account_id
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{fmt.content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{_filename(where, fmt.extension)}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    if header := fmt.header():
        await response.write(header.encode())
    try:
        async with contextlib.aclosing(exports.pages(where)) as pages:
            async for page in pages:
                # write() waits while the client's socket is full: a slow reader slows the reads, not memory.
                await response.write(fmt.render(page).encode())
    except ConnectionError:
        log.info("export_abandoned", account_id=account_id)  # the client hung up; nothing to clean
        return response
    except Exception:
        # The 200 and its headers are gone: the honest signal left is a body without its final chunk, which
        # every HTTP client reports as an incomplete download. An error envelope here would corrupt the stream.
        log.exception("export_failed", account_id=account_id)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _iso_ms(epoch_ms: int) -> str:
    # Integer seconds and milliseconds: epoch_ms / 1000 as a float would round some milliseconds wrongly.
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec='seconds')[:19]}.{millis:03d}Z"


def _filename(where: ExportFilter, extension: str) -> str:
    scope = where.account_id or "all-accounts"
    start = _day(where.from_ms) if where.from_ms is not None else "start"
    end = _day(where.to_ms) if where.to_ms is not None else "now"
    # Ids are [a-z0-9_] (core/ids.py); anything else is dropped, so the header value is always plain ASCII.
    safe_scope = "".join(c for c in scope if c.isascii() and (c.isalnum() or c in "_-"))
    return f"usage_{safe_scope}_{start}_{end}.{extension}"


def _day(epoch_ms: int) -> str:
    # Integer arithmetic from the epoch: exact, and defined for every instant parse_instant accepts (to year 9999).
    return (_EPOCH + timedelta(milliseconds=epoch_ms)).strftime("%Y%m%dT%H%M%SZ")


OPERATIONS = OperationTable(Exports, tag="admin", security=JWT)
OPERATIONS.get(
    "/logs/export",
    Exports.export_usage,
    summary="Download usage records as CSV or NDJSON",
    answers={
        200: Answer(
            "The records in (created_at, id) order, streamed. Columns, in this order: "
            + ", ".join(EXPORT_COLUMNS)
            + ". created_at is RFC 3339 UTC with milliseconds; cost_usd is a USD decimal string (empty in CSV, null "
            "in NDJSON, when no price is known). CSV has a header row, RFC 4180 quoting and CRLF line ends; a text "
            "cell starting with = + - @ is prefixed with an apostrophe (spreadsheet formula injection). NDJSON has "
            "one JSON object per line with the same keys.",
            content={"text/csv": {"type": "string"}, "application/x-ndjson": {"type": "string"}},
            headers={"Content-Disposition": 'attachment; filename="usage_<account|all-accounts>_<from>_<to>.<ext>"'},
        )
    },
    errors=(429,),
)
