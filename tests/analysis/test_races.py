"""The race rule (shared/design.md), on normalised spans, edge case by edge case."""

from __future__ import annotations

import random

from moduletrace.analysis.races import RaceDetector, RaceReport
from moduletrace.spans import Link, Resource, Span
from tests.support.builders import PROCESS_A, PROCESS_A2, PROCESS_B, creation, load, rpc, span


def detect(spans: list[Span], **kwargs: object) -> RaceReport:
    detector = RaceDetector(**kwargs)  # type: ignore[arg-type]
    detector.add_all(spans)
    return detector.report()


def test_load_before_commit_in_the_same_process_is_a_race_with_its_margin() -> None:
    report = detect(creation("m-1", "t1", commit_end_ms=20, cache_end_ms=40) + load("m-1", "t1", query_start_ms=10))
    (race,) = report.races
    assert race.verdict == "race"
    assert race.preceded == ["db_commit", "cache_update"]
    assert race.margin_ms == {"db_commit": 10.0, "cache_update": 30.0}
    assert race.same_trace and race.matched_by == "trace"
    assert [c.basis for c in race.checks] == ["same process", "same process"]
    assert "db_commit span" in race.checks[0].explanation


def test_load_after_commit_but_before_cache_update_raced_only_the_cache_update() -> None:
    report = detect(creation("m-2", "t2", commit_end_ms=20, cache_end_ms=40) + load("m-2", "t2", query_start_ms=30))
    (race,) = report.races
    assert race.preceded == ["cache_update"]
    assert race.margin_ms == {"db_commit": -10.0, "cache_update": 10.0}


def test_load_after_both_stages_is_clean_and_not_reported() -> None:
    report = detect(creation("m-3", "t3", commit_end_ms=20, cache_end_ms=40) + load("m-3", "t3", query_start_ms=50))
    assert report.races == [] and report.ambiguous == [] and report.clean == 1 and report.loads == 1


def test_t_l_is_the_query_start_not_the_request_start() -> None:
    # The request began before the commit ended, but the query ran after it: no race.
    spans = creation("m-4", "t4", commit_end_ms=20) + load("m-4", "t4", query_start_ms=25, request_start_ms=5)
    assert detect(spans).clean == 1


def test_a_load_without_a_query_span_uses_its_request_start() -> None:
    spans = creation("m-5", "t5", commit_end_ms=20) + [span("load_request", "m-5", "t5", 10, 30)]
    (race,) = detect(spans).races
    assert race.load_instant == "module_load_request start"


def test_same_host_other_process_compares_exactly() -> None:
    spans = creation("m-6", "t6", commit_end_ms=20.001) + load("m-6", "t6", query_start_ms=20, resource=PROCESS_A2)
    (race,) = detect(spans).races
    assert race.checks[0].basis == "same host"
    assert race.margin_ms["db_commit"] == 0.001


def test_load_before_commit_on_other_host_within_tolerance_is_ambiguous() -> None:
    spans = creation("m-7", "t7", commit_end_ms=23) + load("m-7", "t7", query_start_ms=20, resource=PROCESS_B)
    report = detect(spans)
    assert report.races == []
    (ambiguous,) = report.ambiguous
    assert ambiguous.verdict == "ambiguous" and ambiguous.preceded == ["db_commit"]
    assert ambiguous.checks[0].basis == "tolerance" and ambiguous.checks[0].bound_ms == (-5.0, 5.0)


def test_load_after_commit_on_other_host_within_tolerance_is_ambiguous_too() -> None:
    spans = creation("m-8", "t8", commit_end_ms=20) + load("m-8", "t8", query_start_ms=23, resource=PROCESS_B)
    (ambiguous,) = detect(spans).ambiguous
    assert ambiguous.margin_ms == {"db_commit": -3.0}


def test_load_before_commit_on_other_host_beyond_tolerance_is_a_race() -> None:
    spans = creation("m-9", "t9", commit_end_ms=30) + load("m-9", "t9", query_start_ms=20, resource=PROCESS_B)
    assert len(detect(spans).races) == 1
    assert detect(spans, skew_tolerance_ms=15).races == []


