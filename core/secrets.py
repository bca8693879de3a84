"""Channel secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under SECRETS_KEY.

SECRETS_KEY may hold several comma-separated keys: the first encrypts, every one decrypts, so a key is rotated
by putting the new key first, re-encrypting (`python -m gateway rotate-secrets`), then dropping the old one.
Plaintext secrets exist only in memory; they are never logged and never returned by the API.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretsError(Exception):
    """Secrets cannot be stored or read: no key configured, a bad key, or a value sealed with another key."""


class SecretBox:
    def __init__(self, keys: str | None) -> None:
        self._fernet: MultiFernet | None = None
        if keys:
            try:
                self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
            except (ValueError, TypeError):
                raise SecretsError(
                    "SECRETS_KEY must be 32 random bytes in urlsafe base64 (python -m gateway keygen prints one)"
                ) from None

    @property
    def configured(self) -> bool:
        return self._fernet is not None

    def require(self) -> None:
        """Raise SecretsError now when nothing could be sealed, before any work that would be thrown away."""
        self._require()

    def seal(self, plaintext: str) -> str:
        return self._require().encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._require().decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretsError("a stored secret cannot be decrypted with SECRETS_KEY (was the key changed?)") from None

    def reseal(self, sealed: str) -> str:
        """Re-encrypt under the first key (key rotation)."""
        return self._require().rotate(sealed.encode()).decode()

    def _require(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretsError("SECRETS_KEY is not set, so channel secrets cannot be stored; set it and restart")
        return self._fernet
