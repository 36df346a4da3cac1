"""The race detector (rule version 2, docs/design.md) on normalised spans, case by case."""

from __future__ import annotations

import random
from typing import Any

from moduletrace.analysis.races import RaceDetector, RaceReport
from moduletrace.spans import KIND_CLIENT, Link, Resource, Span
from tests.support.builders import PROCESS_A, PROCESS_A2, PROCESS_B, creation, load, ns, rpc, span


def detect(spans: list[Span], **kwargs: object) -> RaceReport:
    detector = RaceDetector(**kwargs)  # type: ignore[arg-type]
    detector.add_all(spans)
    return detector.report()


def stage_span(stage: str, module: str, trace: str, start_ms: float, end_ms: float, **kwargs: object) -> Span:
    return span(stage, module, trace, start_ms, end_ms, **kwargs)  # type: ignore[arg-type]


def test_a_read_that_ended_before_the_commit_began_is_a_race_with_its_margin() -> None:
    # creation: commit [1, 20], cache update [20, 40]; the query reads [-15, -13].
    report = detect(creation("m-1", "t1", commit_end_ms=20, cache_end_ms=40) + load("m-1", "t1", query_start_ms=-15))
    (race,) = report.races
    assert race.verdict == "race" and race.decided_by == "clocks"
    assert race.preceded == ["db_commit", "cache_update"]
    assert race.margin_ms == {"db_commit": 14.0, "cache_update": 33.0}
    assert race.same_trace and race.matched_by == "trace"
    assert [c.basis for c in race.checks] == ["same process", "same process"]
    assert race.read_source == "module_load_db_query"


def test_a_read_during_the_commit_is_ambiguous_overlap_never_a_race() -> None:
    # The async case: the commit span ends long after the row is visible; a read inside it proves nothing.
    report = detect(creation("m-2", "t2", commit_end_ms=30) + load("m-2", "t2", query_start_ms=10))
    assert report.races == []
    (ambiguous,) = report.ambiguous
    assert ambiguous.reason == "overlap" and ambiguous.preceded == ["db_commit"]


def test_a_read_after_the_commit_but_before_the_cache_update_raced_only_the_cache_update() -> None:
    spans = creation("m-3", "t3", commit_end_ms=20) + [stage_span("cache_update", "m-3", "t3", 40, 50)]
    (race,) = detect(spans + load("m-3", "t3", query_start_ms=30)).races
    assert race.preceded == ["cache_update"]
    assert [c.verdict for c in race.checks] == ["clean", "race"]


def test_a_read_after_both_stages_is_clean_and_not_listed() -> None:
    report = detect(creation("m-4", "t4", commit_end_ms=20, cache_end_ms=40) + load("m-4", "t4", query_start_ms=50))
    assert report.races == report.ambiguous == report.stale_reads == [] and report.clean == 1 and report.loads == 1


def test_the_read_window_is_the_query_not_the_request() -> None:
    # The request began before the commit, the query ran after it: clean.
    spans = creation("m-5", "t5", commit_end_ms=20) + load("m-5", "t5", query_start_ms=25, request_start_ms=-50)
    assert detect(spans).clean == 1


def statement(parent: Span, span_id: str, text: str, start_ms: float, end_ms: float, trace: str = "") -> Span:
    """A PostgreSQL statement's CLIENT span under ``parent``."""
    return Span(
        trace or parent.trace_id,
        span_id,
        parent.span_id,
        text,
        KIND_CLIENT,
        ns(start_ms),
        ns(end_ms),
        0,
        "",
        {"db.system.name": "postgresql", "db.query.text": text},
        PROCESS_A,
    )


