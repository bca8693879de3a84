"""Knowledge documents through the admin API: added as JSON or uploaded, listed, searched, deleted, isolated."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.support.admin_api import ADMIN, expect_error
from tests.support.harness import auth, expect, provision
from tests.support.pdf import make_pdf

PRICES = """# Brot

Roggenbrot 750 g: 4,20 €. Dinkelvollkorn 500 g: 4,80 €.

# Brötchen

Weizenbrötchen 0,50 €, Kürbiskernbrötchen 0,90 €.
"""


def _upload(data: bytes, filename: str, content_type: str, title: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    if title is not None:
        form.add_field("title", title)
    return form


async def _add(client: TestClient, bot_id: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    kwargs = {"data": body} if isinstance(body, aiohttp.FormData) else {"json": body}
    return await client.post(f"{ADMIN}/bots/{bot_id}/knowledge", headers=headers or auth(), **kwargs)


async def _search(client: TestClient, bot_id: str, q: str, headers: dict[str, str] | None = None) -> list[Any]:
    response = await client.get(
        f"{ADMIN}/bots/{bot_id}/knowledge/search", params={"q": q, "limit": "5"}, headers=headers or auth()
    )
    return list((await expect(response, 200))["results"])


async def test_a_text_is_chunked_at_its_headings_and_found_without_accents(client: TestClient) -> None:
    tenant = await provision(client)
    document = await expect(await _add(client, tenant.bot_id, {"title": "Preisliste", "text": PRICES}), 201)

    assert document["bot_id"] == tenant.bot_id
    assert (document["title"], document["kind"], document["status"]) == ("Preisliste", "text", "ready")
    assert document["chunks"] == 2 and document["tokens"] > 20
    assert document["error"] is None

    # Typed on a phone: no umlaut, another inflection ("Brotchen" for "Weizenbrötchen" is not enough; the
    # section's heading "Brötchen" travels with its chunk).
    results = await _search(client, tenant.bot_id, "Was kosten eure Brotchen?")
    assert results[0]["document_id"] == document["id"]
    assert results[0]["text"].startswith("Preisliste > Brötchen")
    assert "0,50 €" in results[0]["text"]
    assert results[0]["relevant"] is True and results[0]["relevance"] > 0


async def test_an_faq_entry_is_one_chunk_and_listed_with_the_rest(client: TestClient) -> None:
    tenant = await provision(client)
    faq = await expect(
        await _add(
            client,
            tenant.bot_id,
            {"question": "Do you deliver to Potsdam?", "answer": "Yes, on Saturdays, for orders over 30 €."},
        ),
        201,
    )
    text = await expect(await _add(client, tenant.bot_id, {"title": "Preise", "text": PRICES}), 201)
    assert (faq["kind"], faq["title"], faq["chunks"]) == ("faq", "Do you deliver to Potsdam?", 1)

    listed = await expect(await client.get(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", headers=auth()), 200)
    assert [d["id"] for d in listed["documents"]] == [faq["id"], text["id"]]
    one = await expect(await client.get(f"{ADMIN}/knowledge/{faq['id']}", headers=auth()), 200)
    assert one == faq

    [best, *_] = await _search(client, tenant.bot_id, "delivery to potsdam on weekends?")
    assert best["document_id"] == faq["id"]
    assert best["text"] == "Q: Do you deliver to Potsdam?\nA: Yes, on Saturdays, for orders over 30 €."


async def test_uploaded_pdf_markdown_and_html_are_read_as_text(client: TestClient) -> None:
    tenant = await provision(client)
    pdf = make_pdf([["Öffnungszeiten", "Montag bis Freitag 7 bis 18 Uhr."], ["Samstag 8 bis 13 Uhr."]], title="Zeiten")
    from_pdf = await expect(await _add(client, tenant.bot_id, _upload(pdf, "zeiten.pdf", "application/pdf")), 201)
    assert (from_pdf["kind"], from_pdf["title"], from_pdf["source"]) == ("file", "Zeiten", "zeiten.pdf")

    page = (
        "<html><head><title>Allergene</title><script>var tracking = 'Samstag';</script></head><body>"
        "<nav>Start | Samstag-Angebote</nav><h1>Allergene</h1><p>Unser Dinkelbrot enthält Gluten und Sesam.</p>"
        "<footer>Impressum</footer></body></html>"
    )
    from_html = await expect(
        await _add(client, tenant.bot_id, _upload(page.encode(), "allergene.html", "text/html", title="Allergene")),
        201,
    )
    markdown = await expect(
        await _add(client, tenant.bot_id, _upload(PRICES.encode(), "preise.md", "application/octet-stream")), 201
    )
    assert markdown["title"] == "preise.md" and markdown["chunks"] == 2

    saturday = await _search(client, tenant.bot_id, "Habt ihr samstags offen?")
    assert saturday[0]["document_id"] == from_pdf["id"]
    assert "Samstag 8 bis 13 Uhr" in saturday[0]["text"]
    # The page's script and navigation are not its text: only the PDF speaks of Saturdays.
    assert all(result["document_id"] != from_html["id"] for result in saturday)
    [sesame] = [
        r for r in await _search(client, tenant.bot_id, "Ist Sesam im Brot?") if r["document_id"] == from_html["id"]
    ]
    assert "Impressum" not in sesame["text"] and "tracking" not in sesame["text"]


async def test_a_file_that_cannot_be_read_is_refused_and_stores_nothing(client: TestClient) -> None:
    tenant = await provision(client)
    pdf = make_pdf([["Roggenbrot 4,20 €"]])
    refusals = [
        (_upload(pdf[: len(pdf) // 2], "cut.pdf", "application/pdf"), 422, "damaged"),
        (_upload(b"\x00\x01binary", "notes.txt", "text/plain"), 422, "not text"),
        (_upload("Preise".encode("utf-16"), "preise.txt", "text/plain"), 422, "not text"),
        (_upload(b"hello", "photo.jpg", "image/jpeg"), 415, "PDF, .txt, .md or .html"),
        (_upload(b"", "empty.txt", "text/plain"), 400, "empty"),
        (_upload(make_pdf([[]]), "blank.pdf", "application/pdf"), 422, "no text"),
    ]
    for form, status, reason in refusals:
        body = await expect(await _add(client, tenant.bot_id, form), status)
        assert reason in body["error"]["message"], body
    listed = await expect(await client.get(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", headers=auth()), 200)
    assert listed["documents"] == []
    assert await _search(client, tenant.bot_id, "Roggenbrot") == []


async def test_bodies_that_are_not_one_document_are_refused(client: TestClient) -> None:
    tenant = await provision(client)
    cases = [
        ({"text": "no title"}, "'title' is required with text"),
        ({"question": "Open on Sunday?"}, "'answer' is required with an FAQ entry"),
        ({"title": "both", "text": "x", "question": "q", "answer": "a"}, "not both"),
        ({"url": "https://example.com/", "question": "q", "answer": "a"}, "not both"),
        ({"title": "nothing"}, "the body does not fit: send a text (title and text), an FAQ entry or a url"),
        ({"title": "t", "text": "   "}, "'text' may not be empty"),
    ]
    for body, message in cases:
        error = await expect_error(await _add(client, tenant.bot_id, body), 400)
        assert message in error["message"], (body, error)


async def test_a_deleted_document_is_never_found_again(client: TestClient) -> None:
    tenant = await provision(client)
    document = await expect(await _add(client, tenant.bot_id, {"title": "Preise", "text": PRICES}), 201)
    assert await _search(client, tenant.bot_id, "Roggenbrot")

    await expect(await client.delete(f"{ADMIN}/knowledge/{document['id']}", headers=auth()), 204)
    assert await _search(client, tenant.bot_id, "Roggenbrot") == []
    await expect_error(await client.get(f"{ADMIN}/knowledge/{document['id']}", headers=auth()), 404)
    await expect_error(await client.delete(f"{ADMIN}/knowledge/{document['id']}", headers=auth()), 404)


async def test_another_accounts_knowledge_is_a_404_and_never_searched(client: TestClient) -> None:
    bakery = await provision(client, name="Bakery")
    dentist = await provision(client, name="Dentist")
    secret = await expect(
        await _add(client, bakery.bot_id, {"title": "Rezept", "text": "Das Geheimrezept: Roggen, Salz, Kümmel."}), 201
    )
    owner = auth("owner", dentist.account_id)

    await expect_error(await client.get(f"{ADMIN}/knowledge/{secret['id']}", headers=owner), 404)
    await expect_error(await client.delete(f"{ADMIN}/knowledge/{secret['id']}", headers=owner), 404)
    await expect_error(await client.get(f"{ADMIN}/bots/{bakery.bot_id}/knowledge", headers=owner), 404)
    await expect_error(
        await client.get(f"{ADMIN}/bots/{bakery.bot_id}/knowledge/search", params={"q": "Rezept"}, headers=owner), 404
    )
    await expect_error(await _add(client, bakery.bot_id, {"title": "x", "text": "y"}, owner), 404)
    # The dentist's own bot searches only the dentist's documents.
    assert await _search(client, dentist.bot_id, "Geheimrezept Roggen", owner) == []
    # A viewer of the bakery reads but does not write.
    viewer = auth("viewer", bakery.account_id)
    assert (await _search(client, bakery.bot_id, "Geheimrezept", viewer))[0]["document_id"] == secret["id"]
    await expect_error(await _add(client, bakery.bot_id, {"title": "x", "text": "y"}, viewer), 403)
    await expect_error(await client.delete(f"{ADMIN}/knowledge/{secret['id']}", headers=viewer), 403)


async def test_the_accounts_knowledge_limits_refuse_clearly(make_client: Any, settings: Any) -> None:
    from dataclasses import replace

    client = await make_client(replace(settings, knowledge_max_documents=2, knowledge_max_account_tokens=1000))
    tenant = await provision(client)
    await expect(await _add(client, tenant.bot_id, {"question": "Open on Sunday?", "answer": "No."}), 201)
    big = "Roggenbrot mit Kümmel und Salz. " * 200  # far more than 1000 tokens
    body = await expect(await _add(client, tenant.bot_id, {"title": "Big", "text": big}), 409)
    assert body["error"]["code"] == "limit_reached" and "1000 tokens" in body["error"]["message"]
    await expect(await _add(client, tenant.bot_id, {"question": "Open on Monday?", "answer": "Yes."}), 201)
    body = await expect(await _add(client, tenant.bot_id, {"question": "Parking?", "answer": "Yes."}), 409)
    assert "2 knowledge documents" in body["error"]["message"]
    listed = await expect(await client.get(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", headers=auth()), 200)
    assert len(listed["documents"]) == 2


async def test_an_upload_over_the_limit_is_a_413(make_client: Any, settings: Any) -> None:
    from dataclasses import replace

    client = await make_client(replace(settings, knowledge_max_upload_bytes=4096))
    tenant = await provision(client)
    body = await expect(await _add(client, tenant.bot_id, _upload(b"a" * 5000, "big.txt", "text/plain")), 413)
    assert body["error"]["code"] == "payload_too_large"
    assert (await expect(await client.get(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", headers=auth()), 200))[
        "documents"
    ] == []


async def test_a_malformed_multipart_body_is_a_400(client: TestClient) -> None:
    tenant = await provision(client)
    boundary = "b0undary"
    raw = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="\x1d\u00d9"\r\n\r\nx\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    headers = {**auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", data=raw, headers=headers)
    error = await expect_error(response, 400)
    assert "malformed" in error["message"]
    listed = await expect(await client.get(f"{ADMIN}/bots/{tenant.bot_id}/knowledge", headers=auth()), 200)
    assert listed["documents"] == []


async def test_another_bots_documents_do_not_change_what_a_bot_finds(client: TestClient) -> None:
    bakery = await provision(client, name="Bakery")
    other = await provision(client, name="Other")
    await expect(await _add(client, bakery.bot_id, {"title": "Preise", "text": PRICES}), 201)
    await expect(await _add(client, bakery.bot_id, {"question": "Roggenbrot glutenfrei?", "answer": "Nein."}), 201)
    before = await _search(client, bakery.bot_id, "Roggenbrot Preis")

    # Another account's bot fills the index with the same words: the bakery's term statistics are its own (on
    # SQLite the count and average length of chunks are the whole index's, so scores move; the order does not).
    for n in range(5):
        await expect(await _add(client, other.bot_id, {"title": f"Roggenbrot {n}", "text": "Roggenbrot " * 20}), 201)
    after = await _search(client, bakery.bot_id, "Roggenbrot Preis")
    assert [(r["document_id"], r["text"], r["relevant"]) for r in after] == [
        (r["document_id"], r["text"], r["relevant"]) for r in before
    ]
