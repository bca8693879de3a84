"""`POST /api/ai/feedback`: rate one bot reply up or down, with an optional comment.

Two kinds of caller, told apart by the bearer credential's shape: an account API key (`nxk_...`, the prefix every
key has; see core/storage/api_keys.py) is the business's own app letting its customer rate a reply it got from
the relay API (whose answer carries `message_id`); anything else is taken as a dashboard JWT of an owner or the
operator (viewers are read-only), which runs the same middlewares as the JWT surfaces (the token, then the audit
trail).
"""

from api.feedback.handlers import OPERATIONS, Feedbacks, jwt_unless_api_key
from api.operations import Surface

# On the main router, not a sub-application: /api/ai/ holds nothing else, and an unknown path or method there is
# answered 404 or 405 like anywhere, not 401 by the token check.
SURFACE = Surface("feedback", (OPERATIONS,), prefix="/api/ai", middlewares=(jwt_unless_api_key,), wrap_routes=True)

__all__ = ["SURFACE", "Feedbacks"]
