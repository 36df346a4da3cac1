"""Keep secrets out of spans: scrub credentials from free text such as exception messages.

Module ids and exception messages are the only free text moduletrace puts in a span. A database
driver's error can quote a connection string, an HTTP client's error a header; these patterns
replace the secret part with ``***`` and keep the rest readable.
"""

from __future__ import annotations

import re

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  ->  scheme://user:***@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)"), r"\g<pre>***"),
    # Authorization: Bearer xyz / Basic xyz, also bare "Bearer xyz"
    (re.compile(r"(?i)\b(?P<pre>bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\g<pre> ***"),
    # password=..., pwd: ..., secret="...", api_key=..., token=...
    (
        re.compile(
            r"(?i)\b(?P<pre>(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|"
            r"refresh[_-]?token|token|authorization|cookie)\s*[=:]\s*)"
            r"(?:\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        r"\g<pre>***",
    ),
    # JSON Web Tokens anywhere (three base64url segments, the first one a JSON header)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***"),
)


def redact(text: str) -> str:
    """Return ``text`` with credentials replaced by ``***``.

    >>> redact("could not connect to postgresql://app:s3cr3t@db:5432/modules")
    'could not connect to postgresql://app:***@db:5432/modules'
    """
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
