"""The API keys page: the keys a business's own apps call the relay API with. An account's owner manages their own;
an admin, any account's (from its admin page); a viewer sees the list. Each reads and changes through the API's
handler object (api/provisioning/api_keys.py), as the signed-in person.

    GET  /dashboard/api-keys                                     the caller's account's keys (an admin: pick one)
    GET  /dashboard/accounts/{account_id}/api-keys               an account's keys, and a form to issue one
    POST /dashboard/accounts/{account_id}/api-keys               issue a key: the answer is the only page showing it
    POST /dashboard/accounts/{account_id}/api-keys/{key_id}/revoke   revoke a key (calls with it fail at once)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from api.audit_trail import CREATED
from api.bodies import validate
from api.errors import ApiError
from api.jwt_auth import path_account, principal
from api.provisioning.api_keys import ApiKeys
from api.provisioning.models import ApiKeyRequest, IssuedApiKey
from core.errors import GatewayError
from core.storage.accounts import AccountStore
from core.storage.rate_limits import RateLimitStore
from web.forms import GivenBody, form_values
from web.rendering import (
    Renderer,
    checked_form,
    first_sending,
    new_form_key,
    refusal,
    session_of,
    to_own_account,
)


@dataclass(frozen=True, slots=True)
class KeyPageDeps:
    api_keys: ApiKeys
    accounts: AccountStore
    limiter: RateLimitStore  # the issue form sent again within the minute (a reload) issues no second key


class KeyPages:
    def __init__(self, deps: KeyPageDeps, renderer: Renderer) -> None:
        self._d = deps
        self._r = renderer

    async def choose(self, request: web.Request) -> web.StreamResponse:
        to_own_account(request, "api-keys")

    async def listing(
        self, request: web.Request, *, status: int = 200, issued: IssuedApiKey | None = None, **shown: Any
    ) -> web.StreamResponse:
        listed = await self._d.api_keys.list_keys(request)  # another account's id: 404, as through the API
        account = await self._d.accounts.get(request.match_info["account_id"])  # its name (list_keys checked it)
        keys = sorted(listed.api_keys, key=lambda k: (k.revoked_at is not None, -k.created_at))
        return self._r.page(
            "api_keys.html",
            session_of(request),
            section="api_keys",
            status=status,
            account=account,
            keys=keys,
            issued=issued,
            can_write=principal(request).can_write,
            error=shown.get("error"),
            typed=shown.get("typed", ""),
            done=request.query.get("done"),
            form_key=new_form_key(),
        )

    async def issue(self, request: web.Request) -> web.StreamResponse:
        form = await checked_form(request)
        values = form_values(form, {"name": "optional_text"})
        try:
            # A blank name is no name (the API refuses a null one: it means nothing there).
            wanted = validate(ApiKeyRequest, {k: v for k, v in values.items() if v is not None}, None)
            path_account(request, "write")  # another account: 404; a viewer: 403 (before the form key is used)
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.listing(request, status=refused.status, error=refused.message, typed=values.get("name"))
        # The form's own key, used once: the answer is the key's only showing, and the same form sent again within
        # the minute (a reload of that answer) issues nothing more. (Later it would issue another key, shown in
        # its turn: no key is ever issued unseen.)
        if not await first_sending(self._d.limiter, request, "issue-key", form.get("form_key", "")):
            words = (
                "This form was sent already: the key it issued was shown then, and only then. If it was not copied,"
                " revoke it below (the newest) and issue another."
            )
            return await self.listing(request, status=409, error=words)
        try:
            issued = await self._d.api_keys.issue_key(request, GivenBody(request, wanted))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.listing(request, status=refused.status, error=refused.message, typed=values.get("name"))
        request[CREATED] = issued.id  # the audit trail's target, as for the API's answer
        # Answered here, not after a redirect: this page is the only place the key is ever shown (no-store).
        return await self.listing(request, status=201, issued=issued)

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        await checked_form(request)
        await self._d.api_keys.revoke_key(request)
        raise web.HTTPSeeOther(f"/dashboard/accounts/{request.match_info['account_id']}/api-keys?done=revoked")
