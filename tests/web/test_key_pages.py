"""The API keys page: an owner issues a key for their app, sees it once, and revokes it; viewers only look; another
account's keys are not found; an admin reaches any account's keys from its page."""

from __future__ import annotations

import html
import re

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.conftest import MakeClient
from tests.support.harness import auth, expect, provision
from tests.support.people import add_person, form_token, sign_in


def form_key(page: str) -> str:
    found = re.search(r'name="form_key" value="([^"]+)"', page)
    assert found is not None, page[:3000]
    return found.group(1)


def issued_key(page: str) -> str:
    found = re.search(r'<input id="issued-key" readonly value="([^"]+)"', page)
    assert found is not None, page[:3000]
    return html.unescape(found.group(1))


async def _relay_status(client: TestClient, key: str) -> int:
    answer = await client.post(
        "/api/messages/relay",
        json={"user_id": "web-shop-42", "message": "Do you deliver?"},
        headers={"Authorization": f"Bearer {key}"},
    )
    return answer.status


async def test_an_owner_issues_a_key_sees_it_once_and_revokes_it(
    make_client: MakeClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    home = await sign_in(client, "anna@bakery.example")
    assert 'href="/dashboard/api-keys"' in home
    csrf = form_token(home)

    chosen = await client.get("/dashboard/api-keys", allow_redirects=False)
    where = f"/dashboard/accounts/{tenant.account_id}/api-keys"
    assert chosen.status == 303 and chosen.headers["Location"] == where
    listing = await (await client.get(where)).text()
    assert "(no name)" in listing  # the key provisioning issued
    assert tenant.api_key not in listing and tenant.api_key[:12] in listing  # its first characters, not the key

    sent = {"csrf": csrf, "name": "Web shop <b>", "form_key": form_key(listing)}
    answer = await client.post(where, data=sent, allow_redirects=False)
    page = await answer.text()
    assert answer.status == 201, page[:2000]
    key = issued_key(page)
    # The page reloaded (the same form sent again): no second key, and words for what happened.
    reloaded = await client.post(where, data=sent, allow_redirects=False)
    assert reloaded.status == 409 and "This form was sent already" in await reloaded.text()
    assert len(await _keys(client, tenant.account_id)) == 2
    assert "Web shop &lt;b&gt;" in page and "<b>" not in page.split("<main", 1)[1]  # what was typed is escaped
    assert await _relay_status(client, key) == 200  # it works at once, for this account

    again = await (await client.get(where)).text()
    assert key not in again  # shown once: never again
    [made] = [k for k in (await _keys(client, tenant.account_id)) if k["name"] == "Web shop <b>"]
    assert made["last_used_at"] is not None and f'data-key="{made["id"]}"' in again

    revoked = await client.post(f"{where}/{made['id']}/revoke", data={"csrf": csrf}, allow_redirects=False)
    assert revoked.status == 303 and revoked.headers["Location"] == f"{where}?done=revoked"
    after = await (await client.get(revoked.headers["Location"])).text()
    assert "The key is revoked" in after
    assert await _relay_status(client, key) == 401
    assert await _relay_status(client, tenant.api_key) == 200  # the other key goes on working
    [gone] = [k for k in (await _keys(client, tenant.account_id)) if k["id"] == made["id"]]
    assert gone["revoked_at"] is not None

    # A blank name is no name; one too long is refused in words, keeping what was typed.
    blank = await client.post(where, data={"csrf": csrf, "name": "  ", "form_key": form_key(after)})
    assert blank.status == 201
    long = await client.post(where, data={"csrf": csrf, "name": "x" * 101, "form_key": form_key(await blank.text())})
    text = html.unescape(await long.text())
    assert long.status == 400 and "'name'" in text and 'value="' + "x" * 101 + '"' in text
    assert len(await _keys(client, tenant.account_id)) == 3  # the refused one made nothing
    forged = await client.post(where, data={"name": "no form token", "form_key": form_key(text)})
    assert forged.status == 403
    assert len(await _keys(client, tenant.account_id)) == 3

    # What the owner did here is in the audit trail, as if done through the API.
    trail = await expect(await client.get("/api/admin/audit", headers=auth()), 200)
    actions = {(e["action"], e["actor_role"], e["target_type"], e["target_id"]) for e in trail["entries"]}
    assert {("issue_key", "owner", "api_key", made["id"]), ("revoke_key", "owner", "key", made["id"])} <= actions


async def test_a_viewer_only_looks_and_another_account_is_not_found(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    other = await provision(client, name="Other")
    [other_key] = await _keys(client, other.account_id)
    await add_person(settings, "vic@bakery.example", "viewer", tenant.account_id)
    csrf = form_token(await sign_in(client, "vic@bakery.example"))
    where = f"/dashboard/accounts/{tenant.account_id}/api-keys"
    page = await (await client.get(where)).text()
    assert "(no name)" in page and "Issue a key" not in page and "/revoke" not in page
    refused = await client.post(where, data={"csrf": csrf, "name": "mine", "form_key": "abcdefgh12"})
    assert refused.status == 403
    assert len(await _keys(client, tenant.account_id)) == 1

    owner = await make_client(settings)
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    csrf = form_token(await sign_in(owner, "anna@bakery.example"))
    elsewhere = await owner.get(f"/dashboard/accounts/{other.account_id}/api-keys")
    assert elsewhere.status == 404
    # Another account's key, through one's own account's page: not found, and it still works.
    stolen = await owner.post(f"{where}/{other_key['id']}/revoke", data={"csrf": csrf}, allow_redirects=False)
    assert stolen.status == 404
    assert (await _keys(client, other.account_id))[0]["revoked_at"] is None


async def test_an_admin_reaches_an_accounts_keys_from_its_page(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings)
    tenant = await provision(client, name="Bakery")
    await add_person(settings, "root@gateway.example", "admin")
    csrf = form_token(await sign_in(client, "root@gateway.example"))
    chosen = await client.get("/dashboard/api-keys", allow_redirects=False)
    assert chosen.headers["Location"] == "/dashboard/admin/accounts"  # an operator picks the account first
    account_page = await (await client.get(f"/dashboard/admin/accounts/{tenant.account_id}")).text()
    where = f"/dashboard/accounts/{tenant.account_id}/api-keys"
    assert f'href="{where}"' in account_page
    page = await (await client.get(where)).text()
    answer = await client.post(where, data={"csrf": csrf, "name": "For the agency", "form_key": form_key(page)})
    assert answer.status == 201
    assert issued_key(await answer.text()).startswith("nxk_")


async def _keys(client: TestClient, account_id: str) -> list[dict[str, object]]:
    listed = await expect(await client.get(f"/api/admin/accounts/{account_id}/api-keys", headers=auth()), 200)
    keys: list[dict[str, object]] = listed["api_keys"]
    return keys
