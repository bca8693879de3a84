"""People sign in to the web dashboard: added by `user add`, refused with a wrong password, limited in attempts,
held in an HttpOnly session cookie that is new at every sign-in, protected by form tokens, signed out for good, and
shut out when their account is locked."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support.harness import Tenant, auth, expect, provision
from tests.support.people import PASSWORD, add_person, form_token, sign_in


@pytest.fixture
async def site(make_client: MakeClient, settings: Settings) -> tuple[TestClient, Tenant, Settings]:
    client = await make_client(settings)
    tenant = await provision(client)
    code, out = await add_person(settings, "Anna@Bakery.example", "owner", tenant.account_id)
    assert code == 0 and "added Anna@Bakery.example, owner" in out
    return client, tenant, settings


async def test_user_add_refuses_what_would_not_work(site: Any) -> None:
    _, tenant, settings = site
    assert (await add_person(settings, "anna@bakery.example", "viewer", tenant.account_id))[0] == 2  # taken
    assert (await add_person(settings, "bo@bakery.example", "viewer", tenant.account_id, password="short"))[0] == 2
    assert (await add_person(settings, "cy@bakery.example", "owner"))[0] == 2  # an owner needs an account
    assert (await add_person(settings, "di@bakery.example", "owner", "acc_nobody"))[0] == 2
    assert (await add_person(settings, "ops@example.net", "admin"))[0] == 0


async def test_the_sign_in_page_is_labelled_and_refuses_a_wrong_password(site: Any) -> None:
    client, _, _ = site
    page = await (await client.get("/dashboard/login")).text()
    assert '<label for="email">Email</label>' in page and '<label for="password">Password</label>' in page
    assert '<button type="submit">Sign in</button>' in page
    refused = await sign_in(client, "anna@bakery.example", "not the password", status=401)
    assert "The email or the password is not right." in refused
    unknown = await sign_in(client, "nobody@bakery.example", status=401)
    assert "The email or the password is not right." in unknown
    # Not signed in: every page leads to the sign-in form.
    answer = await client.get("/dashboard/conversations", allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")


async def test_the_session_cookie_is_new_httponly_and_ends_at_sign_out(site: Any) -> None:
    client, _, _ = site
    # A session id planted before sign-in (fixation) is never the one the person gets.
    client.session.cookie_jar.update_cookies({"nexus_session": "planted-by-someone-else"})
    form = await client.get("/dashboard/login")
    fields = {"csrf": form_token(await form.text()), "email": "ANNA@bakery.example", "password": PASSWORD}
    answer = await client.post("/dashboard/login", data=fields, allow_redirects=False)
    assert answer.status == 303
    [header] = [h for h in answer.headers.getall("Set-Cookie") if h.startswith("nexus_session=")]
    cookie = SimpleCookie(header)["nexus_session"]
    assert cookie.value not in ("", "planted-by-someone-else") and len(cookie.value) >= 40
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/dashboard"
    assert not cookie["secure"]  # plain http here; PUBLIC_BASE_URL https makes it Secure
    page = await (await client.get("/dashboard/")).text()
    assert "Anna@Bakery.example" in page and 'href="/dashboard/conversations"' in page

    # A page asked for with the wrong method is a page too, not the API's JSON.
    wrong = await client.get("/dashboard/logout")
    assert wrong.status == 405 and wrong.content_type == "text/html" and "POST" in wrong.headers["Allow"]
    # Signing out needs the page's form token; then the old cookie opens nothing.
    forged = await client.post("/dashboard/logout", data={"csrf": "guess"}, allow_redirects=False)
    assert forged.status == 403
    assert (await client.get("/dashboard/", allow_redirects=False)).status == 200  # still signed in
    await client.post("/dashboard/logout", data={"csrf": form_token(page)}, allow_redirects=False)
    client.session.cookie_jar.update_cookies({"nexus_session": cookie.value})  # kept by someone: useless now
    answer = await client.get("/dashboard/", allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")


async def test_behind_tls_the_cookies_are_this_hosts_alone(make_client: MakeClient, settings: Settings) -> None:
    """Over TLS the cookies are `__Host-` ones (Secure, Path=/, no Domain): a browser takes them from this host
    only, so a sibling subdomain cannot plant a sign-in form token or a session of its own choosing. (The test
    client speaks plain HTTP and would not send a Secure cookie back: the cookies are sent by hand, as a browser
    on https would.)"""
    from dataclasses import replace

    client = await make_client(replace(settings, public_base_url="https://gateway.example"))
    tenant = await provision(client)
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    form = await client.get("/dashboard/login")
    assert form.headers["Strict-Transport-Security"] == "max-age=31536000"
    signin = _only_cookie(form.headers.getall("Set-Cookie"), "__Host-nexus_signin")
    assert signin["secure"] and signin["path"] == "/" and not signin["domain"]

    fields = {"csrf": form_token(await form.text()), "email": "anna@bakery.example", "password": PASSWORD}
    client.session.cookie_jar.clear()
    planted = await client.post(
        "/dashboard/login", data=fields, headers={"Cookie": f"nexus_signin={signin.value}"}, allow_redirects=False
    )
    assert planted.status == 403  # the plain-named cookie (what a subdomain could set) is not the form's
    answer = await client.post(
        "/dashboard/login",
        data=fields,
        headers={"Cookie": f"__Host-nexus_signin={signin.value}"},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()
    session = _only_cookie(answer.headers.getall("Set-Cookie"), "__Host-nexus_session")
    assert session["secure"] and session["httponly"] and session["path"] == "/" and not session["domain"]
    client.session.cookie_jar.clear()
    page = await client.get("/dashboard/", headers={"Cookie": f"__Host-nexus_session={session.value}"})
    assert page.status == 200 and "anna@bakery.example" in await page.text()
    elsewhere = await client.get(
        "/dashboard/", headers={"Cookie": f"nexus_session={session.value}"}, allow_redirects=False
    )
    assert elsewhere.status == 303  # only the host-only cookie carries the session


def _only_cookie(headers: list[str], name: str) -> Any:
    [header] = [h for h in headers if h.startswith(name + "=")]
    return SimpleCookie(header)[name]


async def test_the_sign_in_form_needs_its_token(site: Any) -> None:
    client, _, _ = site
    await client.get("/dashboard/login")  # the form's cookie is set, but the token is not sent back
    fields = {"email": "anna@bakery.example", "password": PASSWORD}
    answer = await client.post("/dashboard/login", data=fields, allow_redirects=False)
    assert answer.status == 403 and "expired" in await answer.text()
    answer = await client.post("/dashboard/login", data={**fields, "csrf": "made-up"}, allow_redirects=False)
    assert answer.status == 403


async def test_sign_in_attempts_are_limited(site: Any) -> None:
    client, _, _ = site
    for _ in range(5):
        await sign_in(client, "anna@bakery.example", "wrong password!", status=401)
    refused = await sign_in(client, "anna@bakery.example", status=429)  # even the right password, for now
    assert "Too many sign-in attempts" in refused


async def test_a_locked_account_cannot_sign_in_and_its_sessions_stop(site: Any) -> None:
    client, tenant, _ = site
    await sign_in(client, "anna@bakery.example")
    lock = {"locked": True}
    await expect(await client.put(f"/api/admin/users/{tenant.account_id}/lock", json=lock, headers=auth()), 200)
    answer = await client.get("/dashboard/", allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")
    refused = await sign_in(client, "anna@bakery.example", status=403)
    assert "This account is locked" in refused


async def _attempt(client: TestClient, password: str, forwarded_for: str | None) -> int:
    """One sign-in attempt as anna, from the client the proxy names (None: no header)."""
    form = await client.get("/dashboard/login")
    fields = {"csrf": form_token(await form.text()), "email": "anna@bakery.example", "password": password}
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    answer = await client.post("/dashboard/login", data=fields, headers=headers, allow_redirects=False)
    return answer.status


async def test_behind_a_trusted_proxy_each_client_has_its_own_attempts(
    make_client: MakeClient, settings: Settings
) -> None:
    from dataclasses import replace

    client = await make_client(replace(settings, trusted_proxies=("127.0.0.0/8", "::1")))
    tenant = await provision(client)
    await add_person(settings, "anna@bakery.example", "owner", tenant.account_id)
    for _ in range(5):  # someone guessing from 203.0.113.9, through the proxy
        assert await _attempt(client, "wrong password!", "198.51.100.1, 203.0.113.9") == 401
    assert await _attempt(client, "wrong password!", "203.0.113.9") == 429
    assert await _attempt(client, "wrong password!", "203.0.113.9:4711") == 429  # a proxy that writes the port
    # Anna, from her own address, is not held back by the guesser (the header's nearest untrusted hop counts).
    assert await _attempt(client, PASSWORD, "203.0.113.9, 192.0.2.44") == 303


async def test_without_trusted_proxies_a_forwarded_for_header_changes_nothing(site: Any) -> None:
    client, _, _ = site
    for n in range(5):
        assert await _attempt(client, "wrong password!", f"192.0.2.{n}") == 401
    assert await _attempt(client, PASSWORD, "192.0.2.200") == 429  # the header is not believed: same client


async def test_signing_out_everywhere_ends_every_session(site: Any, make_client: MakeClient) -> None:
    client, _, settings = site
    phone = await make_client(settings)
    await sign_in(phone, "anna@bakery.example")
    page = await sign_in(client, "anna@bakery.example")
    fields = {"csrf": form_token(page), "everywhere": "1"}
    answer = await client.post("/dashboard/logout", data=fields, allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")
    for browser in (client, phone):
        answer = await browser.get("/dashboard/", allow_redirects=False)
        assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")
