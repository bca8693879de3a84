"""Domain errors raised by the core; the HTTP layer maps each to a status and an error code."""

from __future__ import annotations

from core.models import QuotaSnapshot


class GatewayError(Exception):
    """Base for failures a caller should see as a clear, typed answer rather than a 500."""


class NotFound(GatewayError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class Conflict(GatewayError):
    pass


class StorageUnavailable(GatewayError):
    """The database is busy, locked, full or unreachable right now: nothing was stored; try again shortly."""


class ValueOutOfRange(GatewayError):
    """The database refused a value it cannot hold (a number beyond 64 bits, say): nothing was stored. The API's
    fields are bounded well inside what both backends hold, so this is the last line, never a 500."""


class LimitReached(GatewayError):
    """A documented limit of the account would be passed (documents, knowledge tokens): nothing was stored."""


class NotConfigured(GatewayError):
    pass


class AccountLocked(GatewayError):
    def __init__(self, account_id: str) -> None:
        super().__init__("this account is locked; contact the operator")
        self.account_id = account_id


class QuotaExceeded(GatewayError):
    def __init__(self, snapshot: QuotaSnapshot, needed: int) -> None:
        super().__init__(
            f"the monthly token allowance is used up: {snapshot.remaining_tokens} tokens left, "
            f"this message needs up to {needed}"
        )
        self.snapshot = snapshot
        self.needed = needed


class RateLimited(GatewayError):
    def __init__(self, retry_after: float, limit_per_minute: int) -> None:
        super().__init__(f"too many messages: the limit is {limit_per_minute} per minute")
        self.retry_after = retry_after
        self.limit_per_minute = limit_per_minute


class UpstreamUnavailable(GatewayError):
    """The model provider did not produce an answer; nothing was charged.

    `code` is the provider's error code (or our own label for network failures) and `temporary` says whether
    trying again later may help, which the HTTP layer turns into 503 versus 502.
    """

    def __init__(self, message: str, *, code: str, temporary: bool, attempts: int) -> None:
        super().__init__(message)
        self.code = code
        self.temporary = temporary
        self.attempts = attempts


class Forbidden(GatewayError):
    """The caller is known but may not do this (a viewer writing, an owner doing the operator's work)."""


class WindowClosed(GatewayError):
    """The platform's reply window for this customer has closed: nothing was sent."""


class ChannelRefused(GatewayError):
    """The platform refused or did not take a message sent through a channel (Graph's own words in the message)."""
