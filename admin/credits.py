"""The credit ledger: only the operator adds entries; the account's owner and viewers may read it."""

from __future__ import annotations

from aiohttp import web

from admin.auth import path_account
from admin.render import credit_json
from core.models import OPERATOR_CREDIT_KINDS
from gateway.errors import bad_request
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()

_FIELDS = (
    Field("tokens", int, required=True, min=-(10**12), max=10**12),
    Field("kind", str, required=True, choices=OPERATOR_CREDIT_KINDS),
    Field("note", str, nullable=True, max_length=500),
)


@routes.post("/accounts/{account_id}/credits")
async def add_credits(request: web.Request) -> web.Response:
    who, account_id = path_account(request, "admin")
    body = validate(await read_json(request), _FIELDS)
    if body["tokens"] == 0:
        raise bad_request("'tokens' may not be zero", field="tokens")
    if body["kind"] in ("purchase", "grant") and body["tokens"] < 0:
        raise bad_request(f"a {body['kind']} adds tokens; use 'adjustment' or 'refund' to remove them", field="tokens")
    entry = await request.config_dict[SERVICES].credits.add(
        account_id, body["kind"], body["tokens"], body.get("note"), created_by=who.subject
    )
    return web.json_response(credit_json(entry), status=201)


@routes.get("/accounts/{account_id}/credits")
async def list_credits(request: web.Request) -> web.Response:
    _, account_id = path_account(request)
    ledger = request.config_dict[SERVICES].credits
    balance = await ledger.balance(account_id)
    entries = await ledger.list(account_id)
    return web.json_response({"balance_tokens": balance, "entries": [credit_json(e) for e in entries]})
