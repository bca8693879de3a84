"""The conversations API (/api/conversations): the inbox, one conversation, takeover, erasure."""

from api.audit_trail import audit_mutations
from api.conversations.handlers import OPERATIONS, Conversations
from api.jwt_auth import require_token
from api.operations import Surface

SURFACE = Surface(
    "conversations", (OPERATIONS,), prefix="/api/conversations", middlewares=(require_token, audit_mutations)
)

__all__ = ["SURFACE", "Conversations"]
