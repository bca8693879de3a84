"""What a turn is charged: the provider's `usage`, believed only as far as the request could have cost.

The provider's count is authoritative while it is possible: its tokenizer, its chat framing and a reasoning
model's hidden tokens are its own, and the gateway's estimate differs from them a little. A figure beyond what the
request allowed is not possible, whatever the cause (a provider bug, a proxy that adds up wrong, a server that
ignores `max_tokens`), and the business owner must not pay for it. So, part by part:

- prompt: believed up to the gateway's own count of the prompt it sent plus a tolerance (a quarter, plus 64
  tokens: framing constants of newer or non-OpenAI models, a differently tokenizing local model). Beyond that the
  account is charged the gateway's own count, not the ceiling: the figure is wrong, so none of it is used.
- completion: believed up to the `max_tokens` / `max_completion_tokens` the gateway sent, which the model cannot
  exceed. Beyond that the account is charged the tokens of the reply the gateway received (at most `max_tokens`):
  what certainly was produced. Hidden reasoning tokens are then not charged, since the figures that would say how
  many there were are the wrong ones.
- details: cached tokens never exceed the charged prompt, reasoning tokens never exceed the charged completion.

Negative, fractional or missing counts never get here: the LLM client rejects such a body as malformed
(core/llm.py). What is left is whole numbers of any size, and a charge bounded by the request keeps every sum
the database does (quota, cost in nano-dollars) far inside 64-bit integers. The provider's own figures are kept
with the usage row (`reported_usage`) and logged for the operator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.chat import TokenUsage

# The gateway's prompt count may be this much short of the provider's before the provider's figure is disbelieved.
PROMPT_TOLERANCE_DIVISOR = 4  # a quarter of the count
PROMPT_TOLERANCE_TOKENS = 64  # and a few messages' framing, for short prompts


@dataclass(frozen=True, slots=True)
class UsageBounds:
    """The most a request can have cost, from what the gateway sent."""

    prompt_estimate: int  # the gateway's count of the prompt it sent (the cookbook rule, core/tokens.py)
    max_completion_tokens: int  # the max_tokens / max_completion_tokens it sent

    @property
    def max_prompt_tokens(self) -> int:
        return self.prompt_estimate + self.prompt_estimate // PROMPT_TOLERANCE_DIVISOR + PROMPT_TOLERANCE_TOKENS


@dataclass(frozen=True, slots=True)
class Charge:
    """What the account is charged for one completion, next to what the provider reported."""

    charged: TokenUsage
    reported: TokenUsage

    @property
    def bounded(self) -> bool:
        """True when the provider's figures were not charged as they came."""
        return self.charged != self.reported

    def reported_json(self) -> str | None:
        """The provider's figures for the usage row when they were not charged as reported, else None.

        Text, not numbers: a figure beyond 64-bit integers is kept exactly as the provider sent it."""
        if not self.bounded:
            return None
        r = self.reported
        figures = {
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cached_tokens": r.cached_tokens,
            "reasoning_tokens": r.reasoning_tokens,
        }
        return json.dumps(figures, separators=(",", ":"))


def charge_for(reported: TokenUsage, bounds: UsageBounds, *, reply_tokens: int) -> Charge:
    """The charge for a completion whose usage the provider reported as `reported`; `reply_tokens` is the
    gateway's count of the reply text it received (used only when the completion figure is impossible)."""
    if 0 <= reported.prompt_tokens <= bounds.max_prompt_tokens:
        prompt = reported.prompt_tokens
    else:
        prompt = bounds.prompt_estimate
    if 0 <= reported.completion_tokens <= bounds.max_completion_tokens:
        completion, reasoning = reported.completion_tokens, reported.reasoning_tokens
    else:
        completion, reasoning = min(max(reply_tokens, 0), bounds.max_completion_tokens), 0
    charged = TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(max(reported.cached_tokens, 0), prompt),
        reasoning_tokens=min(max(reasoning, 0), completion),
    )
    return Charge(charged=charged, reported=reported)
