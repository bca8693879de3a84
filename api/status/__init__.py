"""The status API (/api/status): the model endpoint's reachability and each channel's health."""

from api.audit_trail import audit_mutations
from api.jwt_auth import require_token
from api.operations import Surface
from api.status.handlers import OPERATIONS, Status

SURFACE = Surface("status", (OPERATIONS,), prefix="/api/status", middlewares=(require_token, audit_mutations))

__all__ = ["SURFACE", "Status"]
