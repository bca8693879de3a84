"""Rating bot replies: POST /api/ai/feedback with the account's API key or a dashboard JWT."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from sandbox.fakes.openai_server import FakeOpenAI
from tests.support import database
from tests.support.harness import Tenant, auth, expect, provision, relay

PATH = "/api/ai/feedback"


async def reply_id(client: TestClient, tenant: Tenant, text: str = "hello", user_id: str = "customer-1") -> str:
    answer = await expect(await relay(client, tenant, text, user_id=user_id), 200)
    assert isinstance(answer["message_id"], str)
    return answer["message_id"]


async def rate(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return await client.post(PATH, json=body, headers=headers)


async def test_the_relay_answer_names_the_stored_reply(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    message_id = await reply_id(client, tenant, "When do you open?")
    [row] = database.rows(settings, "SELECT role, content FROM messages WHERE id = ?", (message_id,))
    assert (row["role"], row["content"]) == ("assistant", "You said: When do you open?")


async def test_a_customer_rates_a_reply_through_the_businesss_app_and_can_change_their_mind(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    message_id = await reply_id(client, tenant)

    first = await expect(await rate(client, tenant.key_header, message_id=message_id, rating="up"), 201)
    second = await expect(
        await rate(client, tenant.key_header, message_id=message_id, rating="down", comment="Not helpful"), 200
    )

    assert first["rating"] == "up" and first["comment"] is None and first["account_id"] == tenant.account_id
    assert second["id"] == first["id"] and second["rating"] == "down" and second["comment"] == "Not helpful"
    rows = database.rows(settings, "SELECT rating, comment, created_by FROM feedback")
    assert [(r["rating"], r["comment"]) for r in rows] == [("down", "Not helpful")]
    assert rows[0]["created_by"].startswith("api_key:nxk_")


async def test_owners_and_the_operator_rate_with_their_token_viewers_cannot(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    message_id = await reply_id(client, tenant)

    viewer = await rate(client, auth("viewer", tenant.account_id), message_id=message_id, rating="up")
    assert (await expect(viewer, 403))["error"]["code"] == "forbidden"
    assert database.rows(settings, "SELECT * FROM feedback") == []
    await expect(await rate(client, auth("owner", tenant.account_id), message_id=message_id, rating="up"), 201)
    await expect(await rate(client, auth(), message_id=message_id, rating="down"), 200)
    [row] = database.rows(settings, "SELECT rating, created_by FROM feedback")
    assert (row["rating"], row["created_by"]) == ("down", "tester")


async def test_another_accounts_reply_is_not_found_whoever_asks(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    a = await provision(client, name="A")
    b = await provision(client, name="B")
    b_reply = await reply_id(client, b)

    for headers in (a.key_header, auth("owner", a.account_id), auth("viewer", a.account_id)):
        for message_id in (b_reply, "msg_does_not_exist"):
            body = await expect(await rate(client, headers, message_id=message_id, rating="down"), 404)
            assert body == {"error": {"code": "not_found", "message": "message not found"}}
    assert database.rows(settings, "SELECT * FROM feedback") == []


async def test_only_replies_can_be_rated_and_bodies_are_checked(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    reply = await reply_id(client, tenant)
    [question] = database.rows(settings, "SELECT id FROM messages WHERE role = 'user'")
    key = tenant.key_header

    customer_message = await expect(await rate(client, key, message_id=question["id"], rating="up"), 400)
    assert customer_message["error"]["details"] == {"field": "message_id"}
    await expect(await rate(client, key, message_id=reply, rating="meh"), 400)
    await expect(await rate(client, key, message_id=reply), 400)
    await expect(await rate(client, key, message_id=reply, rating="up", account_id="acc_other"), 400)
    await expect(await rate(client, key, message_id=reply, rating="up", comment="x" * 2001), 400)
    assert database.rows(settings, "SELECT * FROM feedback") == []


async def test_bad_credentials_are_refused(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    reply = await reply_id(client, tenant)
    for headers in ({}, {"Authorization": "Bearer nxk_not-a-key"}, {"Authorization": "Bearer eyJ.not.a.jwt"}):
        body = await expect(await rate(client, headers, message_id=reply, rating="up"), 401)
        assert body["error"]["code"] == "unauthorized"
    revoked = await expect(
        await client.post(f"/api/admin/accounts/{tenant.account_id}/api-keys", json={}, headers=auth()), 201
    )
    await expect(
        await client.delete(f"/api/admin/accounts/{tenant.account_id}/api-keys/{revoked['id']}", headers=auth()), 204
    )
    old_key = {"Authorization": f"Bearer {revoked['key']}"}
    await expect(await rate(client, old_key, message_id=reply, rating="up"), 401)


async def test_a_locked_account_cannot_rate(client: TestClient, fake_openai: FakeOpenAI) -> None:
    tenant = await provision(client)
    reply = await reply_id(client, tenant)
    await expect(
        await client.put(f"/api/admin/users/{tenant.account_id}/lock", json={"locked": True}, headers=auth()), 200
    )
    body = await expect(await rate(client, tenant.key_header, message_id=reply, rating="up"), 403)
    assert body["error"]["code"] == "account_locked"


async def test_the_rating_shows_in_the_conversation_and_goes_with_an_erasure(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    reply = await reply_id(client, tenant)
    await expect(await rate(client, tenant.key_header, message_id=reply, rating="down", comment="rude"), 201)
    owner = auth("owner", tenant.account_id)
    [contact] = (await expect(await client.get("/api/conversations", headers=owner), 200))["conversations"]

    read = await expect(await client.get(f"/api/conversations/{contact['id']}", headers=owner), 200)
    assert [(m["role"], m["rating"]) for m in read["messages"]] == [("user", None), ("assistant", "down")]

    await expect(await client.delete(f"/api/conversations/{contact['id']}", headers=owner), 200)
    assert database.rows(settings, "SELECT * FROM feedback") == []


async def test_token_ratings_are_audited_key_ratings_are_not(
    client: TestClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    tenant = await provision(client)
    reply = await reply_id(client, tenant)
    await expect(await rate(client, tenant.key_header, message_id=reply, rating="up"), 201)
    await expect(await rate(client, auth("owner", tenant.account_id), message_id=reply, rating="down"), 200)
    await expect(await rate(client, auth("viewer", tenant.account_id), message_id=reply, rating="up"), 403)

    rows = database.rows(settings, "SELECT actor_role, path, status, account_id FROM audit_log WHERE path = ?", (PATH,))

    assert sorted((r["actor_role"], r["status"], r["account_id"]) for r in rows) == [
        ("owner", 200, tenant.account_id),
        ("viewer", 403, tenant.account_id),
    ]


async def test_unknown_paths_and_methods_beside_feedback_are_404_and_405_not_401(client: TestClient) -> None:
    assert (await expect(await client.get("/api/ai/feedback"), 405))["error"]["code"] == "method_not_allowed"
    assert (await expect(await client.get("/api/ai/elsewhere"), 404))["error"]["code"] == "not_found"