def test_the_read_window_narrows_to_the_database_client_span_inside_the_query() -> None:
    # The query span [10, 40] waited for a pooled connection; the statement itself ran [32, 34], after the commit.
    request = stage_span("load_request", "m-6", "t6", 9, 41)
    query = stage_span("load_db_query", "m-6", "t6", 10, 40, parent=request.span_id)
    begin = statement(query, "b" * 16, "BEGIN", 12, 13)
    select = statement(query, "5" * 16, "SELECT modules", 32, 34)
    spans = creation("m-6", "t6", commit_end_ms=30) + [request, query, begin, select]
    report = detect(spans)
    assert report.clean == 1, "the transaction's BEGIN is not the read; the SELECT after the commit is"
    (ambiguous,) = detect(creation("m-6", "t6", commit_end_ms=30) + [request, query]).ambiguous
    assert ambiguous.read_source == "module_load_db_query"


def test_a_query_under_another_span_belongs_to_the_innermost_request_it_started_in() -> None:
    # Two loads of m-n in one trace, B nested in A; each query's parent is some other span (a handler,
    # another service's), not the request. A [0, 200] reads at [150, 160]; B [50, 100] at [55, 60].
    # The commit [70, 80]: B's read came before it (a race), A's after it (clean).
    outer = stage_span("load_request", "m-n", "tn", 0, 200)
    inner = stage_span("load_request", "m-n", "tn", 50, 100)
    queries = [
        stage_span("load_db_query", "m-n", "tn", 150, 160, parent="e" * 16),
        stage_span("load_db_query", "m-n", "tn", 55, 60, parent="f" * 16),
    ]
    spans = [stage_span("create_start", "m-n", "tn", 0, 90), stage_span("db_commit", "m-n", "tn", 70, 80)]
    report = detect(spans + [outer, inner, *queries])
    (race,) = report.races
    assert race.load_span_id == inner.span_id and race.margin_ms == {"db_commit": 10.0}
    assert report.clean == 1 and report.loads == 2  # both queries claimed: no load of their own


def test_a_request_reads_in_its_first_query_a_child_or_a_stray_of_its_own() -> None:
    # R [0, 100] has a child query at [50, 60] and, under a handler span, a stray at [10, 20]: both are
    # R's; it read first in the stray, before the commit [30, 40]: one load, a race.
    request = stage_span("load_request", "m-q", "tq", 0, 100)
    child = stage_span("load_db_query", "m-q", "tq", 50, 60, parent=request.span_id)
    stray = stage_span("load_db_query", "m-q", "tq", 10, 20, parent="e" * 16)
    spans = [stage_span("create_start", "m-q", "tq", 0, 45), stage_span("db_commit", "m-q", "tq", 30, 40)]
    report = detect(spans + [request, child, stray])
    (race,) = report.races
    assert race.load_span_id == request.span_id and race.margin_ms == {"db_commit": 10.0} and report.loads == 1


def test_a_query_inside_no_request_is_a_load_of_its_own() -> None:
    request = stage_span("load_request", "m-o", "to", 30, 40)
    stray = stage_span("load_db_query", "m-o", "to", -10, -8, parent="e" * 16)  # before the request
    report = detect(creation("m-o", "to", commit_end_ms=20) + [request, stray])
    assert [r.load_span_id for r in report.races] == [stray.span_id] and report.loads == 2


def test_a_report_for_one_service_counts_the_modules_of_its_loads() -> None:
    spans = creation("m-s1", "ts1", commit_end_ms=20) + load("m-s1", "ts1", 30)  # loaded by module-service
    spans += creation("m-s2", "ts2", commit_end_ms=20) + load("m-s2", "ts2", 30, resource=PROCESS_B)
    spans += creation("m-s3", "ts3", commit_end_ms=20)  # never loaded
    detector = RaceDetector()
    detector.add_all(spans)
    one = detector.report(service="canvas-service")
    assert (one.loads, one.modules) == (1, 1)
    every = detector.report()
    assert (every.loads, every.modules) == (2, 3)


def test_a_load_without_a_query_span_is_judged_on_its_request() -> None:
    spans = creation("m-7", "t7", commit_end_ms=20) + [stage_span("load_request", "m-7", "t7", -10, -5)]
    (race,) = detect(spans).races
    assert race.read_source == "module_load_request"


