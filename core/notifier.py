"""Sending accounts their notifications (core/storage/notifications.py): signed POSTs, retried with backoff.

Each notification is a JSON body POSTed to the account's endpoint with
  - `Content-Type: application/json`, `User-Agent: nexus-gateway`, `X-Nexus-Event: <event>`;
  - `X-Nexus-Signature-256: sha256=<hex>`: the HMAC-SHA256 of the raw body under the secret the account was
    given when it set its endpoint (PUT /api/admin/accounts/{account_id}/notifications). Verify it on the raw
    bytes before parsing, in constant time, as Meta's webhooks are verified; the body's `id` names the
    notification (a repeat of a delivery whose answer was lost has the same id) and `created_at` when it was made.
A 2xx answer within NOTIFY_TIMEOUT_SECONDS delivers it; anything else is tried again after 10 s, 30 s, 2 min,
10 min, 30 min, 1 h, 3 h and 6 h, then given up on (the log says so, with `alert`). Redirects are not followed.
The endpoint's address passes the same policy as knowledge imports: no loopback, private, link-local or metadata
address unless the operator allows it (NOTIFY_ALLOW_PRIVATE, NOTIFY_ALLOW_NETWORKS).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from typing import Final

import aiohttp
import structlog
from yarl import URL

from core.knowledge.fetch import AddressPolicy, FetchRefused, GuardedResolver
from core.secrets import SecretsError
from core.storage.notifications import NotificationStore, Outgoing

log = structlog.get_logger("core.notifier")

SIGNATURE_HEADER: Final = "X-Nexus-Signature-256"
EVENT_HEADER = "X-Nexus-Event"
BACKOFF_MS = (10_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000)
BATCH = 20  # notifications sent at once per run, at most


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(self, store: NotificationStore, policy: AddressPolicy, *, timeout_seconds: float) -> None:
        self._store = store
        self._policy = policy
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def run_once(self) -> int:
        """Send what is due, at once (one slow endpoint does not hold the others); the number delivered."""
        due = await self._store.due(BATCH)
        results = await asyncio.gather(*(self._deliver(n) for n in due))
        return sum(results)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, notification: Outgoing) -> bool:
        body = notification.body.encode()
        try:
            error = await self._post(notification, body)
        except (FetchRefused, SecretsError) as exc:
            # The address is not allowed, or the signing key cannot be opened (SECRETS_KEY changed without a
            # rotation): retrying cannot help until the account or the operator changes something.
            await self._store.give_up(notification.id, str(exc))
            log.warning("notification_refused", notification_id=notification.id, reason=str(exc), alert=True)
            return False
        if error is None:
            await self._store.delivered(notification.id)
            return True
        attempt = notification.attempts + 1
        if attempt > len(BACKOFF_MS):
            await self._store.give_up(notification.id, error)
            log.error(
                "notification_given_up",
                notification_id=notification.id,
                account_id=notification.account_id,
                attempts=attempt,
                error=error,
                alert=True,
            )
        else:
            await self._store.retry(notification.id, BACKOFF_MS[attempt - 1], error)
            log.info("notification_retry", notification_id=notification.id, attempt=attempt, error=error)
        return False

    async def _post(self, notification: Outgoing, body: bytes) -> str | None:
        """None when the endpoint took it, else why not."""
        url = URL(notification.endpoint.url)
        self._check_literal(url)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "nexus-gateway",
            EVENT_HEADER: notification.event,
            SIGNATURE_HEADER: signature(self._store.open_secret(notification.endpoint), body),
        }
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._open().post(url, data=body, headers=headers, allow_redirects=False) as response,
            ):
                if 200 <= response.status < 300:
                    return None
                return f"the endpoint answered HTTP {response.status}"
        except FetchRefused:
            raise
        except TimeoutError:
            return f"the endpoint did not answer within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            return f"could not reach the endpoint ({type(exc).__name__})"

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._policy), use_dns_cache=False, limit=20)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def _check_literal(self, url: URL) -> None:
        host = (url.host or "").strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        self._policy.check(host, host)
