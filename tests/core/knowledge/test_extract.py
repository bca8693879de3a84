"""Readable text from uploads: a page without its chrome, a PDF's pages, and clear refusals."""

from __future__ import annotations

import io

import pypdf
import pytest

from core.knowledge.extract import UnreadableDocument, extract, extract_html, kind_of
from tests.support.pdf import make_pdf


def test_html_keeps_headings_paragraphs_and_lists_but_not_scripts_navigation_or_footers() -> None:
    page = (
        "<html><head><title> Bäckerei  Müller </title><style>p{color:red}</style></head><body>"
        "<header>Logo</header><nav><a href='/'>Start</a></nav><div hidden>Cookie banner</div>"
        "<h1>Preise</h1><p>Roggen <b>4,20&nbsp;€</b></p><ul><li>Dinkel</li><li>Weizen</li></ul>"
        "<script>track('visit')</script><aside>Newsletter</aside><footer>Impressum</footer></body></html>"
    )
    extracted = extract_html(page)
    assert extracted.title == "Bäckerei Müller"
    assert extracted.text == "# Preise\n\nRoggen 4,20 €\n\n- Dinkel\n- Weizen"


def test_pdf_pages_are_read_with_their_letters() -> None:
    extracted = extract("pdf", make_pdf([["Grüße aus München: Straße, señor, 5 €"], ["Seite zwei"]], title="Brief"))
    assert extracted.title == "Brief" and extracted.pages == 2
    assert extracted.text == "Grüße aus München: Straße, señor, 5 €\n\nSeite zwei"


def _encrypted() -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf([["secret"]]))))
    writer.encrypt("owner-and-user-password", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("pdf", b"%PDF-1.4\n" + b"\x13" * 300, "damaged"),
        ("pdf", b"GIF89a", "not a PDF"),
        ("pdf", make_pdf([[]]), "no text"),
        ("pdf", _encrypted(), "encrypted"),
        ("text", b"caf\xe9", "not UTF-8"),
        ("markdown", b"a\x00b", "binary"),
    ],
    ids=["damaged-pdf", "not-a-pdf", "scanned-pdf", "encrypted-pdf", "latin-1-text", "binary-text"],
)
def test_unreadable_files_are_refused_with_the_reason(kind: str, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableDocument, match=reason):
        extract(kind, data)


def test_the_reader_is_chosen_by_the_name_then_by_the_content_type() -> None:
    assert kind_of("Price List.PDF", "application/octet-stream") == "pdf"
    assert kind_of("faq.md", None) == "markdown"
    assert kind_of(None, "text/html; charset=utf-8") == "html"
    assert kind_of("photo.jpg", "image/jpeg") is None