def test_same_host_other_process_compares_exactly() -> None:
    spans = creation("m-8", "t8", commit_end_ms=20) + load("m-8", "t8", query_start_ms=-1.002, resource=PROCESS_A2)
    (race,) = detect(spans).races
    assert race.checks[0].basis == "same host"
    assert race.margin_ms["db_commit"] == 0.002


def test_a_read_before_the_commit_on_another_host_within_tolerance_is_ambiguous_by_clock() -> None:
    spans = creation("m-9", "t9", commit_end_ms=23) + load("m-9", "t9", query_start_ms=-4, resource=PROCESS_B)
    report = detect(spans)
    assert report.races == []
    (ambiguous,) = report.ambiguous
    assert ambiguous.reason == "clock" and ambiguous.preceded == ["db_commit"]
    assert ambiguous.checks[0].basis == "tolerance" and ambiguous.checks[0].bound_ms == (-5.0, 5.0)


def test_a_read_before_the_commit_on_another_host_beyond_tolerance_is_a_race_unless_the_tolerance_grows() -> None:
    spans = creation("m-10", "t10", commit_end_ms=30) + load("m-10", "t10", query_start_ms=-10, resource=PROCESS_B)
    assert len(detect(spans).races) == 1
    assert detect(spans, skew_tolerance_ms=15).races == []
    assert detect(spans, skew_tolerance_ms=15).ambiguous[0].reason == "clock"


def test_a_gap_exactly_at_the_tolerance_decides_nothing_whatever_its_decimals() -> None:
    # The read ends 1.001 ms before the commit begins, on another host. 1.001 ms is 1000999.99... ns in
    # binary floating point: the tolerance must be taken as 1,001,000 ns, or the gap "exceeds" it.
    spans = creation("m-11", "t11", commit_end_ms=20) + [
        stage_span("load_request", "m-11", "t11", -3, -0.001, resource=PROCESS_B)
    ]
    (ambiguous,) = detect(spans, skew_tolerance_ms=1.001).ambiguous
    assert ambiguous.reason == "clock" and ambiguous.margin_ms == {"db_commit": 1.001}
    assert len(detect(spans, skew_tolerance_ms=1.000999).races) == 1


def test_recorded_data_decides_whatever_the_clocks_say() -> None:
    seen_row = {"module.data.found": True}
    spans = creation("m-11", "t11", commit_end_ms=20) + load("m-11", "t11", -15, query_attributes=seen_row)
    report = detect(spans)
    assert report.races == [] and report.clean == 1
    (contradicted,) = report.contradicted
    assert contradicted.checks[0].clocks_contradicted
    missed = {"module.data.found": False}
    spans = creation("m-12", "t12", commit_end_ms=20) + load("m-12", "t12", 10, query_attributes=missed)
    (race,) = detect(spans).races
    assert race.decided_by == "data"


def test_a_contradiction_on_one_stage_is_listed_even_when_another_stage_is_undecided() -> None:
    # The read [-15, -13] ended before the commit [1, 20] began, yet saw the row (found=true): the data
    # contradicts the clocks. The cache update [-14, 40] overlapped it: that stage is undecided.
    spans = creation("m-16", "t16", commit_end_ms=20) + [stage_span("cache_update", "m-16", "t16", -14, 40)]
    report = detect(spans + load("m-16", "t16", -15, query_attributes={"module.data.found": True}))
    (ambiguous,) = report.ambiguous
    assert report.contradicted == [ambiguous] and report.clean == 0 and report.loads == 1
    assert [c.clocks_contradicted for c in ambiguous.checks] == [True, False]


