"""Connecting a channel proves with Graph that the access token controls the Page, Instagram account or number.

Regression for the open hole of the first channel release: anyone allowed to connect could name another
business's Page id and receive its customers' messages. Owners connect their own channels again, through this check.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.graph_server import FakeGraph, GraphFault
from tests.support import database
from tests.support.harness import auth, expect, provision

PAGE, OTHER_PAGE, IG, OTHER_IG, PHONE = (
    "1122334455",
    "9988776655",
    "17841400000000001",
    "17841400000000002",
    "106540352242922",
)


async def connect(client: TestClient, bot_id: str, headers: dict[str, str], **body: Any) -> Any:
    return await client.post(f"/api/admin/bots/{bot_id}/channels", json=body, headers=headers)


async def test_an_owner_connects_a_page_its_token_controls(client: TestClient, fake_graph: FakeGraph) -> None:
    fake_graph.assets.grant("page-token-A", page_id=PAGE)
    tenant = await provision(client)
    owner = auth("owner", tenant.account_id)
    response = await connect(
        client, tenant.bot_id, owner, platform="messenger", external_id=PAGE, access_token="page-token-A"
    )
    channel = await expect(response, 201)
    assert channel["external_id"] == PAGE and channel["status"] == "active"
    read = fake_graph.reads[-1]
    assert (read.object_id, read.fields, read.token) == ("me", "id", "page-token-A")


async def test_a_token_for_another_page_is_refused_and_nothing_is_stored(
    client: TestClient, fake_graph: FakeGraph, settings: Settings
) -> None:
    fake_graph.assets.grant("my-page-token", page_id=PAGE)
    tenant = await provision(client)
    owner = auth("owner", tenant.account_id)
    # The owner names somebody else's Page with their own (valid) token.
    response = await connect(
        client, tenant.bot_id, owner, platform="messenger", external_id=OTHER_PAGE, access_token="my-page-token"
    )
    error = (await expect(response, 400))["error"]
    assert error["code"] == "bad_request" and OTHER_PAGE in error["message"]
    assert "my-page-token" not in error["message"]
    assert database.rows(settings, "SELECT id FROM channels") == []


async def test_an_operator_cannot_skip_the_check_either(client: TestClient, fake_graph: FakeGraph) -> None:
    tenant = await provision(client)
    response = await connect(
        client, tenant.bot_id, auth(), platform="messenger", external_id=OTHER_PAGE, access_token="some-user-token"
    )
    assert (await expect(response, 400))["error"]["code"] == "bad_request"


async def test_instagram_needs_the_page_token_of_the_linked_account(client: TestClient, fake_graph: FakeGraph) -> None:
    fake_graph.assets.grant("linked", page_id=PAGE, instagram_id=IG)
    tenant = await provision(client)
    owner = auth("owner", tenant.account_id)
    refused = await connect(
        client, tenant.bot_id, owner, platform="instagram", external_id=OTHER_IG, access_token="linked"
    )
    assert OTHER_IG in (await expect(refused, 400))["error"]["message"]
    await expect(
        await connect(client, tenant.bot_id, owner, platform="instagram", external_id=IG, access_token="linked"), 201
    )
    assert fake_graph.reads[-1].fields == "id,instagram_business_account"


async def test_whatsapp_numbers_are_checked_against_the_business_token(
    client: TestClient, fake_graph: FakeGraph
) -> None:
    fake_graph.assets.grant("system-user", phone_number_ids=(PHONE,))
    tenant = await provision(client)
    owner = auth("owner", tenant.account_id)
    refused = await connect(
        client, tenant.bot_id, owner, platform="whatsapp", external_id=PHONE, access_token="stranger"
    )
    assert (await expect(refused, 400))["error"]["code"] == "bad_request"
    ok = await connect(client, tenant.bot_id, owner, platform="whatsapp", external_id=PHONE, access_token="system-user")
    await expect(ok, 201)
    assert fake_graph.reads[-1].object_id == PHONE


async def test_an_expired_token_is_refused_with_a_clear_reason(client: TestClient, fake_graph: FakeGraph) -> None:
    fake_graph.valid_tokens = {"the-only-valid-token"}
    tenant = await provision(client)
    response = await connect(
        client, tenant.bot_id, auth(), platform="messenger", external_id=PAGE, access_token="expired-token"
    )
    message = (await expect(response, 400))["error"]["message"]
    assert "190" in message and "expired" in message


async def test_graph_unreachable_is_a_502_and_nothing_is_stored(
    client: TestClient, fake_graph: FakeGraph, settings: Settings
) -> None:
    tenant = await provision(client)
    body = {"platform": "messenger", "external_id": PAGE, "access_token": f"token-{PAGE}"}
    # aiohttp retries an idempotent GET once when a pooled connection drops, hence two resets.
    for faults in ((GraphFault(2, http_status=500, is_transient=True),), (GraphFault.reset(), GraphFault.reset())):
        fake_graph.read_faults.extend(faults)
        response = await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth())
        assert (await expect(response, 502))["error"]["code"] == "upstream_unavailable"
    assert database.rows(settings, "SELECT id FROM channels") == []
    # Once Graph answers again, the same request goes through.
    await expect(await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth()), 201)


async def test_a_replacement_token_is_checked_before_it_replaces_the_old_one(
    client: TestClient, fake_graph: FakeGraph, settings: Settings
) -> None:
    fake_graph.assets.grant("first", page_id=PAGE)
    fake_graph.assets.grant("renewed", page_id=PAGE)
    fake_graph.assets.grant("other-page", page_id=OTHER_PAGE)
    tenant = await provision(client)
    owner = auth("owner", tenant.account_id)
    created = await connect(client, tenant.bot_id, owner, platform="messenger", external_id=PAGE, access_token="first")
    channel = await expect(created, 201)
    sealed_before = database.rows(settings, "SELECT access_token_sealed FROM channels")[0][0]
    url = f"/api/admin/channels/{channel['id']}"
    await expect(await client.patch(url, json={"access_token": "other-page"}, headers=owner), 400)
    assert database.rows(settings, "SELECT access_token_sealed FROM channels")[0][0] == sealed_before
    await expect(await client.patch(url, json={"access_token": "renewed"}, headers=owner), 200)
    assert database.rows(settings, "SELECT access_token_sealed FROM channels")[0][0] != sealed_before
    # Changing only the status needs no Graph call.
    reads = len(fake_graph.reads)
    await expect(await client.patch(url, json={"status": "disabled"}, headers=owner), 200)
    assert len(fake_graph.reads) == reads


async def test_a_token_with_a_line_break_is_a_400_not_a_500(client: TestClient, fake_graph: FakeGraph) -> None:
    """Regression (found by schemathesis): a newline in a token reached the Authorization header of the ownership
    check, aiohttp refused to send it, and the connect answered 500."""
    tenant = await provision(client)
    for token in ("a\nb", "a\x01b", "a\x7fb", "with space"):
        response = await connect(
            client, tenant.bot_id, auth(), platform="messenger", external_id=PAGE, access_token=token
        )
        error = (await expect(response, 400))["error"]
        assert error["code"] == "bad_request" and "access_token" in error["message"]
    channel = await expect(
        await connect(
            client, tenant.bot_id, auth(), platform="messenger", external_id=PAGE, access_token=f"token-{PAGE}"
        ),
        201,
    )
    patch = await client.patch(
        f"/api/admin/channels/{channel['id']}", json={"app_secret": "bad\r\nsecret"}, headers=auth()
    )
    assert (await expect(patch, 400))["error"]["code"] == "bad_request"
    assert len(fake_graph.reads) == 1  # refused before any Graph call
