"""The diagnosis rules: which cause, how strong, what is missing, and the confounders."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from moduletrace.analysis.diagnosis import Diagnoser, DiagnosisReport, wanted
from moduletrace.conventions import LIFECYCLE_SPAN_NAMES
from moduletrace.spans import KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, STATUS_ERROR, STATUS_UNSET, Span
from tests.support.builders import PROCESS_A, PROCESS_A2, PROCESS_B, creation, load, ns, span

#: The hints a load without data versions gets (what to record so races are decided without clocks).
NO_DATA_VERSIONS = (
    "no data versions: moduletrace.record_data_version(found=..., observed_version=...) on the read "
    "and version=... on the commit decide races without clocks"
)
NOT_FOUND_AFTER_THE_STAGES = (
    "the read found nothing although it came after the commit and the cache update: "
    "a wrong key, a tenant filter, or rows hidden by authorisation"
)


def diagnose(spans: list[Span]) -> DiagnosisReport:
    diagnoser = Diagnoser()
    diagnoser.add_all(spans)
    return diagnoser.report()


def failing_load(
    module: str,
    trace: str,
    at_ms: float,
    *,
    duration_ms: float = 2,
    query: dict[str, Any] | None = None,
    request: dict[str, Any] | None = None,
    resource=PROCESS_A,
) -> list[Span]:  # type: ignore[no-untyped-def]
    request_span = span(
        "load_request",
        module,
        trace,
        at_ms - 1,
        at_ms + duration_ms,
        failed=True,
        resource=resource,
        attributes=request or {},
    )
    query_span = span(
        "load_db_query",
        module,
        trace,
        at_ms,
        at_ms + duration_ms - 0.5,
        failed=True,
        resource=resource,
        parent=request_span.span_id,
        attributes=query or {},
    )
    return [request_span, query_span]


_inner_ids = itertools.count(0xC0000)


def inner(
    trace: str,
    parent: Span,
    start_ms: float,
    end_ms: float,
    attributes: dict[str, Any],
    *,
    failed: bool = True,
    message: str = "",
    name: str = "GET",
) -> Span:
    """A span the load's service ran inside the load (an HTTP or database client span)."""
    return Span(
        trace.rjust(32, "0"),
        format(next(_inner_ids), "016x"),
        parent.span_id,
        name,
        KIND_CLIENT,
        ns(start_ms),
        ns(end_ms),
        STATUS_ERROR if failed else STATUS_UNSET,
        message,
        attributes,
        parent.resource,
    )


def test_a_load_that_raced_the_commit_on_the_same_clock_is_a_race() -> None:
    spans = creation("m-1", "t1", commit_end_ms=20, cache_end_ms=30) + failing_load(
        "m-1", "t1", -10, duration_ms=2.1234567, query={"error.type": "ModuleNotFound"}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail) == ("race", "same-clock timestamps", "db_commit+cache_update")
    assert "error.type: ModuleNotFound" in d.evidence
    request, query = spans[-2:]
    assert (d.module_id, d.trace_id, d.load_span_id, d.load_service) == (
        "m-1",
        "t1".rjust(32, "0"),
        request.span_id,
        "module-service",
    )
    assert d.load_start_ns == query.start_ns  # where the read began
    assert d.duration_ms == 3.123  # the whole load request, to the microsecond


@pytest.mark.parametrize(
    ("resource", "query", "strength"),
    [
        pytest.param(PROCESS_A, {"module.data.found": False}, "data version", id="the-read-recorded-it-missed-the-row"),
        pytest.param(PROCESS_A2, {}, "same-clock timestamps", id="same-host-other-process"),
        pytest.param(PROCESS_B, {}, "cross-host timestamps beyond the skew bound", id="other-host"),
    ],
)
def test_the_strength_of_a_race_says_what_decided_it(resource: Any, query: dict[str, Any], strength: str) -> None:
    # The read [10, 11.5] ms found nothing, or (without data) ended 9.5 ms before the commit began.
    start = 10 if query else -10
    spans = creation("m-1b", "t1b", commit_end_ms=20) + failing_load(
        "m-1b", "t1b", start, resource=resource, query=query
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail) == ("race", strength, "db_commit")


