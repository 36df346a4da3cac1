"""One classification of why a load failed, shared by the loader (what to retry) and ``diagnose``.

Both read the same signals: an HTTP status, an exception's type name and its message. The order is
the one ``diagnose`` documents: a pool timeout first (a long wait can push a token past its expiry,
and then the pool was the first fault), then auth, then timeouts, not-found and unavailability::

    >>> classify("sqlalchemy.exc.TimeoutError", "QueuePool limit of size 5 overflow 0 reached")
    'pool'
    >>> classify("httpx.HTTPStatusError", status=401)
    'auth'
"""

from __future__ import annotations

import re
from typing import Literal

Failure = Literal["auth", "pool", "not_found", "timeout", "unavailable", "error"]

POOL_MESSAGE = re.compile(
    r"QueuePool limit of size (\d+) overflow (-?\d+) reached, connection timed out, timeout (\d+(?:\.\d+)?)"
    r"|couldn't get a connection after|pool (?:of size \d+ )?exhausted|PoolTimeout"
    # the database's own limit (max_connections, SQLSTATE 53300): the connections are starved there
    r"|too many clients already|remaining connection slots are reserved|too many connections",
    re.IGNORECASE,
)
#: The database server out of connection slots (PostgreSQL's max_connections, MySQL's max_connections).
SERVER_FULL = re.compile(r"too many clients already|remaining connection slots are reserved|too many connections", re.I)
_POOL_TYPE = re.compile(
    r"PoolTimeout|sqlalchemy\.exc\.TimeoutError|PoolExhausted|QueuePool|Pool|TooManyConnections", re.IGNORECASE
)
_AUTH_TYPE = re.compile(r"Expired|Unauthori[sz]ed|Forbidden|InvalidToken|Token|JWT|Auth|Signature", re.IGNORECASE)
_SKEW = re.compile(r"not yet valid|ImmatureSignature|\bnbf\b|issued in the future", re.IGNORECASE)
_TIMEOUT_TYPE = re.compile(r"Timeout", re.IGNORECASE)
_NOT_FOUND_TYPE = re.compile(r"NotFound|DoesNotExist|NoResultFound|LookupError|KeyError", re.IGNORECASE)
_NOT_FOUND_TEXT = re.compile(r"not ?found|NotFound|DoesNotExist|NoResultFound|\b404\b|missing", re.IGNORECASE)
_UNAVAILABLE_TYPE = re.compile(r"Connect|Unavailable|ConnectionError|RemoteProtocolError", re.IGNORECASE)
_MESSAGE_SCAN = 2048  # only the head of a message is read: the work on a failure stays bounded


def classify(error_type: str = "", message: str = "", status: int | None = None) -> Failure:
    """The cause named by an HTTP status, an exception type name and its message, first match wins."""
    text = message[:_MESSAGE_SCAN]
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status in (429, 502, 503, 504):
        return "unavailable"
    if _POOL_TYPE.search(error_type) or POOL_MESSAGE.search(text):
        return "pool"
    if _AUTH_TYPE.search(error_type) or _SKEW.search(text):
        return "auth"
    if _TIMEOUT_TYPE.search(error_type):
        return "timeout"
    if _NOT_FOUND_TYPE.search(error_type):
        return "not_found"
    if _UNAVAILABLE_TYPE.search(error_type):
        return "unavailable"
    return "error"


def classify_exception(exc: BaseException) -> Failure:
    """:func:`classify` for a live exception: its response's status, its type (and bases), its message."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    names = " ".join(f"{k.__module__}.{k.__qualname__}" for k in type(exc).__mro__[:-2])
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ names no cause
        message = ""
    found = classify(names, message, status if isinstance(status, int) else None)
    if found == "error" and isinstance(exc, OSError):
        return "unavailable"
    return found


def is_clock_skew(message: str) -> bool:
    """A token refused because it is not valid *yet*: the issuer's clock is ahead, it did not expire."""
    return bool(_SKEW.search(message[:_MESSAGE_SCAN]))


def says_not_found(text: str) -> bool:
    """An error text that says the thing read was not there."""
    return bool(_NOT_FOUND_TEXT.search(text[:_MESSAGE_SCAN]))
