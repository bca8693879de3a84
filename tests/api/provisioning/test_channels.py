"""Connecting bots to Pages, Instagram accounts and WhatsApp numbers: secrets sealed, write-only, isolated."""

from __future__ import annotations

from dataclasses import replace

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import MakeClient
from tests.support import database
from tests.support.harness import auth, connect_channel, expect, provision


async def test_connect_list_update_disconnect(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    channel = await connect_channel(client, tenant, "whatsapp", "106540352242922", app_secret="own-secret")
    assert channel["platform"] == "whatsapp" and channel["status"] == "active"
    assert channel["has_app_secret"] is True and channel["has_verify_token"] is False
    assert "access_token" not in channel and "app_secret" not in channel

    listed = await expect(await client.get(f"/api/admin/bots/{tenant.bot_id}/channels", headers=auth()), 200)
    assert [c["id"] for c in listed["channels"]] == [channel["id"]]

    patched = await expect(
        await client.patch(f"/api/admin/channels/{channel['id']}", json={"status": "disabled"}, headers=auth()), 200
    )
    assert patched["status"] == "disabled"
    await expect(await client.delete(f"/api/admin/channels/{channel['id']}", headers=auth()), 204)
    await expect(await client.get(f"/api/admin/channels/{channel['id']}", headers=auth()), 404)
    # Once disconnected, the same number can be connected again (to this or another bot).
    await connect_channel(client, tenant, "whatsapp", "106540352242922")


async def test_secrets_are_sealed_at_rest_and_never_returned(client: TestClient, settings: Settings) -> None:
    tenant = await provision(client)
    channel = await connect_channel(
        client, tenant, "messenger", "1234567890", app_secret="app-secret-plain", verify_token="verify-plain"
    )
    dump = "\n".join(str(tuple(row)) for row in database.rows(settings, "SELECT * FROM channels"))
    for plaintext in ("token-1234567890", "app-secret-plain", "verify-plain"):
        assert plaintext not in dump
    body = await (await client.get(f"/api/admin/channels/{channel['id']}", headers=auth())).text()
    assert "token-1234567890" not in body and "app-secret-plain" not in body


async def test_without_secrets_key_nothing_is_stored(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(replace(settings, secrets_key=None))
    tenant = await provision(client)
    body = {"platform": "messenger", "external_id": "1234567890", "access_token": "t"}
    response = await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth())
    error = (await expect(response, 503))["error"]
    assert error["code"] == "not_configured" and "SECRETS_KEY" in error["message"]
    assert database.rows(settings, "SELECT id FROM channels") == []


async def test_the_same_page_cannot_be_connected_twice(client: TestClient) -> None:
    first = await provision(client, name="First")
    second = await provision(client, name="Second")
    await connect_channel(client, first, "instagram", "17841400000000000")
    body = {"platform": "instagram", "external_id": "17841400000000000", "access_token": "token-17841400000000000"}
    response = await client.post(f"/api/admin/bots/{second.bot_id}/channels", json=body, headers=auth())
    assert (await expect(response, 409))["error"]["code"] == "conflict"


async def test_channels_are_isolated_between_accounts(client: TestClient) -> None:
    mine = await provision(client, name="Mine")
    theirs = await provision(client, name="Theirs")
    channel = await connect_channel(client, theirs, "messenger", "555000111")
    owner = auth("owner", mine.account_id)
    await expect(await client.get(f"/api/admin/channels/{channel['id']}", headers=owner), 404)
    await expect(
        await client.patch(f"/api/admin/channels/{channel['id']}", json={"status": "disabled"}, headers=owner), 404
    )
    await expect(await client.delete(f"/api/admin/channels/{channel['id']}", headers=owner), 404)
    await expect(await client.get(f"/api/admin/bots/{theirs.bot_id}/channels", headers=owner), 404)
    body = {"platform": "messenger", "external_id": "777", "access_token": "t"}
    await expect(await client.post(f"/api/admin/bots/{theirs.bot_id}/channels", json=body, headers=owner), 404)
    # A viewer of the owning account may look but not touch.
    viewer = auth("viewer", theirs.account_id)
    await expect(await client.get(f"/api/admin/channels/{channel['id']}", headers=viewer), 200)
    await expect(await client.delete(f"/api/admin/channels/{channel['id']}", headers=viewer), 403)


async def test_bad_channel_bodies_are_400(client: TestClient) -> None:
    tenant = await provision(client)
    for body in (
        {"platform": "telegram", "external_id": "1", "access_token": "t"},
        {"platform": "messenger", "external_id": "not-a-number", "access_token": "t"},
        {"platform": "messenger", "external_id": "1"},
        {"platform": "messenger", "external_id": "1", "access_token": "t", "account_id": "acc_x"},
    ):
        response = await client.post(f"/api/admin/bots/{tenant.bot_id}/channels", json=body, headers=auth())
        assert (await expect(response, 400))["error"]["code"] == "bad_request"