def test_a_read_after_the_commit_that_saw_no_row_is_a_stale_read() -> None:
    missed = {"module.data.found": False}
    spans = creation("m-13", "t13", commit_end_ms=20) + load("m-13", "t13", 30, query_attributes=missed)
    report = detect(spans)
    (stale,) = report.stale_reads
    assert report.races == [] and stale.verdict == "stale_read" and report.found_races


def test_an_older_observed_version_than_the_committed_one_is_a_miss() -> None:
    spans = [
        stage_span("create_start", "m-14", "t14", 0, 30),
        stage_span("db_commit", "m-14", "t14", 1, 20, attributes={"module.data.version": 7}),
    ] + load("m-14", "t14", 25, query_attributes={"module.data.observed_version": 6})
    assert len(detect(spans).stale_reads) == 1
    spans[-1] = spans[-1]._replace(attributes={**spans[-1].attributes, "module.data.observed_version": 7})
    assert detect(spans).clean == 1


def judged_with_versions(observed: object, committed: object) -> RaceReport:
    # The read overlaps the commit: only the versions can decide it.
    spans = [
        stage_span("create_start", "m-15", "t15", 0, 30),
        stage_span("db_commit", "m-15", "t15", 1, 20, attributes={"module.data.version": committed}),
    ] + load("m-15", "t15", 10, query_attributes={"module.data.observed_version": observed})
    return detect(spans)


def test_versions_written_as_text_are_ordered_as_numbers_lsns_or_same_shaped_texts() -> None:
    for observed, committed in [
        ("10", "9"),  # decimal text: 10 is newer, not "older" as strings compare
        (5, "4"),  # a number against its text
        ("0/10000000", "0/9FFFFFF"),  # PostgreSQL LSNs: positions, not strings
        ("2026-11-30T10:00:01Z", "2026-11-30T10:00:00Z"),  # one timestamp format: text order is time order
        ("abc", "abc"),  # equal: the read saw what was written
    ]:
        assert judged_with_versions(observed, committed).clean == 1, (observed, committed)
    for observed, committed in [
        ("9", "10"),
        ("0/9FFFFFF", "0/10000000"),
        ("2026-11-30T09:59:59Z", "2026-11-30T10:00:00Z"),
    ]:
        (race,) = judged_with_versions(observed, committed).races
        assert race.decided_by == "data", (observed, committed)


def test_versions_that_cannot_be_ordered_decide_nothing() -> None:
    # Unequal and of no common order: neither a hit nor a miss; the clocks (overlap) decide.
    for observed, committed in [
        ("v2-blue", "v1"),
        ("a1b2", "10"),
        (True, 3),
        (True, 1),  # a flag is no version 1
        (float("nan"), 1.0),
        (float("nan"), float("nan")),
        ("1.10", "1.9"),  # a decimal or a release number: no order is safe
        ("0/5", 100),  # an LSN against a number
    ]:
        (ambiguous,) = judged_with_versions(observed, committed).ambiguous
        assert ambiguous.reason == "overlap" and ambiguous.decided_by == "clocks", (observed, committed)


def test_a_cache_miss_decides_the_cache_stage_only() -> None:
    spans = creation("m-15", "t15", commit_end_ms=20, cache_end_ms=30) + load(
        "m-15", "t15", 25, query_attributes={"module.cache.hit": False, "module.data.found": True}
    )
    (race,) = detect(spans).races
    assert race.preceded == ["cache_update"] and [c.verdict for c in race.checks] == ["clean", "race"]


def test_every_verdict_says_whether_its_load_failed_and_the_summary_counts_them_apart() -> None:
    spans = (
        creation("m-16", "t16", commit_end_ms=20)
        + load("m-16", "t16", -15, failed=True)
        + load("m-16", "t16b", -12)
        + load("m-16", "t16c", 50)
    )
    report = detect(spans)
    assert sorted(r.load_failed for r in report.races) == [False, True]
    assert (report.loads, report.failed_loads) == (3, 1)
    assert [r.load_failed for r in report.failed_only().races] == [True]


