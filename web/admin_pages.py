"""The operator's pages: accounts (with their quota, credits and people), plans, and the people who sign in.
Admins only (anyone else: 403); each reads and changes through the API's handler objects, and people through the
same rules as `python -m gateway user add` (core/people.py).

    GET  /dashboard/admin/accounts, POST                    every account; add one
    GET  /dashboard/admin/accounts/{account_id}             one account: quota, credits, people, its pages
    POST /dashboard/admin/accounts/{account_id}             change its name, email or plan
    POST /dashboard/admin/accounts/{account_id}/lock        lock or unlock it (locked=1|0)
    POST /dashboard/admin/accounts/{account_id}/credits     add a credit entry
    GET  /dashboard/admin/plans, POST                       every plan; add one
    GET  /dashboard/admin/plans/{plan_id}, POST             one plan; change it
    POST /dashboard/admin/plans/{plan_id}/delete            delete it (refused while accounts are on it)
    GET  /dashboard/admin/people, POST                      everyone who signs in; add a person
    POST /dashboard/admin/people/{person_id}/remove         remove a person (their sessions end)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from admin.access import require_admin
from api.bodies import validate
from api.errors import ApiError, bad_request
from api.jwt_auth import principal
from api.provisioning.accounts import Accounts
from api.provisioning.credits import Credits
from api.provisioning.models import AccountChanges, CreditRequest, LockRequest, PlanChanges
from api.provisioning.plans import Plans
from core.errors import Conflict, GatewayError, NotFound
from core.models import Account, AccountSettings, PlanSettings
from core.people import ROLES, People
from web.forms import GivenBody, Kind, form_values
from web.rendering import Renderer, checked_form, refusal, session_of

PLAN_FIELDS: dict[str, Kind] = {
    "name": "text",
    "monthly_token_limit": "whole",
    "models": "names",
    "default_model": "text",
    "overage_percent": "whole",
    "messages_per_minute": "optional_whole",
}
ACCOUNT_FIELDS: dict[str, Kind] = {"name": "text", "plan_id": "text", "email": "optional_text"}
CREDIT_KINDS = (("grant", "Grant"), ("purchase", "Purchase"), ("refund", "Refund"), ("adjustment", "Adjustment"))


@dataclass(frozen=True, slots=True)
class AdminPageDeps:
    accounts: Accounts
    plans: Plans
    credits: Credits
    people: People


class AdminPages:
    def __init__(self, deps: AdminPageDeps, renderer: Renderer) -> None:
        self._d = deps
        self._r = renderer

    # --- accounts -----------------------------------------------------------------------------------------------

    async def accounts(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        require_admin(principal(request))
        listed = await self._d.accounts.list_accounts(request)
        plans = {p.id: p for p in (await self._d.plans.list_plans(request)).plans}
        return self._r.page(
            "admin_accounts.html",
            session_of(request),
            section="admin",
            status=shown.get("status", 200),
            accounts=listed.accounts,
            plans=plans,
            error=shown.get("error"),
            typed=shown.get("typed", {}),
        )

    async def create_account(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        values = form_values(form, ACCOUNT_FIELDS)
        try:
            settings = validate(AccountSettings, values, None)
            account = await self._d.accounts.create_account(request, GivenBody(request, settings))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.accounts(request, status=refused.status, error=refused.message, typed=values)
        raise web.HTTPSeeOther(f"/dashboard/admin/accounts/{account.id}")

    async def account(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        require_admin(principal(request))
        detail = await self._d.accounts.get_account(request)
        ledger = await self._d.credits.list_credits(request)
        plans = (await self._d.plans.list_plans(request)).plans
        plan = next((p for p in plans if p.id == detail.plan_id), None)
        return self._r.page(
            "admin_account.html",
            session_of(request),
            section="admin",
            status=shown.get("status", 200),
            account=detail,
            plan=plan,
            plans=plans,
            settings=shown.get("settings") or _account_settings(detail),
            original=shown.get("original") or _account_settings(detail),
            settings_error=shown.get("settings_error"),
            ledger=ledger,
            people=await self._d.people.store.list(account_id=detail.id),
            credit_kinds=CREDIT_KINDS,
            error=shown.get("error"),
            typed=shown.get("typed", {}),
            done=request.query.get("done"),
        )

    async def update_account(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        values = form_values(form, ACCOUNT_FIELDS)
        # Only what the admin changed on the page (the form carries what it showed): a rename from a page opened
        # before someone moved the account to another plan does not move it back.
        shown = form_values({name: form.get(f"was_{name}", "") for name in ACCOUNT_FIELDS}, ACCOUNT_FIELDS)
        changed = {name: value for name, value in values.items() if value != shown.get(name)}
        where = f"/dashboard/admin/accounts/{request.match_info['account_id']}"
        if not changed:
            raise web.HTTPSeeOther(f"{where}?done=unchanged")
        try:
            changes = validate(AccountChanges, changed, None)
            await self._d.accounts.update_account(request, GivenBody(request, changes))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            typed = {name: form.get(name, "")[:500] for name in ACCOUNT_FIELDS}
            original = {name: form.get(f"was_{name}", "")[:500] for name in ACCOUNT_FIELDS}
            # A plan that is not there (deleted meanwhile) is a refused form on a page that is: 400, not 404 (a
            # missing account is still a 404: the page itself cannot be shown).
            status = 400 if refused.status == 404 else refused.status
            return await self.account(
                request, status=status, settings_error=refused.message, settings=typed, original=original
            )
        raise web.HTTPSeeOther(f"{where}?done=saved")

    async def lock(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        if form.get("locked") not in ("0", "1"):
            raise bad_request("The form must say whether to lock (1) or unlock (0) the account.")
        locked = LockRequest(locked=form.get("locked") == "1")
        await self._d.accounts.lock_account(request, GivenBody(request, locked))
        done = "locked" if locked.locked else "unlocked"
        raise web.HTTPSeeOther(f"/dashboard/admin/accounts/{request.match_info['account_id']}?done={done}")

    async def add_credits(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        values = form_values(form, {"tokens": "whole", "kind": "text", "note": "optional_text"})
        try:
            entry = validate(CreditRequest, values, None)
            await self._d.credits.add_credits(request, GivenBody(request, entry))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            typed = {name: form.get(name, "")[:500] for name in ("tokens", "kind", "note")}
            return await self.account(request, status=refused.status, error=refused.message, typed=typed)
        raise web.HTTPSeeOther(f"/dashboard/admin/accounts/{request.match_info['account_id']}?done=credits")

    # --- plans --------------------------------------------------------------------------------------------------

    async def plans(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        require_admin(principal(request))
        listed = await self._d.plans.list_plans(request)
        return self._r.page(
            "admin_plans.html",
            session_of(request),
            section="admin",
            status=shown.get("status", 200),
            plans=listed.plans,
            done=request.query.get("done"),
            error=shown.get("error"),
            typed=shown.get("typed", {}),
        )

    async def create_plan(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        values = form_values(form, PLAN_FIELDS)
        try:
            settings = validate(PlanSettings, values, None)
            await self._d.plans.create_plan(request, GivenBody(request, settings))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.plans(request, status=refused.status, error=refused.message, typed=_typed_plan(values))
        raise web.HTTPSeeOther("/dashboard/admin/plans?done=added")

    async def plan(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        require_admin(principal(request))
        plan = await self._d.plans.get_plan(request)
        on_it = [a for a in (await self._d.accounts.list_accounts(request)).accounts if a.plan_id == plan.id]
        current = {**plan.model_dump(), "models": ", ".join(plan.models)}
        return self._r.page(
            "admin_plan.html",
            session_of(request),
            section="admin",
            status=shown.get("status", 200),
            plan=plan,
            accounts=on_it,
            typed=shown.get("typed") or current,
            error=shown.get("error"),
            done=request.query.get("done"),
        )

    async def update_plan(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        values = form_values(form, PLAN_FIELDS)
        try:
            changes = validate(PlanChanges, values, None)
            await self._d.plans.update_plan(request, GivenBody(request, changes))
        except (ApiError, GatewayError) as exc:
            refused = refusal(exc)
            return await self.plan(request, status=refused.status, error=refused.message, typed=_typed_plan(values))
        raise web.HTTPSeeOther(f"/dashboard/admin/plans/{request.match_info['plan_id']}?done=saved")

    async def delete_plan(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        await checked_form(request)
        try:
            await self._d.plans.delete_plan(request)
        except Conflict as exc:  # accounts are on it: said on its page, which lists them
            return await self.plan(request, status=409, error=_sentence(str(exc)))
        raise web.HTTPSeeOther("/dashboard/admin/plans?done=deleted")

    # --- people -------------------------------------------------------------------------------------------------

    async def people(self, request: web.Request, **shown: Any) -> web.StreamResponse:
        require_admin(principal(request))
        accounts = {a.id: a for a in (await self._d.accounts.list_accounts(request)).accounts}
        return self._r.page(
            "admin_people.html",
            session_of(request),
            section="admin",
            status=shown.get("status", 200),
            people=await self._d.people.store.list(),
            accounts=accounts,
            roles=ROLES,
            error=shown.get("error"),
            typed=shown.get("typed", {}),
            done=request.query.get("done"),
        )

    async def add_person(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        form = await checked_form(request)
        email, role = form.get("email", "").strip(), form.get("role", "")
        account_id = form.get("account_id", "").strip() or None
        typed = {"email": email, "role": role, "account_id": account_id or ""}
        try:
            await self._d.people.add(email, form.get("password", ""), role, None if role == "admin" else account_id)
        except (ValueError, Conflict, NotFound) as exc:
            words = f"There is no account {account_id}." if isinstance(exc, NotFound) else _sentence(str(exc))
            status = 409 if isinstance(exc, Conflict) else 400
            return await self.people(request, status=status, error=words, typed=typed)
        raise web.HTTPSeeOther("/dashboard/admin/people?done=added")

    async def remove_person(self, request: web.Request) -> web.StreamResponse:
        require_admin(principal(request))
        await checked_form(request)
        person_id = request.match_info["person_id"]
        if person_id == session_of(request).person.id:
            return await self.people(request, status=409, error="You cannot remove yourself; ask another admin.")
        await self._d.people.store.remove(person_id)
        raise web.HTTPSeeOther("/dashboard/admin/people?done=removed")


def _account_settings(account: Account) -> dict[str, Any]:
    return {"name": account.name, "plan_id": account.plan_id, "email": account.email}


def _typed_plan(values: dict[str, Any]) -> dict[str, Any]:
    """A plan form's values as typed again: its models as one line."""
    return {**values, "models": ", ".join(values.get("models") or [])}


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:] + ("" if words.endswith(".") else ".")
