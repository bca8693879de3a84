"""Service endpoints: liveness, readiness and Prometheus metrics (every process, workers included), and the
OpenAPI document (processes that serve the API)."""

from api.operations import Surface
from api.service import document, handlers
from api.service.document import Document
from api.service.handlers import Probes

PROBES = Surface("probes", (handlers.OPERATIONS,))
DOCUMENT = Surface("document", (document.OPERATIONS,))

__all__ = ["DOCUMENT", "PROBES", "Document", "Probes"]
