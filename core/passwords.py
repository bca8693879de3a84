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


# What an unknown email's "password" is checked against: the hash of a random password nobody kept, made with the
# default parameters below (the same work as a real check). A constant, not hashed at start-up: a hash takes
# 64 MiB and tens of milliseconds, which every process start (and every test's app) would pay.
_DECOY = "$argon2id$v=19$m=65536,t=3,p=4$5xtD1JTGmbtITmLAzeHz0Q$6gjRn51Jx7qRdc22IU5NM10Z+W68MR7aXl1ANZOUmCc"


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()  # argon2id, memory 64 MiB, 3 passes, 4 lanes (RFC 9106)
        self._decoy = _DECOY

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