def test_a_stale_read_is_proven_by_data_versions_without_clocks() -> None:
    spans = creation("m-2", "t2", commit_end_ms=20, resource=PROCESS_A)
    spans[1] = spans[1]._replace(attributes={**spans[1].attributes, "module.data.version": 7})
    # The read ran on another host, well after the commit by the clocks, but saw version 6.
    spans += failing_load("m-2", "t2", 200, resource=PROCESS_B, query={"module.data.observed_version": 6})
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail) == ("race", "data version", "stale read (db_commit)")
    assert d.evidence[0] == "the read came after the stage ended and saw nothing: a lagging replica or cache"
    assert any("observed version 6, committed 7" in line for line in d.evidence)


def test_a_read_after_the_commit_that_found_no_row_is_a_stale_read_race() -> None:
    spans = creation("m-2b", "t2b", commit_end_ms=20) + failing_load(
        "m-2b", "t2b", 50, query={"module.data.found": False, "error.type": "ModuleNotFound"}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail) == ("race", "stale read (db_commit)")


def test_a_read_overlapping_the_commit_that_found_nothing_is_a_weaker_race() -> None:
    spans = creation("m-2c", "t2c", commit_end_ms=30) + failing_load(
        "m-2c", "t2c", 10, query={"error.type": "ModuleNotFound"}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength) == ("race", "overlap with a not-found read")
    assert d.evidence[0] == "the read ran while the stage was in flight and found nothing"


def test_a_pool_timeout_and_an_expired_token_on_one_load_is_pool_first_auth_second() -> None:
    spans = creation("m-2d", "t2d", 5, 6) + failing_load(
        "m-2d",
        "t2d",
        50,
        query={"module.pool.timed_out": True, "module.pool.wait_ms": 5000.0},
        request={"module.auth.status": 401, "module.auth.token_expired": True},
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.secondary) == ("pool", ("auth",))


def test_an_expired_token_with_a_401_is_auth_expired() -> None:
    spans = creation("m-3", "t3", 5, 6) + failing_load(
        "m-3",
        "t3",
        50,
        request={
            "module.auth.status": 401,
            "module.auth.error": "invalid_token",
            "module.auth.token_expires_in_s": -12.5,
            "error.type": "TokenExpired",
        },
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail, d.strength) == ("auth", "expired", "status code")
    assert d.evidence == (
        "HTTP 401 at the load",
        'WWW-Authenticate error="invalid_token"',
        "token expired 12.5 s before the request",
        "error.type: TokenExpired",
    )


@pytest.mark.parametrize(
    ("recorded", "detail", "strength", "evidence"),
    [
        pytest.param(
            {"module.auth.status": 403}, "scope", "status code", ("HTTP 403 at the load",), id="a-403-is-scope"
        ),
        pytest.param(
            {"module.auth.status": 401, "module.auth.error": "insufficient_scope"},
            "scope",
            "status code",
            ("HTTP 401 at the load", 'WWW-Authenticate error="insufficient_scope"'),
            id="a-401-for-insufficient-scope-is-scope",
        ),
        pytest.param(
            {"module.auth.token_expired": True},
            "expired",
            "exception",
            ("token rejected at the load",),
            id="a-token-recorded-expired-without-a-status",
        ),
        pytest.param(
            {"error.type": "jwt.exceptions.ExpiredSignatureError"},
            "expired",
            "exception",
            (
                "authentication error jwt.exceptions.ExpiredSignatureError at the load",
                "error.type: jwt.exceptions.ExpiredSignatureError",
            ),
            id="a-token-error-type-alone",
        ),
    ],
)
def test_auth_evidence_says_what_was_refused_and_how_strongly(
    recorded: dict[str, Any], detail: str, strength: str, evidence: tuple[str, ...]
) -> None:
    spans = creation("m-3b", "t3b", 5, 6) + failing_load("m-3b", "t3b", 50, request=recorded)
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail, d.strength, d.evidence) == ("auth", detail, strength, evidence)


