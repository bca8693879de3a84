"""The dashboard API: reports (/api/dashboard/metrics, /usage, /bots), the activity feed, and the caller's quota
(/api/user/quota). JWT surfaces: any role may read, owners and viewers their own account only."""

from api.audit_trail import audit_mutations
from api.dashboard import activity, reports, user_quota
from api.jwt_auth import require_token
from api.operations import Surface

SURFACES = (
    Surface(
        "dashboard",
        (reports.OPERATIONS, activity.OPERATIONS),
        prefix="/api/dashboard",
        middlewares=(require_token, audit_mutations),
    ),
    Surface("user", (user_quota.OPERATIONS,), prefix="/api/user", middlewares=(require_token, audit_mutations)),
)
