"""Assembles the OpenAPI 3.1 document from the fragments: one `paths_<area>` module per area of the service.

A fragment exports `PATHS` (path items keyed by the aiohttp path) and `SCHEMAS` (component schemas, names
prefixed by area). Two fragments describing the same operation or the same schema name is a bug, so it raises
rather than letting one silently win.
"""

from __future__ import annotations

import copy
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from gateway.openapi import (
    common,
    paths_admin,
    paths_conversations,
    paths_core,
    paths_dashboard,
    paths_operations,
)
from gateway.settings import Settings

# Every area of the service, one fragment each.
FRAGMENTS: tuple[ModuleType, ...] = (
    paths_core,
    paths_admin,
    paths_dashboard,
    paths_conversations,
    paths_operations,
)

OPENAPI_VERSION = "3.1.0"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class DocumentError(ValueError):
    """Two fragments claim the same operation or schema name."""


def build_document(settings: Settings, fragments: tuple[ModuleType, ...] = FRAGMENTS) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = dict(common.SCHEMAS)
    for fragment in fragments:
        for path, item in fragment.PATHS.items():
            merged = paths.setdefault(path, {})
            for method, operation in item.items():
                if method in _METHODS and method in merged:
                    raise DocumentError(f"{method.upper()} {path} is described twice ({fragment.__name__})")
                merged[method] = operation
        for name, schema in fragment.SCHEMAS.items():
            if name in schemas:
                raise DocumentError(f"schema {name} is defined twice ({fragment.__name__})")
            schemas[name] = schema
    # Fragments are module constants: the document gets its own copy, so settings applied below stay here.
    paths, schemas = copy.deepcopy(paths), copy.deepcopy(schemas)
    schemas["CoreRelayRequest"]["properties"]["message"]["maxLength"] = settings.max_message_chars
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Nexus Flow gateway",
            "version": _version(),
            "summary": "AI assistant gateway for Messenger, Instagram and WhatsApp, with quotas and cost accounting",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {"schemas": schemas, "securitySchemes": common.SECURITY_SCHEMES},
    }
    if settings.public_base_url:
        document["servers"] = [{"url": settings.public_base_url.rstrip("/")}]
    return document


def _version() -> str:
    try:
        return version("nexus-gateway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