def test_client_server_pairs_bound_the_offset_and_replace_the_tolerance() -> None:
    # Host B's clock runs 100 ms ahead of A's: B's server spans sit 100 ms "after" A's clients.
    pairs = []
    for n in range(5):
        base = 1000 + n * 50
        pairs += rpc(f"r{n}", PROCESS_A, PROCESS_B, (base, base + 10), (base + 100 + 2, base + 100 + 8))
    # Only server starts are evidence: theta in [start - client end, start - client start] = [92, 102].
    # The query reads [90, 92] on B's clock, i.e. [-12, 0] at most on A's: before the commit began at 1.
    spans = (
        pairs + creation("m-10", "t10", commit_end_ms=20) + load("m-10", "t10", query_start_ms=90, resource=PROCESS_B)
    )
    (race,) = detect(spans).races
    check = race.checks[0]
    assert check.basis == "derived bound"
    assert check.bound_ms == (92.0, 102.0)
    assert "5 client/server pairs" in check.explanation
    # With the fixed tolerance alone, the raw timestamps (read 70 ms after the commit) would say clean.
    assert detect(spans, derive_bounds=False).races == []


def test_contradictory_rpc_timings_give_no_bound_and_are_reported() -> None:
    pairs = rpc("r1", PROCESS_A, PROCESS_B, (0, 10), (2, 8)) + rpc("r2", PROCESS_A, PROCESS_B, (100, 110), (250, 260))
    spans = (
        pairs + creation("m-11", "t11", commit_end_ms=30) + load("m-11", "t11", query_start_ms=20, resource=PROCESS_B)
    )
    report = detect(spans)
    assert report.ambiguous[0].checks[0].basis == "tolerance"
    assert report.inconsistent_clocks == [("host:host-a", "host:host-b")]


def test_a_server_span_ending_after_its_client_is_no_contradiction() -> None:
    # ASGI: the server span closes after the response was sent and read by the client.
    pairs = rpc("r1", PROCESS_A, PROCESS_B, (0, 10), (2, 25)) + rpc("r2", PROCESS_A, PROCESS_B, (100, 110), (101, 140))
    report = detect(pairs + creation("m-11b", "t11b", commit_end_ms=30) + load("m-11b", "t11b", 50))
    assert report.inconsistent_clocks == []


def test_several_loads_per_module_are_each_judged() -> None:
    spans = (
        creation("m-12", "t12", commit_end_ms=20)
        + load("m-12", "t12", -15)
        + load("m-12", "t12", 30)
        + load("m-12", "t12", -12)
    )
    report = detect(spans)
    assert [r.margin_ms["db_commit"] for r in report.races] == [14.0, 11.0]
    assert report.clean == 1 and report.loads == 3


def test_the_first_successful_commit_counts_after_a_failed_attempt() -> None:
    spans = [
        span("create_start", "m-13", "t13", 0, 100),
        span("db_commit", "m-13", "t13", 1, 10, failed=True),
        span("db_commit", "m-13", "t13", 11, 50),
        span("db_commit", "m-13", "t13", 51, 60),
    ] + load("m-13", "t13", 5)
    (race,) = detect(spans).races
    assert race.margin_ms == {"db_commit": 4.0}  # against [11, 50], not the later [51, 60]


def test_a_creation_whose_commit_failed_is_reported_and_its_loads_are_unmatched() -> None:
    spans = [span("create_start", "m-14", "t14", 0, 100), span("db_commit", "m-14", "t14", 1, 10, failed=True)]
    report = detect(spans + load("m-14", "t14", 30))
    (failed,) = report.failed_commits
    assert (failed.module_id, failed.error) == ("m-14", "boom")
    (unmatched,) = report.unmatched
    assert "db_commit failed" in unmatched.reason


def test_a_cancelled_commit_is_not_a_successful_one() -> None:
    spans = [span("db_commit", "m-15", "t15", 1, 10, attributes={"module.cancelled": True})]
    assert detect(spans + load("m-15", "t15", 30)).failed_commits[0].error == "cancelled"


