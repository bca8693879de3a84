"""Bodies and answers of the provisioning API (/api/admin) that are not the records themselves.

A plan, an account, a bot, an API key, a credit entry and a channel are answered as their records
(core/models.py); creation takes the record's settings, an update any of them (`partial`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from api.query import Count, QueryModel
from api.shapes import AccountQuota, ApiModel, Changes, partial
from core.fields import Choice, Credential, NotNull, Text, WholeNumber
from core.models import (
    OPERATOR_CREDIT_KINDS,
    Account,
    AccountSettings,
    ApiKey,
    Bot,
    BotSettings,
    Channel,
    CreditEntry,
    KnowledgeDocument,
    Plan,
    PlanSettings,
)

if TYPE_CHECKING:  # to the type checker an update body is what every update body is: sent() gives its fields
    PlanChanges = Changes
    AccountChanges = Changes
    BotChanges = Changes
    ChannelChanges = Changes
else:
    PlanChanges = partial(PlanSettings, "PlanChanges")
    AccountChanges = partial(AccountSettings, "AccountChanges")
    BotChanges = partial(BotSettings, "BotChanges")

# A knowledge text sent as JSON; the body limit (MAX_BODY_BYTES) bounds it first. Longer texts: upload a file.
MAX_KNOWLEDGE_TEXT_CHARS = 1_000_000

Platform = Literal["messenger", "instagram", "whatsapp"]
OperatorCreditKind = Literal["purchase", "grant", "refund", "adjustment"]
assert set(OperatorCreditKind.__args__) == set(OPERATOR_CREDIT_KINDS)  # type: ignore[attr-defined]


class PlanList(ApiModel):
    plans: list[Plan]


class AccountDetail(Account):
    quota: AccountQuota


class AccountList(ApiModel):
    accounts: list[Account]


class LockRequest(ApiModel):
    locked: bool


class ApiKeyRequest(ApiModel):
    name: Annotated[Annotated[str, Text(100)] | None, NotNull()] = Field(
        default=None, description="a name to recognise the key by"
    )


class IssuedApiKey(ApiKey):
    key: str = Field(description="the API key itself: shown in this answer only, stored only as a hash")


class ApiKeyList(ApiModel):
    api_keys: list[ApiKey]


class CreditRequest(ApiModel):
    tokens: Annotated[int, Field(ge=-(10**12), le=10**12), WholeNumber] = Field(
        description="positive adds; purchase and grant must be positive; never zero",
        json_schema_extra={"not": {"const": 0}},
    )
    kind: Annotated[OperatorCreditKind, Choice]
    note: Annotated[str, Text(500)] | None = None


class CreditLedgerView(ApiModel):
    balance_tokens: int
    entries: list[CreditEntry]


class BotList(ApiModel):
    bots: list[Bot]


class ChannelConnect(ApiModel):
    platform: Annotated[Platform, Choice]
    external_id: Annotated[str, Text(64)] = Field(
        description="the numeric Page id, Instagram account id or WhatsApp phone_number_id",
        json_schema_extra={"pattern": "^[0-9]+$"},
    )
    access_token: Annotated[str, Credential(4096)] = Field(description="write-only: never returned")
    app_secret: Annotated[str, Credential(256)] | None = Field(
        default=None, description="write-only: this channel's own Meta app secret"
    )
    verify_token: Annotated[str, Credential(256)] | None = Field(
        default=None, description="write-only: this channel's own verify token"
    )


class ChannelSettings(ApiModel):
    """What an owner may change on a connected channel (each optional in ChannelChanges)."""

    access_token: Annotated[str, Credential(4096)] = Field(description="write-only: never returned")
    app_secret: Annotated[str, Credential(256)] | None = Field(
        description="write-only: this channel's own Meta app secret"
    )
    verify_token: Annotated[str, Credential(256)] | None = Field(
        description="write-only: this channel's own verify token"
    )
    status: Annotated[Literal["active", "disabled"], Choice] = Field(
        description="disabled: messages are recorded, not answered"
    )


if not TYPE_CHECKING:
    ChannelChanges = partial(ChannelSettings, "ChannelChanges")


class ChannelList(ApiModel):
    channels: list[Channel]


class KnowledgeRequest(ApiModel):
    """One document: a text (`title` and `text`, plain or Markdown), one FAQ entry (`question` and `answer`), or a
    page to fetch (`url`, with an optional `title`)."""

    title: Annotated[str, Text(200)] | None = Field(default=None, description="required with text")
    text: Annotated[str, Text(MAX_KNOWLEDGE_TEXT_CHARS)] | None = Field(default=None, description="plain or Markdown")
    question: Annotated[str, Text(2000)] | None = None
    answer: Annotated[str, Text(20_000)] | None = None
    url: Annotated[str, Text(2000)] | None = Field(default=None, description="an http:// or https:// page")

    @model_validator(mode="after")
    def _one_kind(self) -> KnowledgeRequest:
        faq = self.question is not None or self.answer is not None
        if sum((self.text is not None, faq, self.url is not None)) > 1:
            raise PydanticCustomError("not_one_kind", "send one of: text, question and answer, or url; not both", {})
        if self.text is not None and self.title is None:
            raise PydanticCustomError("not_titled", "is required with text", {"field": "title"})
        if faq and (self.question is None or self.answer is None):
            missing = "answer" if self.answer is None else "question"
            raise PydanticCustomError("not_whole", "is required with an FAQ entry", {"field": missing})
        if self.text is None and not faq and self.url is None:
            raise PydanticCustomError("not_one_kind", "send a text (title and text), an FAQ entry or a url", {})
        return self


class KnowledgeList(ApiModel):
    documents: list[KnowledgeDocument]


class SearchQuery(QueryModel):
    q: Annotated[str, Text(2000)] = Field(description="the question, as a customer would ask it")
    limit: Annotated[int, Count(1, 50)] = Field(default=5, description="the most results")


class KnowledgeResult(ApiModel):
    document_id: str
    title: str
    text: str = Field(description="the chunk, as the model is shown it")
    score: float = Field(
        description="orders the results: BM25 of the chunk for the question, or with EMBEDDINGS_MODEL the fused "
        "reciprocal rank of its lexical and vector ranks"
    )
    relevance: float = Field(description="the share of the question's content words the chunk holds, 0 to 1")
    relevant: bool = Field(
        description="relevance reaches the floor, or similarity KNOWLEDGE_MIN_SIMILARITY: shown to the model"
    )
    similarity: float | None = Field(
        description="cosine similarity to the question (EMBEDDINGS_MODEL set; null without, or not among the nearest)"
    )
    tokens: int


class KnowledgeSearch(ApiModel):
    results: list[KnowledgeResult]