@pytest.mark.parametrize(
    ("expires_in_s", "said"),
    [
        (0, "token expired 0.0 s before the request"),
        (0.0, "token expired 0.0 s before the request"),  # never "-0.0"
        (0.5, "token still valid for 0.5 s"),
    ],
)
def test_a_token_expiring_at_the_request_is_expired_and_one_expiring_after_it_still_valid(
    expires_in_s: float, said: str
) -> None:
    recorded = {"module.auth.status": 401, "module.auth.token_expires_in_s": expires_in_s}
    (d,) = diagnose(creation("m-3c", "t3c", 5, 6) + failing_load("m-3c", "t3c", 50, request=recorded)).diagnoses
    assert (d.cause, d.evidence) == ("auth", ("HTTP 401 at the load", said))


def test_a_401_inside_the_load_on_an_http_client_span_is_found() -> None:
    spans = creation("m-4", "t4", 5, 6) + failing_load("m-4", "t4", 50, duration_ms=10)
    client = inner("t4", spans[-1], 52, 55, {"http.response.status_code": 401})
    (d,) = diagnose(spans + [client]).diagnoses
    assert d.cause == "auth" and "HTTP 401 at GET" in d.evidence


def test_a_token_not_yet_valid_is_clock_skew_not_expiry() -> None:
    spans = creation("m-5", "t5", 5, 6) + failing_load(
        "m-5", "t5", 50, request={"module.auth.status": 401, "module.auth.token_not_yet_valid": True}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail, d.strength) == ("auth", "clock skew", "exception")
    assert d.evidence == (
        "the token was not valid yet at the load: issuer and validator clocks differ (clock skew, not expiry)",
    )


def test_a_token_not_yet_valid_said_only_in_the_error_message_is_clock_skew_too() -> None:
    spans = creation("m-5b", "t5b", 5, 6) + failing_load("m-5b", "t5b", 50, request={"module.auth.status": 401})
    spans[-2] = spans[-2]._replace(status_message="The token is not yet valid (iat)")
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail) == ("auth", "clock skew")


def test_a_pool_timeout_on_a_load_that_also_raced_is_pool_first_race_second() -> None:
    spans = creation("m-6", "t6", commit_end_ms=500) + failing_load(
        "m-6",
        "t6",
        -400,
        duration_ms=300,
        query={
            "module.pool.timed_out": True,
            "module.pool.wait_ms": 300.0,
            "module.pool.size": 5,
            "module.pool.in_use": 5,
            "error.type": "sqlalchemy.exc.TimeoutError",
        },
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.secondary) == ("pool", ("race",))
    assert "after 300.0 ms (pool size 5, in use 5)" in d.evidence[0]


QUEUE_POOL = "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00"
PSYCOPG_POOL = "couldn't get a connection after 30.00 sec (" + "x" * 300 + ")"


@pytest.mark.parametrize(
    ("query", "message", "evidence"),
    [
        pytest.param(
            {"error.type": "TimeoutError"},
            QUEUE_POOL,
            ("pool timeout: TimeoutError " + QUEUE_POOL, "error.type: TimeoutError"),
            id="sqlalchemy-s-message",
        ),
        pytest.param(
            {"error.type": "RuntimeError"},
            PSYCOPG_POOL,
            ("pool timeout: " + ("RuntimeError " + PSYCOPG_POOL)[:200], "error.type: RuntimeError"),
            id="psycopg-pool-s-message-quoted-up-to-200-characters",
        ),
        pytest.param(
            {"error.type": "sqlalchemy.exc.TimeoutError"},
            "boom",
            ("pool timeout: sqlalchemy.exc.TimeoutError boom", "error.type: sqlalchemy.exc.TimeoutError"),
            id="a-pool-error-type-alone",
        ),
        pytest.param(
            {"module.pool.timed_out": True},
            "boom",
            ("timed out waiting for a pooled connection after ? ms",),
            id="a-recorded-timeout-without-its-wait",
        ),
    ],
)
def test_a_pool_timeout_is_named_by_the_exception_and_quoted(
    query: dict[str, Any], message: str, evidence: tuple[str, ...]
) -> None:
    spans = creation("m-7", "t7", 5, 6) + failing_load("m-7", "t7", 50, query=query)
    spans[-1] = spans[-1]._replace(status_message=message)
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail, d.evidence) == ("pool", "exception", "timeout", evidence)


