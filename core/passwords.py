"""People's passwords: argon2id (memory-hard), with the library's parameters (RFC 9106's second recommendation),
and a verification that takes as long for an unknown email as for a wrong password, so a sign-in's answer time
does not say who has an account."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Passwords shorter than this are refused when a person is added; the longest is bounded so hashing stays cheap.
MIN_LENGTH = 12
MAX_LENGTH = 1024


class WeakPassword(ValueError):
    """Too short or too long; the message says which."""


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._decoy = self._hasher.hash("a password nobody has: verified for an email nobody has")

    def hash(self, password: str) -> str:
        if len(password) < MIN_LENGTH:
            raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
        if len(password) > MAX_LENGTH:
            raise WeakPassword(f"a password may have at most {MAX_LENGTH} characters")
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches the stored hash; with no stored hash (no such person) the same work is done
        against a decoy and the answer is no."""
        if len(password) > MAX_LENGTH:
            return False
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False
