"""The sandbox's built-in model: the fake OpenAI the tests use, counting tokens with the real tokenizers (so the
figures the dashboard shows are the ones OpenAI would report), answering like a very plain assistant:
  - with the first knowledge excerpt the gateway showed it, when there is one;
  - by handing the conversation to a person when the customer asks for one (and the bot may);
  - otherwise by saying what it was told."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from core.chat import ChatMessage
from core.handoff import HANDOFF_TOOL
from core.knowledge.service import KNOWLEDGE_PREAMBLE
from core.tokens import TokenCounter
from sandbox.fakes.openai_server import FakeOpenAI

_ASKS_FOR_A_PERSON = re.compile(r"\b(human|person|agent|someone|somebody|staff)\b", re.IGNORECASE)
_EXCERPT = re.compile(r"^\[1\] (.+?)(?:\n\n\[2\] |\Z)", re.DOTALL | re.MULTILINE)


def sandbox_model(tokens: TokenCounter) -> FakeOpenAI:
    model = FakeOpenAI(count_prompt_tokens=prompt_counter(tokens), count_text_tokens=tokens.count_text)
    model.reply_with(_reply)
    model.call_tool_with(_handoff)
    return model


def prompt_counter(tokens: TokenCounter) -> Callable[[str, list[dict[str, Any]]], int]:
    """The prompt's tokens as OpenAI counts them (the cookbook's framing, with tiktoken), from a request's
    messages; images are counted by the fake itself."""

    def count(model: str, messages: list[dict[str, Any]]) -> int:
        def text(content: Any) -> str:
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""

        return tokens.count_messages(
            model, [ChatMessage(role=m["role"], content=text(m.get("content")), name=m.get("name")) for m in messages]
        )

    return count


def _last_customer_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _reply(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        content = message.get("content")
        if message.get("role") == "system" and isinstance(content, str) and content.startswith(KNOWLEDGE_PREAMBLE):
            found = _EXCERPT.search(content)
            if found:  # a chunk starts with its document's title, as its own paragraph
                paragraphs = found.group(1).strip().split("\n\n")
                return f"From what I know: {' '.join(paragraphs[1:] or paragraphs)[:600]}"
    return f"(The sandbox's model repeats what it is told.) You said: {_last_customer_text(body)}"


def _handoff(body: dict[str, Any]) -> tuple[str, str] | None:
    if _ASKS_FOR_A_PERSON.search(_last_customer_text(body)):
        return HANDOFF_TOOL.name, json.dumps({"reason": "the customer asked for a person"})
    return None
