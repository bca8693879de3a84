"""Shared pieces of the OpenAPI document: the error envelope, security schemes and small schema builders.

Every fragment (`paths_<area>.py`) builds its path items from these, so an error answer, a timestamp or a
bearer-protected operation is described the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from gateway.validation import CREDENTIAL_PATTERN

Schema = dict[str, Any]

# Security requirements, as an operation's `security` value. `PUBLIC` overrides nothing globally (there is no
# global requirement); it is written out so every operation says explicitly who may call it.
PUBLIC: list[dict[str, list[str]]] = []
JWT: list[dict[str, list[str]]] = [{"bearerJwt": []}]
API_KEY: list[dict[str, list[str]]] = [{"apiKey": []}]
META_SIGNATURE: list[dict[str, list[str]]] = [{"metaSignature": []}]

SECURITY_SCHEMES: dict[str, Schema] = {
    "bearerJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "An HS256 JWT signed with ADMIN_JWT_SECRET: claims sub, role (admin | owner | viewer), account_id "
            "(owner and viewer), exp, iat, iss=nexus-gateway, aud=nexus-gateway-admin. Owners and viewers see only "
            "their account (another account's ids answer 404); viewers never mutate (403)."
        ),
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An account API key (nxk_...), issued by POST /api/admin/accounts/{account_id}/api-keys.",
    },
    "metaSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Hub-Signature-256",
        "description": "sha256=<hex HMAC-SHA256 of the raw body> with the Meta app secret (or the channel's own).",
    },
}

# A snake_case code, a human sentence, and optional structured details.
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z][a-z_]*$"},
                "message": {"type": "string", "minLength": 1},
                "details": {"type": "object"},
            },
        }
    },
}

TIMESTAMP: Schema = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC, second precision"}
NULLABLE_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}
USD: Schema = {"type": "string", "pattern": r"^-?\d+\.\d{6,9}$", "description": "US dollars as a decimal string"}

# The quota block of the relay answer and of an account: the calendar month's allowance and where it stands.
QUOTA: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["limit_tokens", "used_tokens", "remaining_tokens", "period_end"],
    "properties": {
        "limit_tokens": {"type": "integer", "minimum": 0},
        "used_tokens": {"type": "integer", "minimum": 0},
        "remaining_tokens": {"type": "integer", "minimum": 0},
        "period_end": TIMESTAMP,
    },
}

SCHEMAS: dict[str, Schema] = {"Error": ERROR, "Quota": QUOTA}

_DESCRIPTIONS = {
    400: "Bad request: a malformed body or parameter, an unknown field, or a value out of range",
    401: "Missing or invalid credentials",
    403: "Authenticated, but this caller may not do this",
    404: "No such object (or it belongs to another account)",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    429: "Quota used up or rate limited (with Retry-After)",
    502: "An upstream service (the model, the Graph API) failed; nothing was charged or stored",
    503: "Not configured (ADMIN_JWT_SECRET, OPENAI_API_KEY, SECRETS_KEY, META_APP_SECRET), or the database is busy",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, **extra: Any) -> Schema:
    """A closed object: every listed property, the first group required, nothing else allowed."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": {**required, **(optional or {})},
        **extra,
    }


def text(max_length: int, **extra: Any) -> Schema:
    """A string field as gateway/validation.py takes it: trimmed, not blank, bounded."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": r"\S", **extra}


def credential(max_length: int, **extra: Any) -> Schema:
    """A token or secret as gateway/validation.py takes it: visible ASCII, no spaces, write-only."""
    schema: Schema = {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": CREDENTIAL_PATTERN}
    return {**schema, "writeOnly": True, **extra}


def nullable(schema: Schema) -> Schema:
    """The same schema, also allowing null (OpenAPI 3.1 spells it as a type array)."""
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def json_content(schema: Schema) -> dict[str, Schema]:
    return {"application/json": {"schema": schema}}


def json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": json_content(schema)}


def ok(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": json_content(schema)}


def no_content(description: str = "Done; no body") -> Schema:
    return {"description": description}


def errors(*statuses: int) -> dict[str, Schema]:
    """Error answers, each with the envelope; 429 and 503 may carry Retry-After."""
    answers: dict[str, Schema] = {}
    for status in statuses:
        answer: Schema = {"description": _DESCRIPTIONS[status], "content": json_content(ref("Error"))}
        if status in (429, 503):
            answer["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
        answers[str(status)] = answer
    return answers


def path_param(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def query_param(name: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def jwt_operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    errors_: tuple[int, ...] = (),
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    description: str | None = None,
    tags: tuple[str, ...] = (),
) -> Schema:
    """An operation behind the admin/dashboard JWT: 401 (bad token) and 503 (secret unset, database busy)
    are always possible, plus the given `errors_`."""
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "security": JWT,
        "responses": {**responses, **errors(*sorted({401, 503, *errors_}))},
    }
    if description:
        operation["description"] = description
    if tags:
        operation["tags"] = list(tags)
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation
