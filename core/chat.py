"""Plain chat types shared by the token counter, the LLM client, pricing and the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# Defined with the records, as a conversation keeps it too (core/storage); a chat type all the same.
from core.models import ImagePart as ImagePart

Role = Literal["system", "developer", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat-completions prompt; a customer's message may carry images (vision models)."""

    role: Role
    content: str
    name: str | None = None
    images: tuple[ImagePart, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.images:
            wire["content"] = [{"type": "text", "text": self.content}] + [
                {"type": "image_url", "image_url": {"url": image.url, "detail": "auto"}} for image in self.images
            ]
        if self.name is not None:
            wire["name"] = self.name
        return wire


@dataclass(frozen=True, slots=True)
class ToolParameter:
    name: str
    type: str  # JSON Schema type: "string", ...
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call (OpenAI tool calling), with flat parameters."""

    name: str
    description: str
    parameters: tuple[ToolParameter, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for p in self.parameters:
            properties[p.name] = {"type": p.type, "description": p.description} | (
                {"enum": list(p.enum)} if p.enum else {}
            )
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": [p.name for p in self.parameters if p.required],
                },
            },
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model called a tool: its name, and its arguments as the JSON text the model wrote (maybe not JSON)."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """The `usage` object of a completion; cached ⊆ prompt and reasoning ⊆ completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """What the LLM client hands back for one successful call."""

    text: str
    model: str  # the model the API says answered (often a dated snapshot)
    usage: TokenUsage
    finish_reason: str | None
    request_id: str | None  # upstream x-request-id, for support tickets
    attempts: int
    latency_ms: int
    tool_calls: tuple[ToolCall, ...] = ()
