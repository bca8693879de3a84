"""Schemathesis against the served OpenAPI document: generated requests into a real server, no 5xx, every answer
conforms to the document (status code, content type, headers, body schema), and bodies the document calls invalid
are refused.

The gateway, a fake OpenAI and a fake Graph API run on random local ports in a background thread with its own
event loop, so schemathesis' synchronous client talks to them over real sockets. Every documented operation is
exercised (none is excluded), with the credentials its `security` names: an admin JWT and an owner JWT for the
JWT API, an account API key where one is accepted, a valid X-Hub-Signature-256 (computed over the exact generated
bytes) for webhook deliveries; negative cases that drop or mangle the credential keep it dropped or mangled.
Path ids are either generated (mostly unknown ids: 404) or the ids of a freshly provisioned tenant, so handlers
also run on real objects. Examples are few and derandomized, so a run is bounded and repeatable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.meta_auth import SIGNATURE_HEADER, sign
from adapters.signed_request import encode_signed_request
from core.tokens import TokenCounter
from gateway.app import create_app
from gateway.settings import Settings
from gateway.surfaces import openapi_document
from sandbox.fakes.graph_server import FakeGraph
from sandbox.fakes.openai_server import FakeOpenAI
from sandbox.fakes.serving import serve_app
from tests.support import database
from tests.support.harness import APP_SECRET, make_settings, token

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Per operation and caller: ~100 (operation, caller) pairs take about 25 s on two cores.
MAX_EXAMPLES = 20
TIMEOUT = 30.0


def _callers(security: list[dict[str, list[str]]]) -> tuple[str, ...]:
    """Every kind of caller the operation's security admits (a JWT operation: an admin and an owner)."""
    schemes = {name for requirement in security for name in requirement}
    unknown = schemes - {"bearerJwt", "apiKey", "metaSignature"}
    assert not unknown, f"no caller knows the security schemes {unknown}"
    callers = (("admin", "owner") if "bearerJwt" in schemes else ()) + (("api_key",) if "apiKey" in schemes else ())
    return callers + (("signed",) if "metaSignature" in schemes else ()) or ("public",)


def _cases() -> list[Any]:
    document = openapi_document(Settings())
    return [
        pytest.param(method.upper(), path, caller, id=f"{method.upper()} {path} {caller}")
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for caller in _callers(operation["security"])
    ]


@dataclass(frozen=True)
class Live:
    base_url: str
    settings: Settings
    schema: Any  # schemathesis' loaded OpenApiSchema
    http: requests.Session