@pytest.mark.parametrize(
    ("wait_ms", "timeout_s", "cause"),
    [(950.0, 1.0, "pool"), (1800.0, 2.0, "pool"), (1799.9, 2.0, "unknown"), (10.0, 30.0, "unknown")],
    ids=["a-long-wait-close-to-the-timeout", "exactly-90-percent", "just-under-90-percent", "a-short-wait"],
)
def test_a_wait_of_at_least_90_percent_of_the_pool_timeout_is_weak_pool_evidence(
    wait_ms: float, timeout_s: float, cause: str
) -> None:
    query = {"module.pool.wait_ms": wait_ms, "module.pool.timeout_s": timeout_s}
    (d,) = diagnose(creation("m-8", "t8", 5, 6) + failing_load("m-8", "t8", 50, query=query)).diagnoses
    assert d.cause == cause
    if cause == "pool":
        said = f"waited {wait_ms} ms for a connection, at least 90% of the {timeout_s} s pool timeout"
        assert (d.strength, d.detail, d.evidence) == ("weak", "slow wait", (said,))


def test_a_status_message_is_read_up_to_its_300th_character() -> None:
    spans = []
    for n, padding in enumerate((289, 290)):  # "PoolTimeout" ends at the 300th, then the 301st character
        spans += creation(f"m-8{n}", f"t8{n}", 5, 6) + failing_load(f"m-8{n}", f"t8{n}", 50)
        spans[-1] = spans[-1]._replace(status_message="x" * padding + "PoolTimeout")
    read, cut = diagnose(spans).diagnoses
    assert (read.cause, cut.cause) == ("pool", "unknown")


@pytest.mark.parametrize(
    ("attributes", "failed", "message", "cause"),
    [
        pytest.param({}, True, QUEUE_POOL, "pool", id="a-failed-span-with-only-a-message"),
        pytest.param(
            {"module.pool.wait_ms": 1900.0, "module.pool.timeout_s": 2.0},
            False,
            "",
            "pool",
            id="pool-evidence-on-the-span-current-at-checkout",
        ),
        pytest.param(
            {"module.pool.wait_ms": 5.0}, False, QUEUE_POOL, "unknown", id="a-message-on-a-span-that-did-not-fail"
        ),
    ],
)
def test_spans_inside_the_load_are_evidence_and_their_status_message_only_when_they_failed(
    attributes: dict[str, Any], failed: bool, message: str, cause: str
) -> None:
    spans = creation("m-8b", "t8b", 5, 6) + failing_load("m-8b", "t8b", 50, duration_ms=10)
    spans.append(inner("t8b", spans[-1], 52, 55, attributes, failed=failed, message=message, name="connect"))
    (d,) = diagnose(spans).diagnoses
    assert d.cause == cause


@pytest.mark.parametrize(
    ("start_ms", "end_ms", "cause"),
    [
        pytest.param(49, 60, "auth", id="exactly-the-load-s-window"),
        pytest.param(48.999, 55, "unknown", id="begun-before-the-load"),
        pytest.param(52, 60.001, "unknown", id="ended-after-the-load"),
    ],
)
def test_a_401_is_the_load_s_evidence_only_inside_the_load(start_ms: float, end_ms: float, cause: str) -> None:
    spans = creation("m-8c", "t8c", 5, 6) + failing_load("m-8c", "t8c", 50, duration_ms=10)  # request [49, 60]
    spans.append(inner("t8c", spans[-1], start_ms, end_ms, {"http.response.status_code": 401}))
    (d,) = diagnose(spans).diagnoses
    assert d.cause == cause


