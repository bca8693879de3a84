"""The operator's pages: plans, accounts, credits and people, made and changed as through the API (and `user
add`), by admins only."""

from __future__ import annotations

import html
import re

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support.harness import auth, expect, provision
from tests.support.people import PASSWORD, add_person, form_token, sign_in


async def _page(client: TestClient, url: str, status: int = 200) -> str:
    answer = await client.get(url)
    text = await answer.text()
    assert answer.status == status, text[:2000]
    return text


async def _post(client: TestClient, url: str, fields: dict[str, str], status: int = 303) -> str:
    answer = await client.post(url, data=fields, allow_redirects=False)
    text = html.unescape(await answer.text())
    assert answer.status == status, text[:3000]
    return answer.headers.get("Location", "") if status == 303 else text


async def test_an_admin_sets_up_a_business_from_the_pages(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings)
    await add_person(settings, "root@gateway.example", "admin")
    home = await sign_in(client, "root@gateway.example")
    assert 'href="/dashboard/admin/accounts"' in home
    csrf = form_token(home)

    # A plan: a refusal in words keeps what was typed; then a good one.
    plan = {
        "csrf": csrf,
        "name": "Small",
        "monthly_token_limit": "50000",
        "models": "gpt-4o-mini, gpt-4.1",
        "default_model": "gpt-5",
        "overage_percent": "10",
        "messages_per_minute": "",
    }
    refused = await _post(client, "/dashboard/admin/plans", plan, status=400)
    assert "'default_model' must be one of 'models'" in refused and 'value="gpt-4o-mini, gpt-4.1"' in refused
    await _post(client, "/dashboard/admin/plans", {**plan, "default_model": "gpt-4o-mini"})
    [made] = (await expect(await client.get("/api/admin/plans", headers=auth()), 200))["plans"]
    assert (made["models"], made["overage_percent"], made["messages_per_minute"]) == (
        ["gpt-4o-mini", "gpt-4.1"],
        10,
        None,
    )

    # An account on it, credits, and its owner.
    where = await _post(
        client, "/dashboard/admin/accounts", {"csrf": csrf, "name": "Bakery", "plan_id": made["id"], "email": ""}
    )
    account_id = where.rsplit("/", 1)[1]
    await _post(client, f"{where}/credits", {"csrf": csrf, "tokens": "5000", "kind": "grant", "note": "welcome"})
    wrong = await _post(client, f"{where}/credits", {"csrf": csrf, "tokens": "-5", "kind": "grant"}, status=400)
    assert "a grant adds tokens" in wrong
    ledger = await expect(await client.get(f"/api/admin/accounts/{account_id}/credits", headers=auth()), 200)
    page = await _page(client, where)
    assert ledger["balance_tokens"] == 5000 and 'data-figure="credit-balance">5,000<' in page

    people = "/dashboard/admin/people"
    person = {"csrf": csrf, "email": "anna@bakery.example", "role": "owner", "account_id": account_id}
    weak = await _post(client, people, {**person, "password": "short"}, status=400)
    assert "A password needs at least 12 characters." in weak and 'value="anna@bakery.example"' in weak
    await _post(client, people, {**person, "password": PASSWORD})
    again = await _post(client, people, {**person, "password": PASSWORD}, status=409)
    assert "exists already" in again

    # The owner signs in (another browser); locking the account ends that and stops sign-in.
    owner = await make_client(settings)
    await sign_in(owner, "anna@bakery.example")
    assert (await owner.get("/dashboard/conversations")).status == 200
    await _post(client, f"{where}/lock", {"csrf": csrf, "locked": "1"})
    assert (await expect(await client.get(f"/api/admin/accounts/{account_id}", headers=auth()), 200))["locked"]
    assert (await owner.get("/dashboard/conversations", allow_redirects=False)).status == 303
    await _post(client, f"{where}/lock", {"csrf": csrf, "locked": "0"})

    # Removing a person ends their sessions at once.
    await sign_in(owner, "anna@bakery.example")
    listing = await _page(client, people)
    removal = re.search(r'action="(/dashboard/admin/people/per_\w+/remove)"', listing)
    assert removal is not None
    await _post(client, removal.group(1), {"csrf": csrf})
    assert (await owner.get("/dashboard/conversations", allow_redirects=False)).status == 303
    await sign_in(owner, "anna@bakery.example", status=401)
    # An admin cannot remove themselves (nobody would be left to undo it).
    assert "you</small>" in await _page(client, people)


