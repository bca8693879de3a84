"""Service endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from api.operations import Surface
from api.service.handlers import OPERATIONS, Service

SURFACE = Surface("service", (OPERATIONS,))

__all__ = ["SURFACE", "Service"]