def test_a_load_of_a_module_never_created_is_not_found() -> None:
    (d,) = diagnose(failing_load("m-9", "t9", 50, duration_ms=1234.5678)).diagnoses
    assert (d.cause, d.strength, d.detail) == ("not_found", "data", "")
    assert d.evidence == ("no creation span of module m-9 in the data",)
    assert d.duration_ms == 1235.568  # the load request, to the microsecond


def test_a_failed_load_after_commit_and_cache_is_unknown_with_what_to_instrument() -> None:
    spans = creation("m-10", "t10", 5, 6) + failing_load(
        "m-10", "t10", 50, query={"error.type": "ModuleNotFound"}, request={"error.type": "httpx.HTTPStatusError"}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail, d.secondary) == ("unknown", "weak", "", ())
    assert d.evidence == (NOT_FOUND_AFTER_THE_STAGES, "error.type: ModuleNotFound, httpx.HTTPStatusError")
    assert d.missing == (NO_DATA_VERSIONS,)  # it has an error.type and a query span


def test_a_failed_load_with_nothing_recorded_is_told_what_to_record() -> None:
    spans = creation("m-10b", "t10b", 5, 6) + [span("load_request", "m-10b", "t10b", 49, 52, failed=True)]
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.evidence) == ("unknown", ())
    assert d.missing == (
        "no error.type on the failed load: let the exception reach the stage span (or set error.type) "
        "so the cause has a name",
        "no module_load_db_query span: wrap the read in moduletrace.load_db_query",
        NO_DATA_VERSIONS,
    )


def test_a_failed_load_of_a_module_whose_commit_failed_is_unknown_and_says_why() -> None:
    spans = [span("create_start", "m-13", "t13", 0, 10), span("db_commit", "m-13", "t13", 1, 5, failed=True)]
    spans += failing_load("m-13", "t13", 50, query={"error.type": "ModuleNotFound"})
    (d,) = diagnose(spans).diagnoses
    assert d.cause == "unknown"
    assert (
        d.missing[-1]
        == f"creation in trace {'t13'.rjust(32, '0')} is partial: its db_commit failed, no cache_update span"
    )


def test_a_failed_load_within_the_skew_margin_is_unknown_and_flagged_as_a_possible_race() -> None:
    spans = creation("m-11", "t11", commit_end_ms=22) + failing_load("m-11", "t11", 20, resource=PROCESS_B)
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail) == ("unknown", "possible race")


def test_a_read_that_found_nothing_within_the_skew_margin_stays_a_possible_race_with_its_undecided_stage() -> None:
    # The commit is undecided (inside the clock bound); the cache update is clean by what the read saw.
    spans = creation("m-11b", "t11b", commit_end_ms=22, cache_end_ms=30) + failing_load(
        "m-11b", "t11b", 20, resource=PROCESS_B, query={"error.type": "ModuleNotFound", "module.cache.hit": True}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail) == ("unknown", "possible race")
    assert d.evidence[0].startswith(f"the read overlapped db_commit span {spans[1].span_id} ")
    assert d.evidence[0].endswith(": undecided, inside the clock bound")
    assert not any("cache_update" in line for line in d.evidence)
    assert "the read found nothing; the clocks cannot tell whether it came after the stages" in d.evidence
    assert not any("although it came after" in line for line in d.evidence)