def test_a_load_of_a_module_with_no_creation_is_unmatched_not_dropped() -> None:
    (unmatched,) = detect(load("m-16", "t16", 30)).unmatched
    assert unmatched.reason == "no creation spans for this module in the data"


def test_a_creation_with_only_a_cache_update_is_partial_but_still_judged() -> None:
    spans = [span("cache_update", "m-17", "t17", 5, 20)] + load("m-17", "t17", -10)
    (race,) = detect(spans).races
    assert race.preceded == ["cache_update"]


def test_a_creation_with_only_its_start_span_is_partial_and_unmatched() -> None:
    spans = [span("create_start", "m-18", "t18", 0, 20)] + load("m-18", "t18", 10)
    (unmatched,) = detect(spans).unmatched
    assert "partial" in unmatched.reason and "no db_commit span" in unmatched.reason


def test_a_load_in_another_trace_is_matched_by_module_id() -> None:
    spans = creation("m-19", "t19", commit_end_ms=20) + load("m-19", "other", -10)
    (race,) = detect(spans).races
    assert not race.same_trace and race.matched_by == "module.id" and race.creation_trace_id.endswith("t19")


def test_a_load_linked_to_its_creation_is_matched_through_the_link() -> None:
    old = creation("m-20", "t20a", commit_end_ms=20)
    new = creation("m-20", "t20b", commit_end_ms=5)  # the module was created again later... in time order first
    link = Link("t20a".rjust(32, "0"), old[0].span_id, {"module.link.type": "creation"})
    (race,) = detect(old + new + load("m-20", "loadtrace", -10, links=(link,))).races
    assert race.matched_by == "link" and race.creation_trace_id.endswith("t20a")


def test_duplicated_spans_count_once() -> None:
    spans = creation("m-21", "t21", commit_end_ms=20) + load("m-21", "t21", -10)
    report = detect(spans + spans)
    assert len(report.races) == 1 and report.duplicates == len(spans)


def test_non_string_ids_match_their_string_form() -> None:
    spans = creation(21, "t22", commit_end_ms=20) + load("21", "t22", -10)
    assert detect(spans).races[0].module_id == "21"


def test_spans_without_a_module_id_are_counted_not_matched() -> None:
    report = detect([span("load_request", None, "t23", 0, 1)])
    assert report.spans_without_module_id == 1 and report.loads == 0


def test_spans_in_any_order_give_the_same_verdicts() -> None:
    spans = []
    for n in range(35):
        spans += creation(f"m-{n}", f"t{n}", commit_end_ms=20, cache_end_ms=30) + load(f"m-{n}", f"t{n}", n)
    expected = [(r.module_id, r.margin_ms) for r in detect(spans).races]
    random.Random(7).shuffle(spans)
    assert [(r.module_id, r.margin_ms) for r in detect(spans).races] == expected
    assert len(expected) == 18  # reads [n, n + 2] ending before the cache update began at 20 ms: n < 18


def test_report_filters_by_module_service_and_window() -> None:
    spans = (
        creation("m-a", "ta", 20)
        + load("m-a", "ta", -10)
        + creation("m-b", "tb", 20)
        + load("m-b", "tb", -10, resource=PROCESS_A2)
    )
    detector = RaceDetector()
    detector.add_all(spans)
    assert [r.module_id for r in detector.report(module="m-a").races] == ["m-a"]
    assert [r.module_id for r in detector.report(service="canvas-service").races] == ["m-b"]
    assert detector.report(start_ns=spans[-1].start_ns + 10**9).loads == 0


def test_modules_without_creation_are_listed_for_a_second_lookup() -> None:
    detector = RaceDetector()
    detector.add_all(load("m-x", "tx", 1) + creation("m-y", "ty", 5) + load("m-y", "ty", 1))
    assert detector.modules_without_creation() == ["m-x"]


