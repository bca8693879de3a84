"""OpenAPI paths of the admin API (admin/*.py, mounted under /api/admin/): provisioning of plans, accounts, API keys,
credits, bots and channels. Who may do what is in each operation's description; the JWT roles are those of the
`bearerJwt` scheme."""

from __future__ import annotations

from typing import Any

from gateway.openapi.common import Schema, json_body, jwt_operation, no_content, ok, path_param, ref
from gateway.openapi.schemas_admin import SCHEMAS as SCHEMAS

_ADMIN = "/api/admin"
_TAGS = ("admin",)
_ACCOUNT = path_param("account_id", "an account id; another account's answers 404 to an owner or viewer")
_PLAN = path_param("plan_id", "a plan id")
_BOT = path_param("bot_id", "a bot id; another account's answers 404 to an owner or viewer")
_KEY = path_param("key_id", "an API key id of this account")
_CHANNEL = path_param("channel_id", "a channel id; another account's answers 404 to an owner or viewer")
# Who may call, said the same way in every description.
ANYONE = "Any role."
READERS = "Admin, or the account's owner or viewer."
WRITERS = "Admin, or the account's owner (viewers: 403)."
OPERATOR = "Admin only (owners and viewers: 403; for another account's ids, 404 first)."
_OWNERSHIP = (
    " The Graph API must confirm that access_token controls external_id (400 if not, 502 if Graph cannot be"
    " reached; nothing is stored then); 503 when SECRETS_KEY is unset."
)


def _op(operation_id: str, summary: str, who: str, responses: dict[str, Schema], **kwargs: Any) -> Schema:
    return jwt_operation(operation_id, summary, responses, description=who, tags=_TAGS, **kwargs)


def _created(name: str) -> dict[str, Schema]:
    return {"201": ok(ref(name), "Created")}


def _ok(name: str) -> dict[str, Schema]:
    return {"200": ok(ref(name))}