def test_successful_loads_are_not_diagnosed_and_timing_is_summarised_per_cause() -> None:
    spans = creation("m-12", "t12", 5, 6) + load("m-12", "t12", 50)
    # 21 pool timeouts of 2.1234567 to 22.1234567 ms and two refused tokens of 3 and 5 ms (the request spans).
    for n in range(21):
        spans += creation(f"p-{n}", f"tp{n}", 5, 6) + failing_load(
            f"p-{n}", f"tp{n}", 50, duration_ms=n + 1.1234567, query={"module.pool.timed_out": True}
        )
    for n, duration in enumerate((2, 4)):
        spans += creation(f"a-{n}", f"ta{n}", 5, 6) + failing_load(
            f"a-{n}", f"ta{n}", 50, duration_ms=duration, request={"module.auth.status": 401}
        )
    report = diagnose(spans)
    assert report.loads == 24 and report.failed_loads == 23
    pool, auth = report.by_cause["pool"], report.by_cause["auth"]
    assert (pool.count, pool.share, pool.median_ms, pool.p95_ms) == (21, 0.913, 12.123, 21.123)
    assert (auth.count, auth.share, auth.median_ms, auth.p95_ms) == (2, 0.087, 5.0, 5.0)
    assert (report.by_cause["race"].count, report.by_cause["race"].median_ms, report.by_cause["race"].p95_ms) == (
        0,
        None,
        None,
    )


def test_without_a_failed_load_every_cause_has_a_share_of_zero() -> None:
    report = diagnose(creation("m-12b", "t12b", 5, 6) + load("m-12b", "t12b", 50))
    assert (report.loads, report.failed_loads) == (1, 0)
    assert {cause: summary.share for cause, summary in report.by_cause.items()} == dict.fromkeys(
        ("auth", "pool", "race", "not_found", "unknown"), 0.0
    )


def test_the_report_keeps_the_failed_loads_of_the_module_service_and_window_asked_for() -> None:
    spans = creation("m-14", "t14", 5, 6) + failing_load("m-14", "t14", 50)
    spans += creation("m-15", "t15", 5, 6) + failing_load("m-15", "t15", 150, resource=PROCESS_B)
    diagnoser = Diagnoser()
    diagnoser.add_all(spans)
    assert [d.module_id for d in diagnoser.report(module="m-15").diagnoses] == ["m-15"]
    assert [d.module_id for d in diagnoser.report(service="module-service").diagnoses] == ["m-14"]
    assert [d.module_id for d in diagnoser.report(start_ns=ns(100)).diagnoses] == ["m-15"]
    assert [d.module_id for d in diagnoser.report(end_ns=ns(100)).diagnoses] == ["m-14"]


def test_diagnosis_asks_the_sources_for_every_span_whole() -> None:
    # A 401 or a pool timeout can sit on any span inside a load: nothing is read bare, as server spans are for races.
    for name in ("GET /modules/{id}", "SELECT", "connect", *LIFECYCLE_SPAN_NAMES):
        for kind in (KIND_INTERNAL, KIND_SERVER, KIND_CLIENT):
            assert wanted(name, kind) is True


def test_http_calls_that_did_not_fail_and_say_only_their_status_are_not_kept_unless_401_or_403() -> None:
    spans = creation("m-9", "t9", 5, 6) + failing_load("m-9", "t9", 50, duration_ms=10)

    def call(status: int, failed: bool = False) -> Span:
        return Span(
            "t9".rjust(32, "0"),
            format(status * 10 + failed, "016x"),
            spans[-1].span_id,
            "GET",
            KIND_CLIENT,
            ns(52),
            ns(55),
            STATUS_ERROR if failed else 0,
            "",
            {"http.response.status_code": status},
            PROCESS_A,
        )

    diagnoser = Diagnoser()
    diagnoser.add_all([*spans, call(200), call(404), call(500), call(302)])
    assert diagnoser._traces["t9".rjust(32, "0")].errors == []  # noqa: SLF001 - what is kept is the point
    (quiet,) = diagnoser.report().diagnoses
    assert quiet == diagnose(spans).diagnoses[0] and quiet.cause == "unknown"
    for telling in (call(401), call(403), call(500, failed=True)):
        diagnoser = Diagnoser()
        diagnoser.add_all([*spans, telling])
        assert len(diagnoser._traces["t9".rjust(32, "0")].errors) == 1  # noqa: SLF001
