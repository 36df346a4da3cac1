"""Keep secrets out of spans: scrub credentials from free text such as exception messages.

Module ids and exception text are the only free text moduletrace puts in a span. A database
driver's error can quote a connection string, an HTTP client's error a header, a ``repr`` of a
settings dict a password; these patterns replace the secret part with ``***`` and keep the rest
readable. When in doubt they over-redact: a lost port number is cheaper than a leaked password.

The text is attacker-sized (an exception message can be megabytes), so:

- ``redact(text, limit=n)`` cuts *before* it scans: it scans at most ``n + 512`` characters
  (the extra lets a secret that straddles the cut be recognised from what follows it), and drops
  a token cut in half rather than keep the first half of a secret (a mask, ``***``, stays);
- every pattern is linear: each can start only at the beginning of a run of its characters
  (a negative look-behind), and each repetition runs over one character class (or alternatives
  that begin differently), so no input makes Python's backtracking engine go quadratic; a secret
  is masked whole however long it is (``user:password@`` to the last ``@`` of its run).
"""

from __future__ import annotations

import re

#: How far past the cut ``redact`` looks, so that ``password=`` just before the cut, or an ``@``
#: just after it, still identifies the secret.
_LOOKAHEAD = 512
#: A token cut by the limit is dropped when at most this long (secrets are tokens).
_MAX_PARTIAL = 256
_ELLIPSIS = "\u2026"

#: A quoted value, to its closing quote, else to the end of its line (over-redacting an unclosed one).
_QUOTED = r"""(?:"(?:[^"\\\n]|\\.)*(?:"|(?=\n)|$)|'(?:[^'\\\n]|\\.)*(?:'|(?=\n)|$))"""

#: (pattern, replacement, substrings one of which the text must hold for the pattern to match,
#: whether to look for them in the lower-cased text).
_PATTERNS: tuple[tuple[re.Pattern[str], str, tuple[str, ...], bool], ...] = (
    # PEM private keys: the body (base64, no dashes) goes.
    (
        re.compile(r"(?P<pre>-----BEGIN [A-Z ]{0,32}PRIVATE KEY-----)[^-]{1,16384}"),
        r"\g<pre>***",
        ("private key-----",),
        True,
    ),
    # Authorization / Proxy-Authorization headers: the credentials go, whatever the scheme,
    # also in a dict's repr ({'Authorization': 'token ghp_...'}).
    (
        re.compile(
            r"(?i)(?<![\w.-])(?P<pre>(?:proxy-)?authorization['\"]?[ \t]{0,8}[=:][ \t]{0,8}['\"]?"
            r"(?:(?:bearer|basic|token|digest|negotiate|ntlm|apikey|key|aws4-hmac-sha256)[ \t]{1,8})?)"
            r"(?!\*\*\*)[^\s'\",;]+"
        ),
        r"\g<pre>***",
        ("authorization",),
        True,
    ),
    # A bare "Bearer xyz" / "Basic xyz" anywhere else.
    (re.compile(r"(?i)(?<![\w-])(?P<pre>bearer)[ \t]{1,8}[^\s'\",;]{6,}"), r"\g<pre> ***", ("bearer",), True),
    (re.compile(r"(?i)(?<![\w-])(?P<pre>basic)[ \t]{1,8}[A-Za-z0-9+/=._~-]{6,}"), r"\g<pre> ***", ("basic",), True),
    # Tokens recognisable by their shape alone: JSON Web Tokens (also cut after their second
    # segment), GitHub, Slack, Stripe and Google API keys, AWS access key ids.
    (re.compile(r"(?<![\w-])eyJ[\w-]{5,}\.[\w-]{5,}(?:\.[\w-]*)?"), "***", ("eyj",), True),
    (
        re.compile(
            r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_\w{20,255}|xox[abposr]-[\w-]{10,255}"
            r"|[sr]k_(?:live|test)_\w{10,255}|AIza[\w-]{35})(?![\w-])"
        ),
        "***",
        ("gh", "xox", "k_live_", "k_test_", "AIza"),
        False,
    ),
    (
        re.compile(
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}(?![A-Za-z0-9])"
        ),
        "***",
        ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA"),
        False,
    ),
)

#: The start of scheme://user:password@host (what follows is found by `_redact_userinfo`).
_URL_USERINFO = re.compile(r"(?<![\w+.-])[A-Za-z][\w+.-]{0,31}://[^\s/:@'\"<>]{0,128}:")
#: The start of user:password@host without a scheme (proxy settings, some driver messages).
_BARE_USERINFO = re.compile(r"(?<![\w.%+:/*-])[A-Za-z_][\w.%+-]{0,63}:(?!//)")
_HOST = re.compile(r"[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}(?![\w.@-])")
#: Where a password in a URL ends at the latest.
_URL_END = re.compile(r"[\s'\"<>]")