@contextlib.contextmanager
def _serving(settings_for: Any, tokens: TokenCounter) -> Iterator[tuple[str, Settings]]:
    """The gateway, a fake OpenAI and a fake Graph on random ports, served from a background thread's own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-gateway", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[str, Settings]:
        openai_url = await stack.enter_async_context(serve_app(FakeOpenAI().app, "127.0.0.1", 0, suffix="/v1"))
        # `token-<id>` controls `<id>`: channel connections verify their token against this Graph.
        graph_url = await stack.enter_async_context(serve_app(FakeGraph(implicit_grants=True).app, "127.0.0.1", 0))
        settings = settings_for(openai_url, graph_url)
        base_url = await stack.enter_async_context(serve_app(create_app(settings, tokens=tokens), "127.0.0.1", 0))
        return base_url, settings

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tokens: TokenCounter) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")

    def settings_for(openai_url: str, graph_url: str) -> Settings:
        return make_settings(tmp, openai_url, graph_api_base_url=graph_url)

    with _serving(settings_for, tokens) as (base_url, settings), requests.Session() as http:
        document = http.get(f"{base_url}/api/openapi.json", timeout=TIMEOUT).json()
        yield Live(base_url, settings, schemathesis.openapi.from_dict(document), http)


@dataclass(frozen=True)
class Tenant:
    ids: dict[str, str]  # path parameter name -> a real id of this tenant
    api_key: str


def _provision(live: Live) -> Tenant:
    """A fresh plan, account, bot, API key and channel, made through the admin API."""
    admin = {"Authorization": f"Bearer {token()}"}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = live.http.post(f"{live.base_url}/api/admin{path}", json=body, headers=admin, timeout=TIMEOUT)
        assert response.status_code == 201, response.text
        return response.json()

    plan = post(
        "/plans",
        {
            "name": f"plan-{secrets.token_hex(6)}",
            "monthly_token_limit": 1_000_000,
            "models": ["gpt-4o-mini"],
            "default_model": "gpt-4o-mini",
        },
    )
    account = post("/accounts", {"name": "Fuzz Inc", "plan_id": plan["id"]})
    bot = post(f"/accounts/{account['id']}/bots", {"name": "Fuzz bot", "persona": "You answer briefly."})
    key = post(f"/accounts/{account['id']}/api-keys", {"name": "fuzz"})
    page_id = str(10**11 + secrets.randbelow(10**11))
    channel = post(
        f"/bots/{bot['id']}/channels",
        {"platform": "messenger", "external_id": page_id, "access_token": f"token-{page_id}"},
    )
    turn = live.http.post(
        f"{live.base_url}/api/messages/relay",
        json={"user_id": "fuzz-customer", "message": "hello"},
        headers={"Authorization": f"Bearer {key['key']}"},
        timeout=TIMEOUT,
    )
    assert turn.status_code == 200, turn.text
    [contact] = database.rows(live.settings, "SELECT id FROM contacts WHERE account_id = ?", (account["id"],))
    # A data deletion request, so its status page is also fetched for a code that exists.
    signed = encode_signed_request({"algorithm": "HMAC-SHA256", "user_id": f"psid-{page_id}"}, APP_SECRET)
    deletion = live.http.post(
        f"{live.base_url}/webhooks/meta/data-deletion", data={"signed_request": signed}, timeout=TIMEOUT
    )
    assert deletion.status_code == 200, deletion.text
    ids = {
        "plan_id": plan["id"],
        "account_id": account["id"],
        "bot_id": bot["id"],
        "key_id": key["id"],
        "channel_id": channel["id"],
        "contact_id": contact["id"],
        "code": deletion.json()["confirmation_code"],
    }
    return Tenant(ids, key["key"])


def _credentials(caller: str, case: Any, tenant: Tenant) -> dict[str, str]:
    """The caller's real credential in place of the generated one. A negative case that drops or mangles the
    credential keeps it dropped or mangled: the server must refuse it, and the check for that stays meaningful."""
    if not str((case.headers or {}).get("Authorization", "")).startswith("Bearer "):
        return {}
    if caller == "admin":
        return {"Authorization": f"Bearer {token()}"}
    if caller == "owner":
        return {"Authorization": f"Bearer {token('owner', tenant.ids['account_id'])}"}
    if caller == "api_key":
        return {"Authorization": f"Bearer {tenant.api_key}"}
    return {}


def _sign(kwargs: dict[str, Any]) -> None:
    """Send the body as the exact bytes a valid signature covers, as Meta does (unless the case dropped it)."""
    if SIGNATURE_HEADER not in kwargs["headers"]:
        return
    if "json" in kwargs:
        kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
    raw = kwargs.get("data") or b""
    raw = raw.encode() if isinstance(raw, str) else raw
    kwargs["data"] = raw
    kwargs["headers"][SIGNATURE_HEADER] = sign(raw, APP_SECRET)


@pytest.mark.parametrize(("method", "path", "caller"), _cases())
def test_operation_conforms_to_document(live: Live, method: str, path: str, caller: str) -> None:
    operation = live.schema[path][method]
    tenant = _provision(live)
    # Real ids where the operation names objects (path) or the account it covers (query `account_id`).
    own_path = {p.name: tenant.ids[p.name] for p in operation.path_parameters if p.name in tenant.ids}
    own_query = {p.name: tenant.ids[p.name] for p in operation.query if p.name == "account_id"}
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if own_path or own_query:
        strategies.append(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=own_path or None, query=own_query or None)
        )
    if operation.body or operation.query:
        # Negative cases need something to make invalid; path ids are any string, so they cannot be.
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the failing request is reported as sent
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=live.base_url, headers=_credentials(caller, case, tenant))
        if caller == "signed":
            _sign(kwargs)
        response = live.http.request(**kwargs, timeout=TIMEOUT)
        case.validate_response(response, checks=CHECKS, headers=kwargs["headers"], transport_kwargs=kwargs)

    run()
