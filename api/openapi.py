"""The OpenAPI 3.1 document, generated from the surfaces' operation tables and their pydantic models.

Nothing here describes an operation by hand: paths, methods, parameters, bodies and answers come from the tables
(api/operations.py) and the models their handlers are annotated with; the error answers an operation may give
come from its security, its path and its declared error statuses. Bounds that are settings (the longest relay
message) are filled in from the same `Limits` the bodies are checked against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from api.bodies import JsonOrUpload, Limits
from api.operations import Operation, Surface
from core.fields import LIMIT_KEY

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
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
ERROR_SCHEMA: dict[str, Any] = {
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

ERROR_DESCRIPTIONS = {
    400: "Bad request: a malformed body or parameter, an unknown field, or a value out of range",
    401: "Missing or invalid credentials",
    403: "Authenticated, but this caller may not do this",
    404: "No such object (or it belongs to another account)",
    408: "The request body did not arrive in time (BODY_READ_TIMEOUT_SECONDS); the connection is closed",
    409: "Conflicts with the current state, or a limit of the account would be passed",
    413: "The request body is too large",
    415: "The uploaded file is not of a kind this route reads",
    422: "The body is well formed, but its content cannot be used (a file that cannot be read); nothing is stored",
    429: "Quota used up or rate limited (with Retry-After)",
    502: "An upstream service (the model, the Graph API) failed; nothing was charged or stored",
    503: "Not configured (ADMIN_JWT_SECRET, OPENAI_API_KEY, SECRETS_KEY, META_APP_SECRET), or the database is busy",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}

# Path parameters, described once for every operation that has them.
PATH_PARAMETERS = {
    "account_id": "an account id; another account's answers 404 to an owner or viewer",
    "key_id": "an API key id of this account",
    "bot_id": "a bot id; another account's answers 404 to an owner or viewer",
    "channel_id": "a channel id; another account's answers 404 to an owner or viewer",
    "plan_id": "a plan id",
    "contact_id": "a contact id (a conversation); another account's answers 404 to an owner or viewer",
}


class _Schemas(GenerateJsonSchema):
    """Pydantic's JSON schemas without a title on every property (the property's name says it)."""

    def field_title_should_be_set(self, schema: object) -> bool:
        return False


def build_document(
    surfaces: Sequence[Surface], *, version: str, limits: Limits, public_base_url: str | None = None
) -> dict[str, Any]:
    operations = [(path, op) for surface in surfaces for path, op in surface.operations()]
    _refuse_duplicates(operations)
    refs, schemas = _component_schemas(op for _, op in operations)
    paths: dict[str, dict[str, Any]] = {}
    for path, op in operations:
        paths.setdefault(path, {})[op.method.lower()] = _operation(path, op, refs)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Nexus Flow gateway",
            "version": version,
            "summary": "AI assistant gateway for Messenger, Instagram and WhatsApp, with quotas and cost accounting",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {"schemas": {"Error": ERROR_SCHEMA, **schemas}, "securitySchemes": SECURITY_SCHEMES},
    }
    if public_base_url:
        document["servers"] = [{"url": public_base_url.rstrip("/")}]
    _apply_limits(document, limits)
    return document


class DuplicateOperation(ValueError):
    """Two tables register the same method and path."""


def _refuse_duplicates(operations: Sequence[tuple[str, Operation]]) -> None:
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for path, op in operations:
        if (op.method, path) in seen:
            raise DuplicateOperation(f"{op.method} {path} is registered twice")
        if op.operation_id in ids:
            raise DuplicateOperation(f"operation id {op.operation_id} is used twice ({op.method} {path})")
        seen.add((op.method, path))
        ids.add(op.operation_id)


def _component_schemas(
    operations: Iterable[Operation],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in operations:
        for given in op.inputs:
            if given.kind != "query":
                wanted[(given.model, "validation")] = None
        if op.response is not None:
            wanted[(op.response, "serialization")] = None
        for answer in op.answers.values():
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF, schema_generator=_Schemas)
    return {(model, mode): ref for (model, mode), ref in refs.items() if issubclass(model, BaseModel)}, _clean(
        top.get("$defs", {})
    )


def _operation(
    path: str, op: Operation, refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{scheme: []} for scheme in op.security],
    }
    if op.description:
        doc["description"] = op.description
    parameters = [_path_parameter(name, op) for name in op.path_params]
    query = op.input("query")
    if query is not None:
        parameters += _query_parameters(query.model)
    if parameters:
        doc["parameters"] = parameters
    body = next((i for i in op.inputs if i.kind in ("body", "form")), None)
    if body is not None:
        content_type = "application/json" if body.kind == "body" else "application/x-www-form-urlencoded"
        content: dict[str, Any] = {content_type: {"schema": refs[(body.model, "validation")]}}
        if issubclass(body.wrapper, JsonOrUpload):
            content["multipart/form-data"] = {"schema": UPLOAD_SCHEMA}
        doc["requestBody"] = {"required": body.required, "content": content}
    elif op.request_content is not None:
        doc["requestBody"] = {"required": True, "content": {op.request_content: {"schema": {}}}}
    doc["responses"] = _responses(op, refs)
    return doc


# A file upload's form (api/bodies.py JsonOrUpload): the file, and optionally a title for it.
UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the file; one per request"},
        "title": {"type": "string", "description": "the document's title (default: the file's own, or its name)"},
    },
}


def _path_parameter(name: str, op: Operation) -> dict[str, Any]:
    description = op.parameters.get(name) or PATH_PARAMETERS.get(name) or f"the {name.replace('_', ' ')}"
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = _clean(model.model_json_schema(ref_template=REF, schema_generator=_Schemas))
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in properties.items():
        prop = dict(prop)
        description = prop.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _responses(op: Operation, refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, description in op.success.items():
        answer: dict[str, Any] = {"description": description}
        if op.response is not None and status != 204:
            answer["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
        responses[str(status)] = answer
    for status, documented in op.answers.items():
        answer = {"description": documented.description}
        if documented.model is not None:
            answer["content"] = {"application/json": {"schema": refs[(documented.model, "serialization")]}}
        elif documented.content:
            answer["content"] = {kind: {"schema": dict(schema)} for kind, schema in documented.content.items()}
        if documented.headers:
            answer["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in documented.headers.items()
            }
        responses[str(status)] = answer
    for status in _error_statuses(op):
        if str(status) in responses:
            continue
        answer = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        responses[str(status)] = answer
    return {code: responses[code] for code in sorted(responses)}


def _error_statuses(op: Operation) -> list[int]:
    """The declared ones, and what the operation's shape implies: a credential can be wrong (401), an id unknown
    (404, in the path or as `account_id`), a body too large or malformed (413, 400), the JWT API unconfigured or the
    database busy (503)."""
    statuses = set(op.errors)
    if op.security:
        statuses.add(401)
    if "bearerJwt" in op.security:
        statuses.add(503)
    if op.path_params:
        statuses.add(404)
    if any(i.kind in ("body", "form") for i in op.inputs):
        statuses |= {400, 408, 413}
    if op.request_content is not None:
        statuses |= {408, 413}
    query = op.input("query")
    if query is not None:
        statuses.add(400)
        if "account_id" in query.model.model_fields:
            statuses.add(404)  # an unknown account, or another account's for an owner or viewer
    return sorted(statuses)


def _apply_limits(node: Any, limits: Limits) -> None:
    """Replace each configured bound's placeholder (core/fields.py LIMIT_KEY) with its value."""
    if isinstance(node, dict):
        name = node.pop(LIMIT_KEY, None)
        if isinstance(name, str):
            node["maxLength"] = getattr(limits, name)
        for value in node.values():
            _apply_limits(value, limits)
    elif isinstance(node, list):
        for value in node:
            _apply_limits(value, limits)


def _clean(node: Any) -> Any:
    """Drop `"default": null` where null is not a value the field takes: an update body's fields default to "not
    sent", which is not null (and JSON Schema would then describe a default the schema itself refuses)."""
    if isinstance(node, dict):
        cleaned = {key: _clean(value) for key, value in node.items()}
        if cleaned.get("default", 0) is None and not _nullable(cleaned):
            del cleaned["default"]
        return cleaned
    if isinstance(node, list):
        return [_clean(value) for value in node]
    return node


def _nullable(schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(isinstance(s, Mapping) and _nullable(s) for s in schema.get("anyOf", ()))
