"""One guard for every internal entry point: log a moduletrace bug once, never raise it.

Telemetry must never break the host service (OpenTelemetry error-handling spec). Each distinct
failure is logged once, so a bug on a hot path does not flood the service's logs. The project's
own test-suite sets ``STRICT = True`` so that such bugs fail the tests instead of hiding.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("moduletrace")

#: Re-raise internal errors instead of logging them (the project's own tests set this).
STRICT = False

_seen: set[str] = set()
_seen_lock = threading.Lock()
_MAX_SEEN = 1000


def warn_once(key: str, message: str, *args: object, exc_info: bool = False) -> None:
    """Log ``message`` at WARNING the first time ``key`` is seen in this process."""
    with _seen_lock:
        if key in _seen or len(_seen) >= _MAX_SEEN:
            return
        _seen.add(key)
    logger.warning(message, *args, exc_info=exc_info)


def internal_error(where: str, exc: BaseException) -> None:
    """Report an exception raised inside moduletrace itself (not by the user's code)."""
    if STRICT:
        raise exc
    warn_once(
        f"internal:{where}:{type(exc).__name__}",
        "moduletrace: internal error in %s (%s: %s); your code still runs, with less telemetry",
        where,
        type(exc).__name__,
        exc,
        exc_info=True,
    )


def reset_for_tests() -> None:
    """Forget which warnings were logged (tests only)."""
    with _seen_lock:
        _seen.clear()
