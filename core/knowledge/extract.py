"""Readable text out of what an owner uploads or points to: PDF, HTML, Markdown and plain text.

Each reader returns Markdown-ish text (headings as `#` lines, paragraphs split by blank lines) for the chunker,
or raises `UnreadableDocument` saying why in words an owner understands; nothing is stored then.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser

# What a file's name may end with, and the reader for each (content types name the same kinds).
KINDS = {".pdf": "pdf", ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
CONTENT_TYPES = {
    "application/pdf": "pdf",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
}


# The most pages a PDF may have (about 1,000 pages is a long manual; more is rarely a knowledge document, and the
# reading runs on a thread of the web process).
MAX_PDF_PAGES = 2000


class UnreadableDocument(ValueError):
    """The upload or page cannot be read as the kind it claims to be; the message says why."""


@dataclass(frozen=True, slots=True)
class Extracted:
    title: str | None  # a title the document itself gives (HTML <title>, PDF metadata), if any
    text: str
    pages: int = 1


def kind_of(filename: str | None, content_type: str | None) -> str | None:
    """The reader for a file by its name's ending, else by its declared content type; None: not one we read."""
    if filename:
        lowered = filename.lower()
        for ending, kind in KINDS.items():
            if lowered.endswith(ending):
                return kind
    if content_type:
        return CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
    return None


def extract(kind: str, data: bytes) -> Extracted:
    if kind == "pdf":
        return extract_pdf(data)
    text = decode_text(data)
    if kind == "html":
        return extract_html(text)
    return Extracted(title=None, text=text)


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM is dropped); a file with NUL bytes is binary, whatever its name says."""
    if b"\x00" in data:
        raise UnreadableDocument("the file is not text (it holds binary data)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableDocument("the file is not UTF-8 text; save it as UTF-8 and upload it again") from None


def extract_pdf(data: bytes) -> Extracted:
    if not data.startswith(b"%PDF-"):
        raise UnreadableDocument("the file is not a PDF")
    # Imported here: pypdf is 13 MB of memory that a gateway whose owners upload no PDF never needs.
    import pypdf
    from pypdf.errors import DependencyError, PyPdfError

    # pypdf logs warnings about damaged files at WARNING on its own loggers; the owner gets our answer instead.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise UnreadableDocument("the PDF is encrypted; upload a copy without a password")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise UnreadableDocument(f"the PDF has {len(reader.pages)} pages; at most {MAX_PDF_PAGES} are read")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except UnreadableDocument:
        raise
    except DependencyError:  # an encryption this build cannot open, said before any password is asked for
        raise UnreadableDocument("the PDF is encrypted; upload a copy without a password") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, EOFError):
        # pypdf reports a damaged file in several ways besides its own errors.
        raise UnreadableDocument("the PDF is damaged and cannot be read") from None
    text = "\n\n".join(page for page in pages if page)
    if not text.strip():
        raise UnreadableDocument("the PDF holds no text (scanned pages would need OCR, which is not supported)")
    return Extracted(title=str(title).strip() or None if title else None, text=text, pages=len(pages))


def extract_html(html: str) -> Extracted:
    parser = _Readable()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some malformed markup this way
        raise UnreadableDocument("the HTML is too malformed to read") from None
    text = re.sub(r"\n{3,}", "\n\n", "".join(parser.out)).strip()
    title = " ".join("".join(parser.title).split()) or None
    return Extracted(title=title, text=text)


# Elements that are never the page's readable text: code, styling, navigation, site chrome, forms.
_SKIPPED = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "canvas",
        "iframe",
        "nav",
        "header",
        "footer",
        "aside",
        "form",
        "button",
        "select",
        "head",
    }
)
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "li",
        "ul",
        "ol",
        "table",
        "tr",
        "br",
        "blockquote",
        "pre",
        "dd",
        "dt",
        "dl",
        "figure",
        "figcaption",
        "address",
        "hr",
    }
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"})


class _Readable(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] = []
        self._skip: list[str] = []  # open skipped elements (nested ones included)
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIPPED or _hidden(attrs):
            if tag not in _VOID:
                self._skip.append(tag)
            return
        if self._skip:
            return
        if tag in _HEADINGS:
            self.out.append("\n\n" + "#" * _HEADINGS[tag] + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in _BLOCKS:
            self.out.append("\n\n" if tag not in ("br", "tr") else "\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag in _HEADINGS or tag in _BLOCKS:
            self.out.append("" if tag == "li" else "\n" if tag == "tr" else "\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self._skip:
            return
        self.out.append(re.sub(r"\s+", " ", data))


def _hidden(attrs: list[tuple[str, str | None]]) -> bool:
    values = dict(attrs)
    return "hidden" in values or values.get("aria-hidden") == "true" or values.get("role") == "navigation"