#: key=value, key: value, 'key': 'value', "key": "value" (any key: `_SENSITIVE_KEY` judges it).
_PAIR = re.compile(r"(?<![\w.-])(?P<key>[A-Za-z_][\w.-]{0,63})['\"]?[ \t]{0,8}[=:][ \t]{0,8}")
_VALUE = re.compile(_QUOTED + r"|[^\s,;&'\"(){}\[\]<>]+")
#: Keys whose value is a secret: password, aws_secret_access_key, api-key, X-Amz-Signature ...
_SENSITIVE_KEY = re.compile(
    r"(?i)pass(?:word|wd|phrase)?$|passw|pwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|token|credential|cookie|session[_-]?id|signature|^sig$|^auth$"
)
#: What a text must hold (lower-cased) for `_SENSITIVE_KEY` to find anything in it.
_SENSITIVE_TRIGGERS = (
    "pass",
    "pwd",
    "secret",
    "key",
    "token",
    "credential",
    "cookie",
    "session",
    "signature",
    "sig",
    "auth",
)


def redact(text: str, limit: int | None = None) -> str:
    """Return ``text`` with credentials replaced by ``***``, at most ``limit`` characters long.

    >>> redact("could not connect to postgresql://app:s3cr3t@db:5432/modules")
    'could not connect to postgresql://app:***@db:5432/modules'
    """
    if limit is None or len(text) <= limit:
        return _scrub(text)
    return _truncate(_scrub(text[: limit + _LOOKAHEAD]), limit)


def _scrub(text: str) -> str:
    # Each pattern runs only when the text holds what it needs (a C-speed substring test): most
    # messages and stack traces hold no secret, and then cost a few substring tests.
    lower = text.lower()
    if "://" in text:
        text = _redact_userinfo(text, _URL_USERINFO, need_host=False)
    if "@" in text:
        text = _redact_userinfo(text, _BARE_USERINFO, need_host=True)
    for pattern, replacement, triggers, in_lower in _PATTERNS:
        haystack = lower if in_lower else text
        if any(trigger in haystack for trigger in triggers):
            text = pattern.sub(replacement, text)
    if any(trigger in lower for trigger in _SENSITIVE_TRIGGERS):
        text = _redact_pairs(text)
    return text


def _redact_userinfo(text: str, prefix: re.Pattern[str], need_host: bool) -> str:
    """``user:password@host`` -> ``user:***@host``; the password runs to the *last* ``@`` before a
    space or quote, however far, so ``p@ss``, ``pa/ss`` and long passwords go whole (a URL with an
    ``@`` in its query loses its host and path too: over-redacted). Found with ``str.rfind``, not by
    backtracking, once per run of non-space characters however many prefixes it holds: linear."""
    parts: list[str] = []
    position = 0
    run_end = at = 0  # the end of the run the last match was in, and its last "@"
    while (match := prefix.search(text, position)) is not None:
        start = match.end()
        if start >= run_end:
            end = _URL_END.search(text, start)
            run_end = end.start() if end is not None else len(text)
            at = text.rfind("@", start, run_end)
        if at <= start or text.startswith("***@", start) or (need_host and _HOST.match(text, at + 1) is None):
            parts.append(text[position:start])
            position = start
            continue
        parts.append(text[position:start] + "***")
        position = at
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)


def _redact_pairs(text: str) -> str:
    parts: list[str] = []
    position = 0
    while (match := _PAIR.search(text, position)) is not None:
        start = match.end()
        value = _VALUE.match(text, start) if _SENSITIVE_KEY.search(match["key"]) else None
        if value is None or text.startswith("***", start):
            # Not a secret: go on right after the separator (the value may hold a pair of its own).
            parts.append(text[position:start])
            position = start
            continue
        quote = text[start] if text[start] in "'\"" else ""
        parts.append(f"{text[position:start]}{quote}***{quote}")
        position = value.end()
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` (already cut once, before scanning) and drop the half token at the cut."""
    head = text[: limit - 1]
    if len(text) > len(head) and text[len(head)].isspace():
        return head + _ELLIPSIS  # the cut falls between two tokens
    start = max(0, len(head) - _MAX_PARTIAL)
    space = max(head.rfind(" ", start), head.rfind("\n", start), head.rfind("\t", start))
    if head.endswith("***"):
        pass  # the token at the cut was a secret, redacted: its mask stays
    elif space >= 0:
        head = head[: space + 1]
    elif len(head) <= _MAX_PARTIAL:
        head = ""
    return head + _ELLIPSIS
