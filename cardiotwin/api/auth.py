"""Who is calling: HTTP Basic against the store's users, or a bearer token from ``POST /token``.

Every request but ``/health`` carries one of

* ``Authorization: Basic <base64(user:password)>``: checked against the store's argon2id hashes
  by :func:`cardiotwin.workflows.login` (each call is an audited login; failures count towards
  the lockout), or
* ``Authorization: Bearer <token>``: a token issued by ``POST /token`` (itself called with Basic).
  Tokens are random (256 bits), kept only as SHA-256 hashes in the server's memory, expire after
  :data:`TOKEN_IDLE_S` without use or :data:`TOKEN_MAX_AGE_S` after issue, and die with the
  server process.

A request without credentials, or with an unknown or expired token, is refused with 401 and
audited as a failed login (:func:`cardiotwin.workflows.refuse_request`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

__all__ = ["TOKEN_IDLE_S", "TOKEN_MAX_AGE_S", "TokenRegistry"]

TOKEN_IDLE_S = 30 * 60
"""A token unused this long (s) expires: the app's session timeout."""

TOKEN_MAX_AGE_S = 8 * 3600
"""A token expires this long (s) after it was issued, used or not (one shift)."""


@dataclass
class _Entry:
    actor: object
    issued: float
    used: float


class TokenRegistry:
    """Bearer tokens of one server process (thread-safe; only hashes are kept).

    Parameters
    ----------
    idle_s, max_age_s : float
        Idle and absolute lifetimes, s.
    clock : callable
        Monotonic clock (tests may pass their own).
    """

    def __init__(self, *, idle_s: float = TOKEN_IDLE_S, max_age_s: float = TOKEN_MAX_AGE_S,
                 clock=time.monotonic) -> None:
        self.idle_s = float(idle_s)
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Entry] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def issue(self, actor: object) -> str:
        """A new token acting as ``actor``."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._purge(now)
            self._tokens[self._key(token)] = _Entry(actor, now, now)
        return token

    def actor(self, token: str) -> object | None:
        """The actor of a live token (its idle time restarts), None if unknown or expired."""
        now = self._clock()
        with self._lock:
            entry = self._tokens.get(self._key(token))
            if entry is None:
                return None
            if now - entry.used > self.idle_s or now - entry.issued > self.max_age_s:
                del self._tokens[self._key(token)]
                return None
            entry.used = now
            return entry.actor

    def _purge(self, now: float) -> None:
        dead = [k for k, e in self._tokens.items()
                if now - e.used > self.idle_s or now - e.issued > self.max_age_s]
        for k in dead:
            del self._tokens[k]
