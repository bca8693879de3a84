"""Account API keys for the relay API: the plaintext key is in the creation answer and nowhere else, ever."""

from __future__ import annotations

from aiohttp import web

from api.bodies import OptionalBody
from api.jwt_auth import path_account
from api.operations import JWT, OperationTable
from api.provisioning.models import ApiKeyList, ApiKeyRequest, IssuedApiKey
from core.storage.accounts import AccountStore
from core.storage.api_keys import ApiKeyStore


class ApiKeys:
    def __init__(self, api_keys: ApiKeyStore, accounts: AccountStore) -> None:
        self._api_keys = api_keys
        self._accounts = accounts

    async def issue_key(self, request: web.Request, body: OptionalBody[ApiKeyRequest]) -> IssuedApiKey:
        _, account_id = path_account(request, "write")
        sent = await body.parse()
        issued = await self._api_keys.issue(account_id, sent.name)
        return IssuedApiKey(**issued.key.model_dump(), account_id=account_id, key=issued.plaintext)

    async def list_keys(self, request: web.Request) -> ApiKeyList:
        _, account_id = path_account(request)
        await self._accounts.get(account_id)
        return ApiKeyList(api_keys=await self._api_keys.list(account_id))

    async def revoke_key(self, request: web.Request) -> None:
        _, account_id = path_account(request, "write")
        await self._api_keys.revoke(account_id, request.match_info["key_id"])


OPERATIONS = OperationTable(ApiKeys, tag="admin", security=JWT)
OPERATIONS.post(
    "/accounts/{account_id}/api-keys",
    ApiKeys.issue_key,
    summary="Issue an API key for the relay API",
    description="Admin, or the account's owner. The key is in this answer only; it is stored as a hash.",
    operation_id="issueApiKey",
    errors=(403,),
)
OPERATIONS.get(
    "/accounts/{account_id}/api-keys",
    ApiKeys.list_keys,
    summary="The account's API keys (never the keys themselves)",
    operation_id="listApiKeys",
)
OPERATIONS.delete(
    "/accounts/{account_id}/api-keys/{key_id}",
    ApiKeys.revoke_key,
    summary="Revoke an API key",
    operation_id="revokeApiKey",
    errors=(403,),
)
