"""Test helpers: settings with a database of the test's own, admin tokens, provisioning through the real admin API."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from admin.tokens import mint_token
from gateway.settings import Settings
from tests.support.database import migrated_url
from tests.support.paths import PROJECT_DATA

JWT_SECRET = "test-secret-0123456789-abcdefghijklmnop"


def make_settings(tmp_path: Path, openai_base_url: str | None, **overrides: Any) -> Settings:
    base = Settings(
        database_url=migrated_url(tmp_path),
        openai_api_key="sk-test" if openai_base_url else None,
        openai_base_url=openai_base_url or "http://127.0.0.1:9/v1",
        admin_jwt_secret=JWT_SECRET,
        data_dir=PROJECT_DATA,
        secrets_key=SECRETS_KEY,
        meta_app_secret=APP_SECRET,
        meta_verify_token=VERIFY_TOKEN,
        workers=0,  # tests that answer customers turn workers on, with a fake Graph server
        inbox_settle_ms=0,  # a stored event is claimable at once; tests/core/test_channel_worker.py keeps the default
        graph_api_base_url="http://127.0.0.1:9",
        llm_attempt_timeout=2.0,
        llm_total_budget=5.0,
    )
    return replace(base, **overrides)


def token(role: str = "admin", account_id: str | None = None, *, sub: str = "tester", ttl: int = 600) -> str:
    return mint_token(JWT_SECRET, role=role, sub=sub, account_id=account_id, ttl=ttl, now=int(time.time()))


def auth(role: str = "admin", account_id: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, account_id)}"}


@dataclass(frozen=True, slots=True)
class Tenant:
    plan_id: str
    account_id: str
    bot_id: str
    api_key: str

    @property
    def key_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def expect(response: Any, status: int) -> Any:
    body = await response.json() if response.content_type == "application/json" else await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {body}"
    return body


async def provision(
    client: TestClient,
    *,
    name: str = "Acme",
    plan: dict[str, Any] | None = None,
    bot: dict[str, Any] | None = None,
) -> Tenant:
    """A plan, an account on it, a bot and an API key, all made through the admin API."""
    plan_body = {
        "name": f"plan-{name}-{time.monotonic_ns()}",
        "monthly_token_limit": 100_000,
        "models": ["gpt-4o-mini", "gpt-4.1", "gpt-5-mini"],
        "default_model": "gpt-4o-mini",
        **(plan or {}),
    }
    admin = auth()
    created_plan = await expect(await client.post("/api/admin/plans", json=plan_body, headers=admin), 201)
    account = await expect(
        await client.post("/api/admin/accounts", json={"name": name, "plan_id": created_plan["id"]}, headers=admin),
        201,
    )
    bot_body = {"name": f"{name} bot", "persona": f"You are the assistant of {name}.", **(bot or {})}
    created_bot = await expect(
        await client.post(f"/api/admin/accounts/{account['id']}/bots", json=bot_body, headers=admin), 201
    )
    key = await expect(await client.post(f"/api/admin/accounts/{account['id']}/api-keys", headers=admin), 201)
    return Tenant(created_plan["id"], account["id"], created_bot["id"], key["key"])


async def relay(client: TestClient, tenant: Tenant, message: str, *, user_id: str = "customer-1", **extra: Any) -> Any:
    return await client.post(
        "/api/messages/relay", json={"user_id": user_id, "message": message, **extra}, headers=tenant.key_header
    )


APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "verify-me-please"
SECRETS_KEY = "pV6p3bO0x8mN3rS0yE2v5Q1aH7kC9dJ4tL6uZ8wX0fY="


def signed(body: bytes | str | dict[str, Any], secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """A body and the headers Meta would send with it (signature over the exact bytes)."""
    from adapters.meta_auth import sign

    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    return raw, {"X-Hub-Signature-256": sign(raw, secret), "Content-Type": "application/json"}


async def connect_channel(
    client: TestClient, tenant: Tenant, platform: str, external_id: str, **secrets: str
) -> dict[str, Any]:
    body = {"platform": platform, "external_id": external_id, "access_token": f"token-{external_id}", **secrets}
    response = await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth())
    return await expect(response, 201)
