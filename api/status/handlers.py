"""`GET /api/status/openai` and `GET /api/status/webhooks`: is the model reachable, are the channels healthy.

Any role may read them. The OpenAI probe is about the platform's one endpoint, so every caller sees it (but only
an admin sees its URL); the last model call and the channel list are scoped like everything else: owners and
viewers see their account only, an admin sees all accounts or the one named by `account_id`.
"""

from __future__ import annotations

from aiohttp import web

from admin.access import own_account
from api.bodies import Query
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.scopes import account_scope
from api.status.models import (
    ChannelHealth,
    LastCall,
    NoQuery,
    OpenAIStatus,
    ProbeFailure,
    WebhookStatus,
    WebhookStatusQuery,
)
from core.clock import Clock
from core.openai_probe import OpenAIProbe, ProbeError
from core.storage.accounts import AccountStore
from core.storage.reads.status import StatusReader


class Status:
    def __init__(
        self,
        probe: OpenAIProbe,
        status: StatusReader,
        accounts: AccountStore,
        clock: Clock,
        *,
        openai_base_url: str,
    ) -> None:
        self._probe = probe
        self._status = status
        self._accounts = accounts
        self._clock = clock
        self._openai_base_url = openai_base_url

    async def openai_status(self, request: web.Request, query: Query[NoQuery]) -> OpenAIStatus:
        who = principal(request)
        query.parse()
        status = await self._probe.status()
        result = status.result
        last_call = await self._status.last_call(own_account(who))
        return OpenAIStatus(
            configured=result.configured,
            reachable=result.reachable,
            latency_ms=result.latency_ms,
            checked_at=result.checked_at,
            cached=status.cached,
            http_status=result.http_status,
            error=_failure(result.error),
            last_error=_failure(status.last_error),
            last_call=None
            if last_call is None
            else LastCall(
                outcome=last_call.outcome,
                error_code=last_call.error_code,
                model=last_call.model,
                at=last_call.created_at,
            ),
            base_url=self._openai_base_url if who.is_admin else None,
        )

    async def webhooks_status(self, request: web.Request, query: Query[WebhookStatusQuery]) -> WebhookStatus:
        asked = query.parse()
        account_id = await account_scope(principal(request), asked.account_id, self._accounts)
        channels = await self._status.channels(account_id, self._clock.now_ms())
        return WebhookStatus(
            channels=[
                ChannelHealth(
                    id=c.id,
                    account_id=c.account_id,
                    bot_id=c.bot_id,
                    platform=c.platform,  # type: ignore[arg-type]
                    external_id=c.external_id,
                    status=c.status,  # type: ignore[arg-type]
                    status_reason=c.status_reason,
                    needs_reauthorisation=c.status == "needs_reauth",
                    last_delivery_at=c.last_delivery_at,
                    last_error=c.last_error,
                    last_error_at=c.last_error_at,
                    inbox_pending=c.pending,
                    dead_letters=c.dead,
                    dead_letters_24h=c.dead_last_24h,
                )
                for c in channels
            ]
        )


def _failure(error: ProbeError | None) -> ProbeFailure | None:
    return None if error is None else ProbeFailure(code=error.code, message=error.message, at=error.at)


OPERATIONS = OperationTable(Status, tag="operations", security=JWT)
OPERATIONS.get(
    "/openai",
    Status.openai_status,
    summary="Is the model endpoint reachable?",
    description="Any role. A live probe of the configured OpenAI-compatible endpoint (GET {base}/models with the "
    "key, 5 s timeout), shared by concurrent callers and reused for 30 s. Never shows the key. Takes no query "
    "parameters (any is a 400).",
    operation_id="getOpenAIStatus",
)
OPERATIONS.get(
    "/webhooks",
    Status.webhooks_status,
    summary="Health of each connected channel",
    description="Any role: owners and viewers see their account's channels; an admin sees every account's, or one "
    "account's with account_id. Last delivery, last error, inbox depth, dead letters, re-authorisation.",
    operation_id="getWebhookStatus",
)
