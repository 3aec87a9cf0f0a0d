"""Bookkeeping that needs time: flood control, password attempts, password checks (pure).

Flood control is a token bucket: a client may send ``burst`` messages at once, then
``rate`` per second. The server holds back what arrives faster (the penalty: the
client is served at the bucket's pace) and disconnects a client whose backlog passes
the configured queue ("Excess Flood"). Time is passed in; nothing here reads a clock.

Password attempts (OPER, the connection password) are throttled the same way, per
connection and per address, because each one costs a PBKDF2 check: a throttled
attempt is answered at once and never checked.

Operator passwords are stored as ``pbkdf2-sha256$ROUNDS$SALT$HASH`` (``socketkit
passwd`` makes them) or, for quick local setups, as plain text; both are compared in
constant time. ``verify_password`` is slow on purpose (0.1-0.2 s): the server runs it
on worker threads, never on the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "MAX_THROTTLED_ADDRESSES",
    "OPER_ATTEMPTS_BURST",
    "OPER_ATTEMPT_INTERVAL_S",
    "PASSWORD_ATTEMPTS_PER_ADDRESS",
    "PASSWORD_ATTEMPT_INTERVAL_S",
    "PBKDF2_ROUNDS",
    "UNKNOWN_NAME_HASH",
    "AttemptThrottle",
    "TokenBucket",
    "hash_password",
    "verify_password",
]

PBKDF2_ROUNDS: Final = 200_000
"""PBKDF2-HMAC-SHA256 iterations for operator passwords (OWASP's 2023 floor is 600,000 for
SHA-256 login forms; OPER is rare and interactive, 200,000 keeps it under 0.2 s here)."""

UNKNOWN_NAME_HASH: Final = f"pbkdf2-sha256${PBKDF2_ROUNDS}${'A' * 22}==${'A' * 43}="
"""What an OPER for a name that is not configured is checked against (it never matches):
the reply then takes as long as for a real operator with a wrong password, so the
time to answer does not tell which operator names exist."""

OPER_ATTEMPTS_BURST: Final = 3
"""OPER attempts a connection may make at once before it has to wait (ergo's default
login throttle allows 3 attempts a minute; an operator mistyping twice still gets in)."""

OPER_ATTEMPT_INTERVAL_S: Final = 20.0
"""Then one more OPER attempt per this many seconds on that connection: 3 a minute, as
ergo; ngircd adds a 10 s penalty per failed OPER."""

PASSWORD_ATTEMPTS_PER_ADDRESS: Final = 10
"""Password checks (OPER and the connection password) that connections from one address
may start at once: opening more connections must not multiply the guesses."""

PASSWORD_ATTEMPT_INTERVAL_S: Final = 6.0
"""Then one more per this many seconds for that address (10 a minute). A check that
succeeds gives its attempt back, so clients that know the password never run short."""

MAX_THROTTLED_ADDRESSES: Final = 10_000
"""Addresses whose attempts are remembered; the least recently seen is forgotten first,
so that an attacker rotating addresses cannot grow the table (forgetting one only
gives that address a fresh budget)."""


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

    def wait_time(self, now: float) -> float:
        """0.0 if a token is there, otherwise the seconds until one is (nothing spent)."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Spend a token if one is there: 0.0; otherwise the seconds until one is."""
        wait = self.wait_time(now)
        if wait == 0.0:
            self.tokens -= 1.0
        return wait

    def give_back(self) -> None:
        """Return a spent token (the attempt it paid for did not count)."""
        self.tokens = min(self.burst, self.tokens + 1.0)

    def spend(self, tokens: float, now: float) -> None:
        """Pay ``tokens`` for work already done, going into debt if need be: what comes
        next waits until the debt is refilled (``wait_time``)."""
        self.wait_time(now)
        self.tokens -= tokens


@dataclass(slots=True)
class AttemptThrottle:
    """Password attempts per address: a ``TokenBucket`` each, ``burst`` at once, then
    one per ``interval_s``; at most ``max_keys`` addresses remembered (least recently
    used forgotten first)."""

    burst: int = PASSWORD_ATTEMPTS_PER_ADDRESS
    interval_s: float = PASSWORD_ATTEMPT_INTERVAL_S
    max_keys: int = MAX_THROTTLED_ADDRESSES
    _buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def bucket(self, key: str, now: float) -> TokenBucket:
        """The bucket of ``key`` (a full one for an address not seen recently)."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(float(self.burst), 1.0 / self.interval_s, float(self.burst), now)
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket

    def take(self, key: str, now: float, also: TokenBucket | None = None) -> float:
        """Spend one attempt of ``key`` (and of ``also``, a connection's own bucket) if
        both have one: 0.0; otherwise the seconds to wait, and nothing is spent."""
        mine = self.bucket(key, now)
        wait = max(mine.wait_time(now), also.wait_time(now) if also is not None else 0.0)
        if wait == 0.0:
            mine.take(now)
            if also is not None:
                also.take(now)
        return wait

    def give_back(self, key: str) -> None:
        """Return an attempt of ``key`` (it succeeded, or was never checked)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.give_back()

    def __len__(self) -> int:
        return len(self._buckets)


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
