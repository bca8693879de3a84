"""Bodies, queries and answers of the conversations API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from api.pagination import PageQuery
from api.query import AccountId
from api.shapes import ApiModel
from core.fields import EpochMs, NotNull, Text, WholeNumber
from core.storage.reads.conversations import ConversationPlatform, MessageView

# The longest pause one call may set: a week, as for a bot's own handover pause.
MAX_PAUSE_MINUTES = 7 * 24 * 60


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class ConversationsQuery(PageQuery):
    q: Annotated[Annotated[str, Text(200)] | None, BeforeValidator(_blank_is_none)] = Field(
        default=None, description="search text"
    )
    platform: ConversationPlatform | None = Field(default=None, description="only this platform")
    bot_id: Annotated[Annotated[str, Text(64)] | None, BeforeValidator(_blank_is_none)] = Field(
        default=None, description="only this bot's conversations"
    )
    account_id: AccountId | None = Field(
        default=None,
        description="admin: one account (404 if unknown), default every account; owner or viewer: only their own "
        "(another is 404)",
    )


class LastMessage(ApiModel):
    role: str
    preview: str | None = Field(description="the start of the text")
    created_at: EpochMs | None


class Conversation(ApiModel):
    id: str
    account_id: str
    bot_id: str
    bot_name: str
    platform: ConversationPlatform
    external_id: str = Field(description="the customer's id on the platform (PSID, IGSID, wa_id, relay)")
    message_count: int = Field(ge=0)
    created_at: EpochMs
    last_message_at: EpochMs | None
    last_message: LastMessage | None
    paused: bool = Field(description="true while the bot is paused in this conversation: a person has it")
    paused_reason: Literal["human_takeover", "handoff", "manual"] | None = Field(
        description="human_takeover: a person answered (from the Page or WhatsApp Business app, or through "
        "POST .../messages); handoff: the bot handed the conversation to a person, paused until resumed; manual: "
        "POST .../pause. Null when not paused"
    )
    paused_until: EpochMs | None = Field(
        description="end of the running pause; null when not paused, or for a handoff (paused until resumed)"
    )


class ConversationList(ApiModel):
    conversations: list[Conversation] = Field(
        description="most recent conversation first; contacts without any stored message are left out"
    )
    next_cursor: str | None = Field(description="the cursor of the next page; null on the last page")


class ConversationDetail(ApiModel):
    conversation: Conversation
    pausable: bool = Field(description="false for relay conversations and without a channel")
    messages: list[MessageView] = Field(description="oldest first")
    next_cursor: str | None = Field(description="the cursor of the next page; null on the last page")


class PauseRequest(ApiModel):
    minutes: Annotated[Annotated[int, Field(ge=1, le=MAX_PAUSE_MINUTES), WholeNumber] | None, NotNull()] = Field(
        default=None, description="default: the bot's handover_pause_minutes (30 if that is 0)"
    )


class AgentMessageRequest(ApiModel):
    text: Annotated[str, Text(4096)] = Field(
        description="what the person says to the customer; a text longer than the platform's limit goes as several "
        "messages"
    )


class ErasedCounts(ApiModel):
    contacts: int = Field(ge=0)
    messages: int = Field(ge=0)
    inbox_events: int = Field(ge=0)


class Erasure(ApiModel):
    erased: ErasedCounts
