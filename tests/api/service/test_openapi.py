"""The OpenAPI document at /api/openapi.json: valid OpenAPI 3.1, public, and in step with the routes the app serves.

The route comparison walks the real application (sub-applications included), so adding a route without
documenting it, or documenting one that is not served, fails here with the operation named.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import OpenAPIV31SpecValidator

from api.bodies import Limits
from api.openapi import DuplicateOperation, build_document
from api.operations import OperationTable, Surface
from api.service.handlers import Probes
from gateway import surfaces
from gateway.app import create_app
from gateway.settings import Settings
from gateway.surfaces import SURFACES, openapi_document
from tests.conftest import MakeClient
from tests.support.harness import expect

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path) of every route of `app` and of the sub-applications mounted in it, at their full paths."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        subapp = resource.get_info().get("app")
        if subapp is not None:
            # A mounted sub-application's resources already carry its prefix in their canonical path.
            found |= served_operations(subapp)
            continue
        for route in resource:
            if route.method != "HEAD":  # aiohttp adds HEAD to every GET by itself
                found.add((route.method, resource.canonical))
    return found


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def test_the_document_is_valid_openapi_3_1_and_public(client: TestClient) -> None:
    response = await client.get("/api/openapi.json")  # no credentials: the document is public
    document = await expect(response, 200)
    assert response.content_type == "application/json"
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()  # raises with the offending location
    assert set(document["components"]["securitySchemes"]) == {"bearerJwt", "apiKey", "metaSignature"}


async def test_every_served_route_is_documented_and_every_documented_one_is_served(settings: Settings) -> None:
    # The web dashboard's pages (web/) are for people in a browser, not part of the API the document describes.
    served = {
        (method, path) for method, path in served_operations(create_app(settings)) if not path.startswith("/dashboard")
    }
    documented = documented_operations(openapi_document(settings))
    undocumented = sorted(f"{method} {path}" for method, path in served - documented)
    unserved = sorted(f"{method} {path}" for method, path in documented - served)
    assert not undocumented, f"routes without documentation (add them to an operation table): {undocumented}"
    assert not unserved, f"documented operations no route serves: {unserved}"


def test_the_route_walk_sees_sub_applications_and_new_routes(settings: Settings) -> None:
    """The comparison above is only as good as this walk: it must find mounted sub-apps and any added route."""
    app = create_app(settings)

    async def extra(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/undocumented", extra)
    served = served_operations(app)
    assert ("GET", "/api/admin/plans") in served and ("DELETE", "/api/admin/bots/{bot_id}") in served
    assert ("GET", "/api/undocumented") in served and ("HEAD", "/healthz") not in served
    assert ("GET", "/api/undocumented") not in documented_operations(openapi_document(settings))


def test_every_operation_says_who_may_call_it_and_how_it_fails() -> None:
    document = openapi_document(Settings())
    schemes = set(document["components"]["securitySchemes"])
    ids = [operation.get("operationId") for _, _, operation in operations(document)]
    assert None not in ids and len(ids) == len(set(ids)), "every operation needs a unique operationId"
    for method, path, operation in operations(document):
        name = f"{method} {path}"
        assert "security" in operation, f"{name}: say explicitly who may call it ([] for public)"
        used = {scheme for requirement in operation["security"] for scheme in requirement}
        assert used <= schemes, f"{name}: unknown security scheme {used - schemes}"
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), f"{name}: no success answer documented"
        if used & {"bearerJwt", "apiKey", "metaSignature"}:
            assert "401" in responses, f"{name}: a credential can be missing or wrong: document 401"
        if "{" in path:
            assert "404" in responses, f"{name}: an unknown id is a 404: document it"
        for code, answer in responses.items():
            # The one exception: readiness answers 503 with its report (which check failed), not an error.
            if (method, path, code) == ("GET", "/readyz", "503"):
                continue
            if code[0] in "45" and "content" in answer and "application/json" in answer["content"]:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{name} {code}: use the error envelope"


def test_settings_shape_the_document() -> None:
    document = openapi_document(replace(Settings(), max_message_chars=1234, public_base_url="https://bots.example/"))
    assert document["components"]["schemas"]["RelayRequest"]["properties"]["message"]["maxLength"] == 1234
    assert document["servers"] == [{"url": "https://bots.example"}]
    assert "servers" not in openapi_document(Settings())


def test_two_tables_registering_the_same_operation_is_an_error() -> None:
    clash = OperationTable(Probes, tag="service")
    clash.get("/healthz", Probes.healthz, summary="again", operation_id="healthzAgain")
    limits = Limits(max_body_bytes=1024, max_message_chars=10, body_read_seconds=1)
    with pytest.raises(DuplicateOperation, match="GET /healthz"):
        build_document((*SURFACES, Surface("clash", (clash,))), version="0", limits=limits)
    twin = OperationTable(Probes, tag="service")
    twin.get("/healthz-twin", Probes.healthz, summary="again", operation_id="healthz")
    with pytest.raises(DuplicateOperation, match="operation id healthz"):
        build_document((*SURFACES, Surface("twin", (twin,))), version="0", limits=limits)


async def test_the_document_is_built_once_per_app(
    make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Settings] = []

    def counting_build(given: Settings) -> dict[str, object]:
        builds.append(given)
        return openapi_document(given)

    monkeypatch.setattr(surfaces, "openapi_document", counting_build)
    client = await make_client(settings)
    bodies = [await (await client.get("/api/openapi.json")).read() for _ in range(3)]
    assert builds == [settings] and bodies[0] == bodies[1] == bodies[2]


def test_every_field_an_answer_always_carries_is_documented_as_required() -> None:
    """Generated clients type a field that is not required as optional: a bot's model or temperature is always in
    the answer (null or not), so it is required; only the admin-only base_url of the OpenAI status may be absent."""
    schemas = openapi_document(Settings())["components"]["schemas"]
    for name in ("Bot", "Plan", "Account", "Channel", "RelayAnswer", "DashboardMetrics"):
        schema = schemas[name]
        assert set(schema["required"]) == set(schema["properties"]), name
    status = schemas["OpenAIStatus"]
    assert set(status["properties"]) - set(status["required"]) == {"base_url"}
    assert status["properties"]["base_url"].get("anyOf", [{}])[0].get("type") == "string"
