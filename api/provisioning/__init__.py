"""The provisioning API under /api/admin: plans, accounts, API keys, credits, bots, channels, knowledge,
notification endpoints, audit, exports.

A JWT surface: every route needs an operator, owner or viewer token, and its mutations are audited.
"""

from api.audit_trail import audit_mutations
from api.jwt_auth import require_token
from api.operations import Surface
from api.provisioning import (
    accounts,
    api_keys,
    audit,
    bots,
    channels,
    credits,
    exports,
    knowledge,
    notifications,
    plans,
)

# Order matters: the audit middleware runs inside require_token, so it knows who is acting.
SURFACE = Surface(
    "provisioning",
    (
        plans.OPERATIONS,
        accounts.OPERATIONS,
        api_keys.OPERATIONS,
        credits.OPERATIONS,
        bots.OPERATIONS,
        channels.OPERATIONS,
        knowledge.OPERATIONS,
        notifications.OPERATIONS,
        audit.OPERATIONS,
        exports.OPERATIONS,
    ),
    prefix="/api/admin",
    middlewares=(require_token, audit_mutations),
)
