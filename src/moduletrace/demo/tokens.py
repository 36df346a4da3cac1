"""Short-lived access tokens for the demo (HMAC-signed, with an expiry), as an auth service issues.

A token is ``v1.<subject>.<expiry ms>.<signature>``; the secret lives only in memory. Tokens
are never logged nor put in a span.
"""

from __future__ import annotations

import hashlib
import hmac
import time


class TokenExpired(Exception):
    """The token's expiry has passed (a 401 with error="invalid_token")."""


class TokenInvalid(Exception):
    """The token is malformed or its signature does not match."""


def _sign(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()[:32]


def issue(secret: bytes, subject: str, ttl_s: float) -> str:
    payload = f"v1.{subject}.{int((time.time() + ttl_s) * 1000)}"
    return f"{payload}.{_sign(secret, payload)}"


def verify(secret: bytes, token: str) -> str:
    """The token's subject; raises TokenInvalid or TokenExpired."""
    try:
        version, subject, expiry, signature = token.split(".")
    except ValueError:
        raise TokenInvalid("malformed token") from None
    if version != "v1" or not hmac.compare_digest(signature, _sign(secret, f"v1.{subject}.{expiry}")):
        raise TokenInvalid("bad signature")
    if int(expiry) < time.time() * 1000:
        raise TokenExpired("token expired")
    return subject
