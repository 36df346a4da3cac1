"""Nothing secret enters a span: the scan every test runs under, checked on what it must catch."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import moduletrace
from moduletrace.instrumentation._failure import MAX_MESSAGE
from moduletrace.instrumentation.file_exporter import encode_spans
from moduletrace.redaction import redact
from tests import conftest
from tests.conftest import Recorded, find_secrets, install_provider, reset_trace_globals


@pytest.mark.parametrize(
    "leak",
    [
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "postgresql://app:hunter2@db/modules",
        "password=correct-horse",
        "Basic YWRtaW46c2VjcmV0",
        "cookie: session=abc123",
        "postgresql://app:p@ss@db/modules",
        "postgresql://app:pa/ss@db/modules",
        "{'password': 'correct-horse'}",
        '{"password": "correct-horse"}',
        "Authorization: token ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "Authorization: Bearer tok",
        "key AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ],
)
def test_the_scan_recognises_a_leak(leak: str) -> None:
    assert find_secrets(leak)


@pytest.mark.parametrize(
    "clean",
    [
        "postgresql://app:***@db/modules",
        "password=***",
        "Bearer ***",
        "module m-17 not found",
        "token expired",
        "{'password': '***'}",
        "Authorization: token ***",
        "Authorization: Bearer ***",
        "aws_secret_access_key=***",
    ],
)
def test_the_scan_leaves_redacted_and_ordinary_text_alone(clean: str) -> None:
    assert find_secrets(clean) == []


def test_the_scan_sees_what_exporters_export(spans: Recorded) -> None:
    with moduletrace.load_request("m-1") as span:
        span.set_attribute("leaky", "Bearer abcdefghijkl")
    assert find_secrets(conftest._exported[-1]) == ["Bearer abcdefghijkl"]
    del conftest._exported[-1]  # the leak was planted on purpose: do not fail this test for it


def test_exceptions_with_credentials_reach_spans_redacted(spans: Recorded) -> None:
    with pytest.raises(ConnectionError):
        with moduletrace.db_commit("m-2"):
            raise ConnectionError("connect to postgresql://app:hunter2@db failed; Authorization: Bearer abcdefghij")
    assert find_secrets(conftest._exported[-1]) == []


# --- the shapes a secret takes in an exception message, each value checked in the span itself ---

#: (what the message says, the secret value in it). The values are made of characters nothing else
#: in a span is made of, so finding one of their pieces in an exported span can only be a leak.
SHAPES = [
    ("connect to postgresql://app:{}@db:5432/modules failed", "P@SS-7Q2X"),
    ("connect to postgresql://app:{}@db:5432/modules failed", "PA/SS-7Q2X"),
    ("proxy app:{}@proxy.internal refused", "P@SS-7Q2X"),
    ("settings {{'password': '{}', 'user': 'app'}}", "HX7-Q2-ZZ9"),
    ('payload {{"password": "{}", "user": "app"}}', "HX7-Q2-ZZ9"),
    ("request headers Authorization: token {}", "ghp_ABCDEFGHIJ0123456789KLMNOPQRST012345"),
    ("request headers Authorization: Bearer {}", "QX7"),
    ("request headers {{'Authorization': 'Bearer {}'}}", "QX7-ZZ9-WW4"),
    ("signed with {} in us-east-1", "AKIAQX7ZZ9WW4HH5JJ6K"),
    ("aws_secret_access_key={} in profile", "WJALRXUTNFEMI/K7MDENG/BPXRFICY+KEY"),
    ("aws_secret_access_key = {}", "WJALRXUTNFEMI/K7MDENG/BPXRFICY+KEY"),
    ("token rejected: {}", "eyJQX7ZZ9WW4.eyJHH5JJ6KK7.QX7ZZ9WW4HH5"),
    ("login with password={} denied", "HX7@Q2/ZZ9+"),
    ("connect to postgresql://app:{}@[::1]:5432/modules failed", "P@SS-7Q2X"),
    ("proxy app:{}@8.8.4.4:3128 refused", "P@SS-7Q2X"),
    ("connect to postgresql://app:{}@db", "P@SS-7Q2X"),
    ("docs at https://example.com:8443/help; postgresql://app:{}@db:5432 refused", "P@SS-7Q2X"),
    ("connect to postgresql://app:{}@db failed", "Q7X-" * 64),
    # Longer than any bound a pattern once had (256 in a URL, 512 in a pair, quoted or not).
    ("connect to postgresql://app:{}@db failed", "Q7X-" * 150),
    ("login with password={} denied", "HX7Q" * 175),
    ("settings {{'password': '{}', 'user': 'app'}}", "HX7Q" * 175),
    ("request headers Authorization: token {}", "QX7Z" * 300),
    ("settings {{'password': '{}\nnext line", "HX7-Q2-ZZ9"),  # no closing quote on its line
]
SHAPE_IDS = [
    "url-at",
    "url-slash",
    "bare-userinfo",
    "dict-repr",
    "json",
    "auth-token",
    "auth-bearer-short",
    "auth-in-dict",
    "aws-key-id",
    "aws-secret",
    "aws-secret-spaced",
    "jwt",
    "password-pair",
    "url-ipv6-host",  # the host after the @ need not look like a name in a URL
    "bare-userinfo-ip",  # a host that begins with a one-character label
    "url-at-the-end",  # nothing after the URL: no space or quote ends it
    "second-url",  # the first URL holds no password, the second does
    "url-256-chars",
    "url-600-chars",
    "password-pair-700-chars",
    "quoted-password-700-chars",
    "auth-token-1200-chars",
    "quoted-password-unclosed",
]


def pieces(secret: str, size: int = 6) -> set[str]:
    """Every run of ``size`` characters of ``secret`` (all of it when shorter)."""
    if len(secret) <= size:
        return {secret}
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaked(span: ReadableSpan, secret: str) -> list[str]:
    """The pieces of ``secret`` found anywhere in ``span`` as exported (status, events, attributes)."""
    texts = [json.dumps(encode_spans([span])), span.status.description or ""]
    texts += [str(value) for event in span.events for value in (event.attributes or {}).values()]
    texts += [str(value) for value in (span.attributes or {}).values()]
    return sorted({piece for piece in pieces(secret) for text in texts if piece in text})


@pytest.mark.parametrize(("shape", "secret"), SHAPES, ids=SHAPE_IDS)
def test_a_secret_in_an_exception_message_never_reaches_the_span(spans: Recorded, shape: str, secret: str) -> None:
    @moduletrace.load_db_query
    def read(module_id: str) -> None:
        raise ConnectionError(shape.format(secret))

    with pytest.raises(ConnectionError):
        read("m-40")
    with pytest.raises(ConnectionError):
        with moduletrace.db_commit("m-40"):
            raise ConnectionError(shape.format(secret))
    for span in spans.all():
        assert span.status.status_code is StatusCode.ERROR
        assert leaked(span, secret) == []
        assert "***" in (span.status.description or "")


@pytest.mark.parametrize(("shape", "secret"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("offset", [990, 1010, 1020, 1024, 1500, 1530])
def test_a_secret_at_the_cut_of_a_long_message_never_reaches_the_span(
    spans: Recorded, shape: str, secret: str, offset: int
) -> None:
    message = "x" * (offset - 1) + " " + shape.format(secret) + " " + "y" * 3000
    with pytest.raises(ValueError):
        with moduletrace.db_commit("m-41"):
            raise ValueError(message)
    span = spans.one("module_create_db_commit")
    assert leaked(span, secret) == []
    assert len(span.status.description or "") <= MAX_MESSAGE


#: A port and a path of 257 characters up to an ``@``: longer than the longest password looked for.
LONG_PATH = "8443/export?q=" + "x" * 236 + "&to=ops"
READABLE = [
    pytest.param(
        "connect to postgresql://app:@db:5432/modules failed",
        "connect to postgresql://app:@db:5432/modules failed",
        id="an-empty-password-leaves-the-url-as-it-is",
    ),
    pytest.param(
        "postgresql://app:P@SS@db:5432/modules refused; headers {'Authorization': 'token ghp_"
        + "A" * 36
        + "'}; aws_secret_access_key=WJALR",
        "postgresql://app:***@db:5432/modules refused; headers {'Authorization': 'token ***'}; "
        "aws_secret_access_key=***",
        id="url-header-pair",
    ),
    pytest.param(
        "postgresql://app:S3CRET@db:5432/modules refused; ask dba@example.com",
        "postgresql://app:***@db:5432/modules refused; ask dba@example.com",
        id="the-password-ends-where-the-url-ends",
    ),
    pytest.param(
        "https://app:S3CRET@api.internal/export?ids="
        + ",".join(f"m-{i}" for i in range(60))
        + "&to=ops@example.com failed",
        "https://app:***@example.com failed",
        id="the-last-at-sign-of-the-url-ends-its-password-however-far",  # over-redacted: a long password may hold @
    ),
    pytest.param(
        # With no "@" within 256 characters, the farthest one of the run ends the password: a path
        # that looks like a long password is over-redacted rather than a long password kept.
        "https://api.internal:" + LONG_PATH + "@example.com failed",
        "https://api.internal:***@example.com failed",
        id="an-at-sign-257-characters-after-the-colon-still-ends-a-password",  # see url-600-chars
    ),
    pytest.param(
        "postgresql://app:***@db/modules?user=ops@example.com refused",
        "postgresql://app:***@db/modules?user=ops@example.com refused",
        id="a-url-the-driver-masked-stays-as-it-is",
    ),
    pytest.param(
        "postgresql://app:@db/modules refused", "postgresql://app:@db/modules refused", id="an-empty-password"
    ),
    pytest.param(
        "dsn template app:{password}@{host} was never formatted",
        "dsn template app:{password}@{host} was never formatted",
        id="no-host-after-the-at-sign-is-no-userinfo",
    ),
    pytest.param(
        "login failed for user=app password=******** (masked by the driver)",
        "login failed for user=app password=******** (masked by the driver)",
        id="a-value-the-host-masked-stays-as-it-is",
    ),
    pytest.param(
        "settings {'password': 'HX7-Q2-ZZ9', 'user': 'app'}",
        "settings {'password': '***', 'user': 'app'}",
        id="a-quoted-value-keeps-its-quotes",
    ),
    pytest.param("password=XYZZY-42 rejected", "password=*** rejected", id="an-unquoted-value-gets-no-quotes"),
]


@pytest.mark.parametrize(("message", "description"), READABLE)
def test_redaction_keeps_the_rest_of_the_message_readable(spans: Recorded, message: str, description: str) -> None:
    with pytest.raises(ConnectionError):
        with moduletrace.db_commit("m-42"):
            raise ConnectionError(message)
    assert spans.one("module_create_db_commit").status.description == description


# --- the cut: at most the limit, whole words, never the first half of a token ---------------------


def test_a_message_of_exactly_the_limit_is_kept_whole_and_one_character_more_is_cut(spans: Recorded) -> None:
    whole = ("word " * 300)[:MAX_MESSAGE]  # ends with a whole word
    for message in (whole, whole + "s"):
        with pytest.raises(ValueError):
            with moduletrace.db_commit("m-44"):
                raise ValueError(message)
    kept, cut = (span.status.description for span in spans.named("module_create_db_commit"))
    assert kept == whole
    assert cut == whole[: MAX_MESSAGE - len("word")] + "\u2026"  # the cut word goes, an ellipsis says so
    assert len(cut) <= MAX_MESSAGE


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        pytest.param("alpha beta gamma", 16, "alpha beta gamma", id="exactly-the-limit"),
        pytest.param("alpha beta gamma", 11, "alpha beta\u2026", id="the-cut-falls-on-a-space"),
        pytest.param("alpha beta gamma", 15, "alpha beta \u2026", id="the-cut-word-goes"),
        pytest.param("one two three", 12, "one two \u2026", id="back-to-the-last-space"),
        pytest.param("one\ntwo\nthree", 12, "one\ntwo\n\u2026", id="back-to-the-last-newline"),
        pytest.param("one\ttwo\tthree", 12, "one\ttwo\t\u2026", id="back-to-the-last-tab"),
        pytest.param(" " + "x" * 300, 100, " \u2026", id="back-to-a-leading-space"),
        pytest.param("x" * 300, 257, "\u2026", id="a-cut-token-of-256-characters-goes-whole"),
        pytest.param("x" * 300, 258, "x" * 257 + "\u2026", id="a-cut-token-of-257-characters-is-no-secret"),
        pytest.param("intro " + "x" * 400, 300, "intro " + "x" * 293 + "\u2026", id="a-space-257-back-is-too-far"),
        pytest.param("intro\n" + "x" * 400, 300, "intro\n" + "x" * 293 + "\u2026", id="a-newline-257-back-too"),
        pytest.param("intro\t" + "x" * 400, 300, "intro\t" + "x" * 293 + "\u2026", id="a-tab-257-back-too"),
    ],
)
def test_a_cut_keeps_whole_words_and_drops_a_short_token_it_cuts(text: str, limit: int, cut: str) -> None:
    assert redact(text, limit) == cut


def test_a_message_that_redaction_shortens_below_the_limit_keeps_its_words() -> None:
    token = "eyJ" + "QX7ZZ9" * 8 + ".eyJ" + "HH5JJ6" * 8 + ".WW4"
    text = redact("token rejected: " + token + " by the gateway", limit=60)
    assert text.startswith("token rejected: *** by the") and len(text) <= 60
    assert "QX7ZZ9" not in text and "HH5JJ6" not in text


# --- property: wherever a secret sits in whatever text, no piece of it reaches a span ------------

filler = st.text(alphabet=string.ascii_lowercase + "  \n.,:", max_size=40).map(lambda s: s * 40)
values = st.text(alphabet=string.ascii_uppercase + string.digits + "@/+=!%-", min_size=8, max_size=40) | st.text(
    alphabet=string.ascii_uppercase + string.digits + "@/+=!%-", min_size=250, max_size=900
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=filler,
    after=filler,
    shape=st.sampled_from(
        [
            "postgresql://app:{}@db:5432/modules",
            "redis://:{}@cache:6379",
            "app:{}@proxy.internal",
            "{{'password': '{}'}}",
            '{{"password": "{}"}}',
            "password={}",
            "pwd: {}",
            "Authorization: Bearer {}",
            "Authorization: Basic {}",
            "aws_secret_access_key={}",
            "X-Amz-Signature={}",
        ]
    ),
    value=values,
    cut=st.integers(min_value=0, max_value=1600),
)
def test_no_piece_of_a_secret_anywhere_in_a_message_reaches_the_span(
    before: str, after: str, shape: str, value: str, cut: int
) -> None:
    if "Basic" in shape:
        value = value.replace("@", "A").replace("!", "B").replace("%", "C")  # a Basic credential is base64
    message = (before + "x" * cut)[:cut] + " " + shape.format(value) + " " + after
    recorded = install_provider()
    try:
        with pytest.raises(ValueError):
            with moduletrace.load_request("m-43"):
                raise ValueError(message)
        span = recorded.one("module_load_request")
        assert leaked(span, value) == [], message
    finally:
        recorded.provider.shutdown()
        reset_trace_globals()
