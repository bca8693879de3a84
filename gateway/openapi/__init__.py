"""The OpenAPI 3.1 description of the service, assembled from one fragment per area (see document.py)."""

from gateway.openapi.document import build_document

__all__ = ["build_document"]
