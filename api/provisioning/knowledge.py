"""Knowledge: the documents a bot answers from, and the search that shows what it would be shown.

The owner (or the operator) adds a document as JSON (a text, an FAQ entry, a page's URL) or uploads a file (PDF,
.txt, .md, .html); it is cut into chunks and indexed before the answer, which says how many chunks and tokens it
became. A document can be replaced (same id), a page fetched again, and a document deleted.
A file that cannot be read is a 422 that says why, and nothing is stored. Another account's bot or document is a
404, like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from admin.access import check_account, own_account, require_writer
from api.bodies import JsonOrUpload, Query, Upload
from api.errors import ApiError, bad_request
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.provisioning.bots import visible_bot
from api.provisioning.models import KnowledgeList, KnowledgeRequest, KnowledgeResult, KnowledgeSearch, SearchQuery
from core.engine import resolve_model
from core.knowledge.extract import UnreadableDocument, kind_of
from core.knowledge.fetch import FetchFailed, FetchRefused
from core.knowledge.service import FaqSource, FileSource, KnowledgeService, Source, TextSource, UrlSource
from core.models import Bot, KnowledgeDocument
from core.paid_calls import Payer
from core.storage.accounts import AccountStore
from core.storage.bots import BotStore
from core.storage.plans import PlanStore


class Knowledge:
    def __init__(
        self, knowledge: KnowledgeService, bots: BotStore, accounts: AccountStore, plans: PlanStore, *, max_upload: int
    ) -> None:
        self._knowledge = knowledge
        self._bots = bots
        self._accounts = accounts
        self._plans = plans
        self._max_upload = max_upload

    async def add_document(self, request: web.Request, body: JsonOrUpload[KnowledgeRequest]) -> KnowledgeDocument:
        bot = await visible_bot(request, self._bots)
        require_writer(principal(request))
        source = _source(await body.parse_either(self._max_upload))
        model = await self._model(bot)
        with _refusals():
            return await self._knowledge.add(bot, model, source)

    async def replace_document(self, request: web.Request, body: JsonOrUpload[KnowledgeRequest]) -> KnowledgeDocument:
        document, bot = await self._writable_document(request)
        source = _source(await body.parse_either(self._max_upload))
        model = await self._model(bot)
        with _refusals():
            return await self._knowledge.replace(document, bot, model, source)

    async def refetch_document(self, request: web.Request) -> KnowledgeDocument:
        document, bot = await self._writable_document(request)
        if document.kind != "url":
            raise ApiError(409, "conflict", "only a document imported from a URL can be fetched again")
        model = await self._model(bot)
        with _refusals():
            return await self._knowledge.refetch(document, bot, model)

    async def list_documents(self, request: web.Request) -> KnowledgeList:
        bot = await visible_bot(request, self._bots)
        return KnowledgeList(documents=await self._knowledge.documents(bot))

    async def get_document(self, request: web.Request) -> KnowledgeDocument:
        return await self._visible_document(request)

    async def delete_document(self, request: web.Request) -> None:
        document = await self._visible_document(request)
        require_writer(principal(request))
        await self._knowledge.delete(document)

    async def search(self, request: web.Request, query: Query[SearchQuery]) -> KnowledgeSearch:
        bot = await visible_bot(request, self._bots)
        asked = query.parse()
        # With EMBEDDINGS_MODEL the question is embedded, charged to the bot's account like a turn's.
        hits = await self._knowledge.search(
            bot, asked.q, asked.limit, Payer(bot.account_id, bot.id, "knowledge_search")
        )
        return KnowledgeSearch(
            results=[
                KnowledgeResult(
                    document_id=hit.document_id,
                    title=hit.title,
                    text=hit.text,
                    score=round(hit.score, 4),
                    relevance=round(hit.relevance, 4),
                    relevant=hit.relevant,
                    similarity=None if hit.similarity is None else round(hit.similarity, 4),
                    tokens=hit.tokens,
                )
                for hit in hits
            ]
        )

    async def _model(self, bot: Bot) -> str:
        """The model the bot answers with: its tokenizer counts the chunks, as the turn will."""
        account = await self._accounts.get(bot.account_id)
        return resolve_model(bot, await self._plans.get(account.plan_id))

    async def _writable_document(self, request: web.Request) -> tuple[KnowledgeDocument, Bot]:
        document = await self._visible_document(request)
        require_writer(principal(request))
        return document, await self._bots.get(document.bot_id)

    async def _visible_document(self, request: web.Request) -> KnowledgeDocument:
        who = principal(request)
        document = await self._knowledge.get(request.match_info["document_id"], account_id=own_account(who))
        check_account(who, document.account_id)
        return document


def _source(sent: KnowledgeRequest | Upload) -> Source:
    if isinstance(sent, Upload):
        kind = kind_of(sent.filename, sent.content_type)
        if kind is None:
            raise ApiError(
                415, "unsupported_media_type", "upload a PDF, .txt, .md or .html file (the name's ending says which)"
            )
        if not sent.data:
            raise bad_request("the file is empty", field="file")
        title = sent.fields.get("title", "").strip()[:200] or None
        return FileSource(kind, sent.data, sent.filename, title)
    if sent.text is not None:
        assert sent.title is not None  # the model's rule: a text has a title
        return TextSource(sent.title, sent.text)
    if sent.url is not None:
        return UrlSource(sent.url, sent.title)
    assert sent.question is not None and sent.answer is not None
    return FaqSource(sent.question, sent.answer, sent.title)


@contextmanager
def _refusals() -> Iterator[None]:
    """What the knowledge service refuses, as the owner reads it; nothing was stored or changed."""
    try:
        yield
    except FetchRefused as exc:
        raise bad_request(str(exc), field="url") from None
    except FetchFailed as exc:
        raise ApiError(422, "fetch_failed", str(exc)) from None
    except UnreadableDocument as exc:
        raise ApiError(422, "unreadable_document", str(exc)) from None


OPERATIONS = OperationTable(Knowledge, tag="admin", security=JWT)
OPERATIONS.post(
    "/bots/{bot_id}/knowledge",
    Knowledge.add_document,
    summary="Add a document to a bot's knowledge",
    description="JSON: a text with its title, one FAQ entry (question and answer), or a page's `url` (fetched, its "
    "readable text kept). Or multipart/form-data with a `file` (PDF, .txt, .md, .html; KNOWLEDGE_MAX_UPLOAD_BYTES) "
    "and an optional `title`. The document is chunked and indexed before the answer. 400: a URL whose address is "
    "loopback, private or link-local (unless the operator allows it); 422: the file or page cannot be read or "
    "fetched (nothing is stored); 409: the account's knowledge limits would be passed.",
    errors=(403, 409, 415, 422),
)
OPERATIONS.get("/bots/{bot_id}/knowledge", Knowledge.list_documents, summary="A bot's knowledge documents")
OPERATIONS.get(
    "/bots/{bot_id}/knowledge/search",
    Knowledge.search,
    summary="What the bot would be shown for a question",
    description="The bot's best chunks for `q`, best first, with their BM25 score and relevance (the share of the "
    "question's words they hold); `relevant` ones are shown to the model, within the bot's knowledge_tokens.",
)
OPERATIONS.get("/knowledge/{document_id}", Knowledge.get_document, summary="One knowledge document")
OPERATIONS.put(
    "/knowledge/{document_id}",
    Knowledge.replace_document,
    summary="Replace a knowledge document's content",
    description="The same bodies as adding one; the document keeps its id. On any refusal the old content stays.",
    errors=(403, 409, 415, 422),
)
OPERATIONS.post(
    "/knowledge/{document_id}/refetch",
    Knowledge.refetch_document,
    summary="Fetch a page imported from a URL again",
    description="Its chunks are replaced by the page as it is now. 409: the document was not imported from a URL.",
    status=200,
    errors=(403, 409, 422),
)
OPERATIONS.delete(
    "/knowledge/{document_id}",
    Knowledge.delete_document,
    summary="Delete a knowledge document",
    description="Its chunks go in the same commit: no later search or turn shows them.",
    errors=(403,),
)