_BODY = (400, 413)
PATHS: dict[str, dict[str, Any]] = {
    f"{_ADMIN}/plans": {
        "post": _op(
            "createPlan",
            "Create a plan",
            OPERATOR,
            _created("AdminPlan"),
            errors_=(*_BODY, 403, 409),
            body=json_body(ref("AdminPlanCreate")),
        ),
        "get": _op("listPlans", "The plan catalogue", ANYONE, _ok("AdminPlanList")),
    },
    f"{_ADMIN}/plans/{{plan_id}}": {
        "get": _op("getPlan", "One plan", ANYONE, _ok("AdminPlan"), errors_=(404,), parameters=[_PLAN]),
        "patch": _op(
            "updatePlan",
            "Change a plan",
            OPERATOR,
            _ok("AdminPlan"),
            errors_=(*_BODY, 403, 404, 409),
            parameters=[_PLAN],
            body=json_body(ref("AdminPlanUpdate")),
        ),
        "delete": _op(
            "deletePlan",
            "Delete a plan no account is on (409 otherwise)",
            OPERATOR,
            {"204": no_content("Deleted")},
            errors_=(403, 404, 409),
            parameters=[_PLAN],
        ),
    },
    f"{_ADMIN}/accounts": {
        "post": _op(
            "createAccount",
            "Create an account on a plan",
            OPERATOR,
            _created("AdminAccount"),
            errors_=(*_BODY, 403, 404),
            body=json_body(ref("AdminAccountCreate")),
        ),
        "get": _op(
            "listAccounts",
            "Accounts: every one for an admin, the caller's own for an owner or viewer",
            ANYONE,
            _ok("AdminAccountList"),
        ),
    },
    f"{_ADMIN}/accounts/{{account_id}}": {
        "get": _op(
            "getAccount",
            "One account with its quota",
            READERS,
            _ok("AdminAccountDetail"),
            errors_=(404,),
            parameters=[_ACCOUNT],
        ),
        "patch": _op(
            "updateAccount",
            "Rename an account, change its email, or (admin only) its plan",
            WRITERS + " Only an admin may change plan_id (403).",
            _ok("AdminAccount"),
            errors_=(*_BODY, 403, 404),
            parameters=[_ACCOUNT],
            body=json_body(ref("AdminAccountUpdate")),
        ),
    },
    f"{_ADMIN}/users/{{account_id}}/lock": {
        "put": _op(
            "lockAccount",
            "Lock or unlock an account (a locked account's relay and bots stop answering)",
            OPERATOR,
            _ok("AdminAccount"),
            errors_=(*_BODY, 403, 404),
            parameters=[_ACCOUNT],
            body=json_body(ref("AdminLock")),
        ),
    },
    f"{_ADMIN}/accounts/{{account_id}}/api-keys": {
        "post": _op(
            "issueApiKey",
            "Issue a relay API key: the key is in this answer only",
            WRITERS,
            _created("AdminIssuedApiKey"),
            errors_=(*_BODY, 403, 404),
            parameters=[_ACCOUNT],
            body=json_body(ref("AdminApiKeyCreate"), required=False),
        ),
        "get": _op(
            "listApiKeys",
            "The account's API keys (never the keys themselves)",
            READERS,
            _ok("AdminApiKeyList"),
            errors_=(404,),
            parameters=[_ACCOUNT],
        ),
    },
    f"{_ADMIN}/accounts/{{account_id}}/api-keys/{{key_id}}": {
        "delete": _op(
            "revokeApiKey",
            "Revoke an API key",
            WRITERS,
            {"204": no_content("Revoked")},
            errors_=(403, 404),
            parameters=[_ACCOUNT, _KEY],
        ),
    },
    f"{_ADMIN}/accounts/{{account_id}}/credits": {
        "post": _op(
            "addCredits",
            "Add a credit ledger entry (tokens on top of the plan's allowance)",
            OPERATOR,
            _created("AdminCreditEntry"),
            errors_=(*_BODY, 403, 404),
            parameters=[_ACCOUNT],
            body=json_body(ref("AdminCreditCreate")),
        ),
        "get": _op(
            "listCredits",
            "The credit ledger and its balance",
            READERS,
            _ok("AdminCreditLedger"),
            errors_=(404,),
            parameters=[_ACCOUNT],
        ),
    },
    f"{_ADMIN}/accounts/{{account_id}}/bots": {
        "post": _op(
            "createBot",
            "Create a bot",
            WRITERS,
            _created("AdminBot"),
            errors_=(*_BODY, 403, 404),
            parameters=[_ACCOUNT],
            body=json_body(ref("AdminBotCreate")),
        ),
        "get": _op(
            "listBots", "The account's bots", READERS, _ok("AdminBotList"), errors_=(404,), parameters=[_ACCOUNT]
        ),
    },
    f"{_ADMIN}/bots/{{bot_id}}": {
        "get": _op("getBot", "One bot", READERS, _ok("AdminBot"), errors_=(404,), parameters=[_BOT]),
        "patch": _op(
            "updateBot",
            "Change a bot",
            WRITERS,
            _ok("AdminBot"),
            errors_=(*_BODY, 403, 404),
            parameters=[_BOT],
            body=json_body(ref("AdminBotUpdate")),
        ),
        "delete": _op(
            "deleteBot",
            "Delete a bot and disconnect its channels",
            WRITERS,
            {"204": no_content("Deleted")},
            errors_=(403, 404),
            parameters=[_BOT],
        ),
    },
    f"{_ADMIN}/bots/{{bot_id}}/channels": {
        "post": _op(
            "connectChannel",
            "Connect a bot to a Page, an Instagram account or a WhatsApp number",
            WRITERS + _OWNERSHIP + " 409: the id is connected to a bot already.",
            _created("AdminChannel"),
            errors_=(*_BODY, 403, 404, 409, 502),
            parameters=[_BOT],
            body=json_body(ref("AdminChannelCreate")),
        ),
        "get": _op(
            "listChannels",
            "The bot's channels (secrets are never returned)",
            READERS,
            _ok("AdminChannelList"),
            errors_=(404,),
            parameters=[_BOT],
        ),
    },
    f"{_ADMIN}/channels/{{channel_id}}": {
        "get": _op("getChannel", "One channel", READERS, _ok("AdminChannel"), errors_=(404,), parameters=[_CHANNEL]),
        "patch": _op(
            "updateChannel",
            "Replace a channel's secrets or switch it on or off",
            WRITERS + " A new access_token is checked like at connection." + _OWNERSHIP,
            _ok("AdminChannel"),
            errors_=(*_BODY, 403, 404, 502),
            parameters=[_CHANNEL],
            body=json_body(ref("AdminChannelUpdate")),
        ),
        "delete": _op(
            "disconnectChannel",
            "Disconnect a channel",
            WRITERS,
            {"204": no_content("Disconnected")},
            errors_=(403, 404),
            parameters=[_CHANNEL],
        ),
    },
}