def test_client_server_pairs_bound_the_offset_and_replace_the_tolerance() -> None:
    # Host B's clock runs 100 ms ahead of A's: B's server spans sit 100 ms "after" A's clients.
    pairs = []
    for n in range(5):
        base = 1000 + n * 50
        pairs += rpc(f"r{n}", PROCESS_A, PROCESS_B, (base, base + 10), (base + 100 + 2, base + 100 + 8))
    # The load's query starts at 110 on B's clock, i.e. about 10 on A's: before the commit at 20.
    spans = (
        pairs + creation("m-10", "t10", commit_end_ms=20) + load("m-10", "t10", query_start_ms=110, resource=PROCESS_B)
    )
    (race,) = detect(spans).races
    check = race.checks[0]
    assert check.basis == "derived bound"
    assert check.bound_ms == (98.0, 102.0)
    assert "5 client/server pairs" in check.explanation
    # With the fixed tolerance alone, the raw margin (-90 ms) would have called this load clean.
    assert detect(spans, derive_bounds=False).races == []


def test_contradictory_rpc_timings_give_no_bound_and_are_reported() -> None:
    pairs = rpc("r1", PROCESS_A, PROCESS_B, (0, 10), (2, 8)) + rpc("r2", PROCESS_A, PROCESS_B, (100, 110), (250, 260))
    spans = (
        pairs + creation("m-11", "t11", commit_end_ms=30) + load("m-11", "t11", query_start_ms=20, resource=PROCESS_B)
    )
    report = detect(spans)
    assert report.races[0].checks[0].basis == "tolerance"
    assert report.inconsistent_clocks == [("host:host-a", "host:host-b")]


def test_several_loads_per_module_are_each_judged() -> None:
    spans = (
        creation("m-12", "t12", commit_end_ms=20)
        + load("m-12", "t12", 10)
        + load("m-12", "t12", 30)
        + load("m-12", "t12", 15)
    )
    report = detect(spans)
    assert [r.margin_ms["db_commit"] for r in report.races] == [10.0, 5.0]
    assert report.clean == 1 and report.loads == 3


def test_the_first_successful_commit_counts_after_a_failed_attempt() -> None:
    spans = [
        span("create_start", "m-13", "t13", 0, 100),
        span("db_commit", "m-13", "t13", 1, 10, failed=True),
        span("db_commit", "m-13", "t13", 11, 50),
        span("db_commit", "m-13", "t13", 51, 60),
    ] + load("m-13", "t13", 30)
    (race,) = detect(spans).races
    assert race.margin_ms == {"db_commit": 20.0}


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
    spans = [span("cache_update", "m-17", "t17", 5, 20)] + load("m-17", "t17", 10)
    (race,) = detect(spans).races
    assert race.preceded == ["cache_update"]


def test_a_creation_with_only_its_start_span_is_partial_and_unmatched() -> None:
    spans = [span("create_start", "m-18", "t18", 0, 20)] + load("m-18", "t18", 10)
    (unmatched,) = detect(spans).unmatched
    assert "partial" in unmatched.reason and "no db_commit span" in unmatched.reason


def test_a_load_in_another_trace_is_matched_by_module_id() -> None:
    spans = creation("m-19", "t19", commit_end_ms=20) + load("m-19", "other", 10)
    (race,) = detect(spans).races
    assert not race.same_trace and race.matched_by == "module.id" and race.creation_trace_id.endswith("t19")


def test_a_load_linked_to_its_creation_is_matched_through_the_link() -> None:
    old = creation("m-20", "t20a", commit_end_ms=20)
    new = creation("m-20", "t20b", commit_end_ms=5)  # the module was created again later... in time order first
    link = Link("t20a".rjust(32, "0"), old[0].span_id, {"module.link.type": "creation"})
    (race,) = detect(old + new + load("m-20", "loadtrace", 10, links=(link,))).races
    assert race.matched_by == "link" and race.creation_trace_id.endswith("t20a")


def test_duplicated_spans_count_once() -> None:
    spans = creation("m-21", "t21", commit_end_ms=20) + load("m-21", "t21", 10)
    report = detect(spans + spans)
    assert len(report.races) == 1 and report.duplicates == len(spans)


def test_non_string_ids_match_their_string_form() -> None:
    spans = creation(21, "t22", commit_end_ms=20) + load("21", "t22", 10)
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
    assert len(expected) == 30  # loads at 0..29 ms came before the cache update ended at 30 ms


def test_report_filters_by_module_service_and_window() -> None:
    spans = (
        creation("m-a", "ta", 20)
        + load("m-a", "ta", 10)
        + creation("m-b", "tb", 20)
        + load("m-b", "tb", 10, resource=PROCESS_A2)
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


def test_resources_without_host_or_process_never_share_a_clock() -> None:
    anonymous = Resource("svc", "", "")
    spans = creation("m-z", "tz", 23, resource=anonymous) + load("m-z", "tz", 20, resource=anonymous)
    assert detect(spans).ambiguous[0].checks[0].basis == "tolerance"