async def test_an_admin_changes_a_plan_and_an_account_and_deletes_a_plan_nobody_is_on(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await add_person(settings, "root@gateway.example", "admin")
    csrf = form_token(await sign_in(client, "root@gateway.example"))
    plan_page = f"/dashboard/admin/plans/{tenant.plan_id}"
    assert f'href="{plan_page}"' in await _page(client, "/dashboard/admin/plans")
    shown = await _page(client, plan_page)
    assert 'value="gpt-4o-mini, gpt-4.1, gpt-5-mini"' in shown and "Bakery" in shown  # its models, its account

    # A refusal keeps what was typed, and changes nothing; then the change, as the API sees it.
    change = {
        "csrf": csrf,
        "name": "Bakery plan",
        "monthly_token_limit": "250000",
        "models": "gpt-4o-mini, gpt-4.1",
        "default_model": "gpt-5-mini",
        "overage_percent": "5",
        "messages_per_minute": "",
    }
    refused = await _post(client, plan_page, change, status=400)
    assert "'default_model' must be one of 'models'" in refused and 'value="250000"' in refused
    before = await expect(await client.get(f"/api/admin/plans/{tenant.plan_id}", headers=auth()), 200)
    assert before["monthly_token_limit"] == 100_000
    assert await _post(client, plan_page, {**change, "default_model": "gpt-4.1"}) == f"{plan_page}?done=saved"
    after = await expect(await client.get(f"/api/admin/plans/{tenant.plan_id}", headers=auth()), 200)
    assert (after["name"], after["monthly_token_limit"], after["models"], after["default_model"]) == (
        "Bakery plan",
        250_000,
        ["gpt-4o-mini", "gpt-4.1"],
        "gpt-4.1",
    )
    assert (after["overage_percent"], after["messages_per_minute"]) == (5, None)

    # The account moves to a new plan and is renamed; its quota follows the new plan at once.
    spare = {**change, "name": "Large", "monthly_token_limit": "900000", "default_model": "gpt-4.1"}
    await _post(client, "/dashboard/admin/plans", spare)
    [large] = [
        p
        for p in (await expect(await client.get("/api/admin/plans", headers=auth()), 200))["plans"]
        if p["name"] == "Large"
    ]
    account_page = f"/dashboard/admin/accounts/{tenant.account_id}"
    original = {"was_name": "Bakery", "was_email": "", "was_plan_id": tenant.plan_id}
    settings_form = {"csrf": csrf, "name": 'Bakery "&" <Sons>', "email": "", "plan_id": "pln_nope", **original}
    answer = await client.post(account_page, data=settings_form, allow_redirects=False)
    missing = await answer.text()
    assert answer.status == 400 and "plan" in missing  # the page is there; the plan chosen is not
    assert 'value="Bakery &#34;&amp;&#34; &lt;Sons&gt;"' in missing  # what was typed, kept and escaped
    assert await _post(client, account_page, {**settings_form, "plan_id": large["id"]}) == f"{account_page}?done=saved"
    account = await expect(await client.get(f"/api/admin/accounts/{tenant.account_id}", headers=auth()), 200)
    assert (account["name"], account["plan_id"], account["quota"]["limit_tokens"]) == (
        'Bakery "&" <Sons>',
        large["id"],
        945_000,  # 900,000 and its 5% overage
    )

    # A page opened before someone else moved the account (here through the API) renames it without moving it back.
    stale = {"csrf": csrf, "name": "Bakery Ltd", "email": "", "plan_id": large["id"], "was_name": 'Bakery "&" <Sons>'}
    stale |= {"was_email": "", "was_plan_id": large["id"]}
    patch = {"plan_id": tenant.plan_id}
    await expect(await client.patch(f"/api/admin/accounts/{tenant.account_id}", json=patch, headers=auth()), 200)
    assert await _post(client, account_page, stale) == f"{account_page}?done=saved"
    account = await expect(await client.get(f"/api/admin/accounts/{tenant.account_id}", headers=auth()), 200)
    assert (account["name"], account["plan_id"]) == ("Bakery Ltd", tenant.plan_id)
    unchanged = {**stale, "was_name": "Bakery Ltd"}
    assert await _post(client, account_page, unchanged) == f"{account_page}?done=unchanged"
    await expect(
        await client.patch(f"/api/admin/accounts/{tenant.account_id}", json={"plan_id": large["id"]}, headers=auth()),
        200,
    )

    # A plan with accounts on it is not deleted (said in words); once empty, it is.
    await _post(client, f"/dashboard/admin/plans/{large['id']}/delete", {"csrf": csrf}, status=409)
    assert await _post(client, f"{plan_page}/delete", {"csrf": csrf}) == "/dashboard/admin/plans?done=deleted"
    assert (await client.get(f"/api/admin/plans/{tenant.plan_id}", headers=auth())).status == 404
    assert "The plan was deleted." in await _page(client, "/dashboard/admin/plans?done=deleted")


async def test_only_admins_reach_the_admin_pages(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings)
    tenant = await provision(client)
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    home = await sign_in(client, "anna@bakery.example")
    assert "/dashboard/admin/" not in home
    for url in (
        "/dashboard/admin/accounts",
        f"/dashboard/admin/accounts/{tenant.account_id}",
        "/dashboard/admin/people",
        f"/dashboard/admin/plans/{tenant.plan_id}",
    ):
        assert (await client.get(url)).status == 403, url
    # An owner cannot move their own account to another plan, nor change or delete a plan, from these pages.
    token = form_token(home)
    for url, form in (
        (f"/dashboard/admin/accounts/{tenant.account_id}", {"name": "Mine", "plan_id": tenant.plan_id}),
        (f"/dashboard/admin/plans/{tenant.plan_id}", {"name": "Free for me", "monthly_token_limit": "999999999"}),
        (f"/dashboard/admin/plans/{tenant.plan_id}/delete", {}),
    ):
        assert (await client.post(url, data={"csrf": token, **form})).status == 403, url
    plan = await expect(await client.get(f"/api/admin/plans/{tenant.plan_id}", headers=auth()), 200)
    assert plan["monthly_token_limit"] == 100_000
    fields = {"csrf": form_token(home), "email": "evil@x.example", "role": "admin", "password": PASSWORD}
    assert (await client.post("/dashboard/admin/people", data=fields)).status == 403
    assert (
        await client.post(
            f"/dashboard/admin/accounts/{tenant.account_id}/lock", data={"csrf": fields["csrf"], "locked": "1"}
        )
    ).status == 403
    await sign_in(await make_client(settings), "evil@x.example", status=401)
