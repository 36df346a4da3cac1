"""The diagnosis rules: which cause, how strong, what is missing, and the confounders."""

from __future__ import annotations

from typing import Any

from moduletrace.analysis.diagnosis import Diagnoser, DiagnosisReport
from moduletrace.spans import KIND_CLIENT, STATUS_ERROR, Span
from tests.support.builders import PROCESS_A, PROCESS_B, creation, load, ns, span


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


def test_a_load_that_raced_the_commit_on_the_same_clock_is_a_race() -> None:
    report = diagnose(
        creation("m-1", "t1", commit_end_ms=20, cache_end_ms=30)
        + failing_load("m-1", "t1", -10, query={"error.type": "ModuleNotFound"})
    )
    (d,) = report.diagnoses
    assert (d.cause, d.strength, d.detail) == ("race", "same-clock timestamps", "db_commit+cache_update")
    assert "error.type: ModuleNotFound" in d.evidence


def test_a_stale_read_is_proven_by_data_versions_without_clocks() -> None:
    spans = creation("m-2", "t2", commit_end_ms=20, resource=PROCESS_A)
    spans[1] = spans[1]._replace(attributes={**spans[1].attributes, "module.data.version": 7})
    # The read ran on another host, well after the commit by the clocks, but saw version 6.
    spans += failing_load("m-2", "t2", 200, resource=PROCESS_B, query={"module.data.observed_version": 6})
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail) == ("race", "data version", "stale read (db_commit)")
    assert "came after the stage ended and saw nothing" in d.evidence[0]
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
    assert 'WWW-Authenticate error="invalid_token"' in d.evidence
    assert "token expired 12.5 s before the request" in d.evidence


def test_a_401_inside_the_load_on_an_http_client_span_is_found() -> None:
    spans = creation("m-4", "t4", 5, 6) + failing_load("m-4", "t4", 50, duration_ms=10)
    client = Span(
        "t4".rjust(32, "0"),
        "c" * 16,
        spans[-1].span_id,
        "GET",
        KIND_CLIENT,
        ns(52),
        ns(55),
        STATUS_ERROR,
        "",
        {"http.response.status_code": 401},
        PROCESS_A,
    )
    (d,) = diagnose(spans + [client]).diagnoses
    assert d.cause == "auth" and "HTTP 401 at GET" in d.evidence


def test_a_token_not_yet_valid_is_clock_skew_not_expiry() -> None:
    spans = creation("m-5", "t5", 5, 6) + failing_load(
        "m-5", "t5", 50, request={"module.auth.status": 401, "module.auth.token_not_yet_valid": True}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail) == ("auth", "clock skew")
    assert "clock skew, not expiry" in d.evidence[0]


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


def test_sqlalchemy_s_pool_message_alone_is_enough() -> None:
    message = "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00"
    spans = creation("m-7", "t7", 5, 6) + failing_load("m-7", "t7", 50, query={"error.type": "TimeoutError"})
    spans[-1] = spans[-1]._replace(status_message=message)
    assert diagnose(spans).diagnoses[0].cause == "pool"


def test_a_long_wait_close_to_the_pool_timeout_is_weak_pool_evidence() -> None:
    spans = creation("m-8", "t8", 5, 6) + failing_load(
        "m-8", "t8", 50, query={"module.pool.wait_ms": 950.0, "module.pool.timeout_s": 1.0}
    )
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.strength, d.detail) == ("pool", "weak", "slow wait")


def test_a_load_of_a_module_never_created_is_not_found() -> None:
    (d,) = diagnose(failing_load("m-9", "t9", 50)).diagnoses
    assert d.cause == "not_found" and "no creation span of module m-9" in d.evidence[0]


def test_a_failed_load_after_commit_and_cache_is_unknown_with_what_to_instrument() -> None:
    spans = creation("m-10", "t10", 5, 6) + failing_load("m-10", "t10", 50, query={"error.type": "ModuleNotFound"})
    (d,) = diagnose(spans).diagnoses
    assert d.cause == "unknown"
    assert any("came after the commit and the cache update" in line for line in d.evidence)
    assert any("record_data_version" in hint for hint in d.missing)


def test_a_failed_load_within_the_skew_margin_is_unknown_and_flagged_as_a_possible_race() -> None:
    spans = creation("m-11", "t11", commit_end_ms=22) + failing_load("m-11", "t11", 20, resource=PROCESS_B)
    (d,) = diagnose(spans).diagnoses
    assert (d.cause, d.detail) == ("unknown", "possible race")


def test_successful_loads_are_not_diagnosed_and_timing_is_summarised_per_cause() -> None:
    spans = creation("m-12", "t12", 5, 6) + load("m-12", "t12", 50)
    for n, wait in enumerate((100.0, 200.0, 300.0)):
        spans += creation(f"p-{n}", f"tp{n}", 5, 6) + failing_load(
            f"p-{n}", f"tp{n}", 50, duration_ms=wait, query={"module.pool.timed_out": True}
        )
    report = diagnose(spans)
    assert report.loads == 4 and report.failed_loads == 3
    pool = report.by_cause["pool"]
    assert (pool.count, pool.share, pool.median_ms) == (3, 1.0, 201.0)  # the request span: 1 ms longer
    assert report.by_cause["auth"].count == 0


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
