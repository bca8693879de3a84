"""Conversation memory: the newest whole turns of a contact's history that fit the bot's token budget.

The budget covers the whole prompt as OpenAI counts it (the cookbook method, reply priming included). A stored
message's share is made from the count kept with it (counted once, when it was stored, with the same tokenizer);
a message counted with another tokenizer (the bot's model changed) or before counts were kept is counted again.
The persona and the new message are always sent; history is added newest turn first, a turn being a customer
message with the replies that followed it, so a question is never sent without its answer or the reverse. The
first turn that does not fit ends the history: older turns are never sent around a gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace

from core.chat import ChatMessage, ImagePart
from core.media.vision import image_tokens
from core.models import StoredMessage
from core.tokens import TokenCounter, encoding_name_for_model

# How many stored messages to look at; a budget large enough to need more is unusual for a chat bot.
HISTORY_WINDOW = 200


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: tuple[ChatMessage, ...]
    tokens: int  # the cookbook count of `messages`: the estimate reserved against the quota
    history_turns: int
    knowledge: ChatMessage | None = None  # the knowledge excerpts it carries, if any
    user_tokens: int = 0  # the new message's own text, as it is stored with it


def build_prompt(
    counter: TokenCounter,
    model: str,
    *,
    persona: ChatMessage,
    history: Sequence[StoredMessage],
    user: ChatMessage,
    budget: int,
    knowledge: ChatMessage | None = None,
    images: Mapping[str, tuple[ImagePart, ...]] | None = None,
    sent: MutableMapping[str, object] | None = None,
) -> Prompt:
    """`knowledge` (the excerpts of core/knowledge) goes right before the new message: the persona and the history
    stay a stable prefix for prompt caching, and its tokens come on top of `budget`, which the history keeps.
    `images`: photos kept with stored messages (a bot's keep_images), by message id; they go back to the model with
    their message, and their tokens count against the budget like the words (a turn whose photos do not fit is sent
    with its words alone; the new message's own photos are not counted here: the caller adds them).
    `sent`: where the history's messages as sent are kept between turns, by message id (ConversationStore.derived):
    read from it, and what it lacks made and put there."""
    # The persona comes back every turn: its count is remembered. count_messages adds the reply priming.
    user_tokens = counter.count_text(model, user.content)
    used = counter.count_messages(model, []) + _framed(counter, model, user, user_tokens)  # the reply priming too
    used += _framed(counter, model, persona, counter.count_steady(model, persona.content))
    kept: list[list[ChatMessage]] = []
    photos = True  # until one does not fit: an older photo is not shown where a newer one was left out
    encoding = encoding_name_for_model(model)
    framing = {role: counter.framed(model, role, 0) for role in ("user", "assistant")}  # what each message adds
    for stored in _turns_newest_first(history):
        cost = 0
        for m in stored:
            counted = m.tokens if m.encoding == encoding else counter.count_text(model, m.content)
            cost += framing["user" if m.role == "user" else "assistant"] + counted
        turn = _as_sent(stored, images or {}, {} if sent is None else sent)
        seen = sum(image_tokens(model, i.width, i.height) for message in turn for i in message.images) if images else 0
        if seen and (not photos or used + cost + seen > budget):  # its photos do not fit: the turn's words may
            turn, seen, photos = [replace(message, images=()) for message in turn], 0, False
        if used + cost + seen > budget:
            break
        used += cost + seen
        kept.append(turn)
    ordered = [message for turn in reversed(kept) for message in turn]
    if knowledge is None:
        return Prompt((persona, *ordered, user), tokens=used, history_turns=len(kept), user_tokens=user_tokens)
    extra = _framed(counter, model, knowledge, counter.count_text(model, knowledge.content))
    messages = (persona, *ordered, knowledge, user)
    return Prompt(messages, used + extra, len(kept), knowledge=knowledge, user_tokens=user_tokens)


def _framed(counter: TokenCounter, model: str, message: ChatMessage, content_tokens: int) -> int:
    """`message`'s share of a prompt, its content counting `content_tokens` (the cookbook's rule, a name included)."""
    named = 0 if message.name is None else counter.count_text(model, message.name) + 1  # tokens_per_name
    return counter.framed(model, message.role, content_tokens) + named


def _turns_newest_first(history: Sequence[StoredMessage]) -> Iterator[list[StoredMessage]]:
    """Oldest-first history as turns, newest first: each user message opens a turn, the replies after it join it
    (replies before the first user message make a turn of their own). Walked from the end, so a prompt whose budget
    ends early looks at the newest turns only."""
    replies: list[StoredMessage] = []
    for stored in reversed(history):
        if stored.role == "user":
            replies.reverse()
            yield [stored, *replies]
            replies = []
        else:
            replies.append(stored)
    if replies:
        replies.reverse()
        yield replies


def _as_sent(
    turn: Sequence[StoredMessage], images: Mapping[str, tuple[ImagePart, ...]], sent: MutableMapping[str, object]
) -> list[ChatMessage]:
    """A turn's messages as the model sees them. A person's reply (role agent) was the business speaking: the
    model sees it as the assistant's, so it carries on from it. A message without photos is made once and kept in
    `sent` (each turn of a conversation sends much the same history again)."""
    made: list[ChatMessage] = []
    for m in turn:
        shown = images.get(m.id, ()) if images else ()
        if shown:
            made.append(ChatMessage("user", m.content, None, shown))
            continue
        message = sent.get(m.id)
        if not isinstance(message, ChatMessage):
            message = ChatMessage("user" if m.role == "user" else "assistant", m.content)
            sent[m.id] = message
        made.append(message)
    return made
