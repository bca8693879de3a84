"""The bot's persona as the first, stable message of every prompt.

It always comes first and never changes between turns, so OpenAI's automatic prompt caching (prefixes of
1024 tokens or more) can bill it at the cached rate.
"""

from __future__ import annotations

from core.chat import ChatMessage
from core.models import Bot


def persona_message(bot: Bot) -> ChatMessage:
    return ChatMessage(role="system", content=bot.persona)
