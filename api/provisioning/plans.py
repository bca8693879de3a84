"""Plans: the operator's catalogue. Anyone signed in may read it; only the operator changes it."""

from __future__ import annotations

from aiohttp import web

from admin.access import require_admin
from api.bodies import Body, validate
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.provisioning.models import PlanChanges, PlanList
from core.models import Plan, PlanSettings
from core.storage.plans import PlanStore


class Plans:
    def __init__(self, plans: PlanStore) -> None:
        self._plans = plans

    async def create_plan(self, request: web.Request, body: Body[PlanSettings]) -> Plan:
        require_admin(principal(request))
        return await self._plans.create(await body.parse())

    async def list_plans(self, request: web.Request) -> PlanList:
        return PlanList(plans=await self._plans.list())

    async def get_plan(self, request: web.Request) -> Plan:
        return await self._plans.get(request.match_info["plan_id"])

    async def update_plan(self, request: web.Request, body: Body[PlanChanges]) -> Plan:
        require_admin(principal(request))
        current = await self._plans.get(request.match_info["plan_id"])
        changes = (await body.parse()).sent()
        # The plan as it would be, checked whole: the default model must stay one of the models.
        validate(PlanSettings, {**current.model_dump(include=set(PlanSettings.model_fields)), **changes}, None)
        return await self._plans.update(current.id, changes)

    async def delete_plan(self, request: web.Request) -> None:
        require_admin(principal(request))
        await self._plans.delete(request.match_info["plan_id"])


OPERATIONS = OperationTable(Plans, tag="admin", security=JWT)
OPERATIONS.post("/plans", Plans.create_plan, summary="Create a plan", description="Admin only.", errors=(403, 409))
OPERATIONS.get("/plans", Plans.list_plans, summary="Every plan", description="Any signed-in role.")
OPERATIONS.get("/plans/{plan_id}", Plans.get_plan, summary="One plan", description="Any signed-in role.")
OPERATIONS.patch(
    "/plans/{plan_id}",
    Plans.update_plan,
    summary="Change a plan",
    description="Admin only. Only the fields sent change; the default model must stay one of the models.",
    errors=(403, 409),
)
OPERATIONS.delete(
    "/plans/{plan_id}",
    Plans.delete_plan,
    summary="Delete a plan no account is on",
    description="Admin only; 409 while accounts are on it.",
    errors=(403, 409),
)