def test_resources_without_host_or_process_never_share_a_clock_and_the_report_says_why() -> None:
    anonymous = Resource("svc", "", "")
    spans = creation("m-z", "tz", 23, resource=anonymous) + load("m-z", "tz", 20, resource=anonymous)
    check = detect(spans).ambiguous[0].checks[0]
    assert check.basis == "tolerance" and "records no host or process" in check.explanation


def test_an_agent_resource_with_host_and_pid_identifies_the_process() -> None:
    agent = Resource.from_attributes({"service.name": "svc", "host.name": "h1", "process.pid": 4242})
    other = Resource.from_attributes({"service.name": "svc", "host.name": "h1", "process.pid": 4343})
    assert agent.instance_id == "h1/pid 4242" and agent.shares_clock_with(other) == "same host"
    spans = creation("m-p", "tp", 23, resource=agent) + load("m-p", "tp", 30, resource=agent)
    assert detect(spans).clean == 1


def test_a_read_keeps_its_statement_however_many_other_statements_come_before_it_is_judged() -> None:
    # The query and its SELECT arrive first; then 60,000 statements under other parents (commits,
    # cache writes) before the load is judged: the read window must still be the SELECT.
    request = stage_span("load_request", "m-s", "ts", 9, 41)
    query = stage_span("load_db_query", "m-s", "ts", 10, 40, parent=request.span_id)
    select = statement(query, "5" * 16, "SELECT", 32, 34)
    unrelated = stage_span("db_commit", "m-other", "f" * 32, 0, 5)
    others = [
        statement(unrelated._replace(span_id=f"{n + 10**6:016x}"), f"{n:016x}", "INSERT", 1, 2) for n in range(60_000)
    ]
    detector = RaceDetector()
    detector.add_all([request, query, select, *others, *creation("m-s", "ts", commit_end_ms=30)])
    report = detector.report()
    assert report.clean == 1, "the SELECT ran [32, 34], after the commit ended at 30"


# --- a read from a replica: its data's age decides what the read could see ----------------------


def replica_read(module: str, trace: str, as_of_ms: float, **seen: Any) -> list[Span]:
    """A creation whose commit is [1, 20] ms and, at 30 ms, a read from a replica whose data is as of ``as_of_ms``."""
    attributes = {
        "module.db.replica": True,
        "module.db.replica.as_of_ns": ns(as_of_ms),
        "module.db.replica.lag_ms": 30 - as_of_ms,
    }
    return creation(module, trace, commit_end_ms=20) + load(module, trace, 30, query_attributes={**attributes, **seen})


def test_a_replica_whose_data_predates_the_commit_beyond_the_tolerance_is_a_stale_read() -> None:
    (stale,) = detect(replica_read("m-r1", "tr1", as_of_ms=1 - 5.001)).stale_reads  # w_s = 1 ms, tolerance 5 ms
    assert stale.decided_by == "data"
    assert (
        "the load recorded that it missed the write (the replica it read had not applied the commit; "
        "the replica was up to 34.0 ms behind: its data as of 24.0 ms before the commit ended)"
    ) in stale.checks[0].explanation


def test_a_replica_as_of_within_the_tolerance_of_the_commit_start_leaves_it_to_the_clocks() -> None:
    report = detect(replica_read("m-r2", "tr2", as_of_ms=1 - 5))
    assert report.stale_reads == [] and report.races == [] and report.clean == 1


def test_a_replica_that_had_applied_the_commit_says_nothing_against_the_read() -> None:
    report = detect(replica_read("m-r3", "tr3", as_of_ms=25))
    assert report.stale_reads == [] and report.clean == 1


def test_what_the_read_recorded_seeing_wins_over_the_replicas_age() -> None:
    report = detect(replica_read("m-r4", "tr4", as_of_ms=-100, **{"module.data.found": True}))
    assert report.stale_reads == [] and report.races == [] and report.clean == 1
