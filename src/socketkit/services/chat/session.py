"""Per-connection bookkeeping that needs time: flood control and password checks (pure).

Flood control is a token bucket: a client may send ``burst`` messages at once, then
``rate`` per second. The server holds back what arrives faster (the penalty: the
client is served at the bucket's pace) and disconnects a client whose backlog passes
the configured queue ("Excess Flood"). Time is passed in; nothing here reads a clock.

Operator passwords are stored as ``pbkdf2-sha256$ROUNDS$SALT$HASH`` (``socketkit
passwd`` makes them) or, for quick local setups, as plain text; both are compared in
constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

__all__ = ["PBKDF2_ROUNDS", "TokenBucket", "hash_password", "verify_password"]

PBKDF2_ROUNDS: Final = 200_000
"""PBKDF2-HMAC-SHA256 iterations for operator passwords (OWASP's 2023 floor is 600,000 for
SHA-256 login forms; OPER is rare and interactive, 200,000 keeps it under 0.2 s here)."""


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second."""

    burst: float = 20.0
    rate: float = 5.0
    tokens: float = 20.0
    updated: float = 0.0

    def configure(self, burst: int, rate: float) -> None:
        """Set the limits (and fill the bucket)."""
        self.burst = float(burst)
        self.rate = rate
        self.tokens = float(burst)

    def take(self, now: float) -> float:
        """Spend a token if one is there: 0.0; otherwise the seconds until one is."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def hash_password(password: str, salt: bytes, rounds: int = PBKDF2_ROUNDS) -> str:
    """The stored form of an operator password (``salt``: 16 random bytes, from the caller)."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    b64 = base64.b64encode
    return f"pbkdf2-sha256${rounds}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches the stored form (hash or plain text), in constant time."""
    if stored.startswith("pbkdf2-sha256$"):
        try:
            _, rounds, salt, digest = stored.split("$")
            expected = base64.b64decode(digest)
            actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(rounds))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(actual, expected)
    return hmac.compare_digest(stored.encode(), password.encode())
