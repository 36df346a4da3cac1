"""Settling: loads judged (and failed loads diagnosed) once the data has moved past their module, with a summary
kept for late loads."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moduletrace.analysis.diagnosis import Diagnoser
from moduletrace.analysis.races import LoadScope, RaceDetector, RaceReport
from moduletrace.spans import Span
from tests.support.builders import PROCESS_A, PROCESS_B, creation, load, rpc, span

MINUTE_MS = 60_000


def outcome(report: RaceReport) -> tuple[object, ...]:
    return (
        [(r.module_id, r.load_span_id, r.margin_ms, r.verdict) for r in report.races],
        [(r.module_id, r.load_span_id, r.margin_ms) for r in report.ambiguous],
        [(u.module_id, u.load_span_id, u.reason) for u in report.unmatched],
        [(f.module_id, f.span_id) for f in report.failed_commits],
        report.clean,
        report.loads,
        report.modules,
    )


def incident(modules: int, seed: int) -> list[Span]:
    """Modules one minute apart, each created and loaded within a second; some race, some fail. One
    RPC between the two hosts first bounds their clock offset (else loads on B would be compared on
    the tolerance, and a module so compared waits to the end: pairs read later could bound it)."""
    rng = random.Random(seed)
    spans: list[Span] = rpc("rpc", PROCESS_A, PROCESS_B, (-1, 1), (0, 0))
    for n in range(modules):
        at = n * MINUTE_MS
        module = f"m-{n}"
        if n % 7 == 3:  # a failed commit
            spans += [
                span("create_start", module, f"t{n}", at, at + 30),
                span("db_commit", module, f"t{n}", at, at + 20, failed=True),
            ]
        else:
            spans += [
                span("create_start", module, f"t{n}", at, at + 31),
                span("db_commit", module, f"t{n}", at + 1, at + 20),
                span("cache_update", module, f"t{n}", at + 20, at + 30),
            ]
        spans += load(module, f"t{n}", at + rng.choice([10, 25, 50]), resource=rng.choice([PROCESS_A, PROCESS_B]))
        if n % 5 == 0:
            spans += load(f"orphan-{n}", f"o{n}", at + 5)  # no creation: never settled
    return sorted(spans, key=lambda s: s.end_ns)


def report(
    spans: list[Span], settle_after_s: float | None, scope: LoadScope | None = None, in_memory: int = 50_000
) -> RaceReport:
    detector = RaceDetector(settle_after_s=settle_after_s, scope=scope, settled_in_memory=in_memory)
    detector.add_all(spans)
    return detector.report()


def test_settling_gives_the_same_report_as_keeping_everything_on_time_ordered_data() -> None:
    spans = incident(3000, seed=1)
    kept = report(spans, None)
    settled = report(spans, settle_after_s=10)
    assert outcome(settled) == outcome(kept)
    assert kept.races and kept.unmatched and kept.failed_commits and kept.ambiguous


def test_settling_keeps_only_summaries_of_settled_modules() -> None:
    detector = RaceDetector(settle_after_s=10)
    detector.add_all(incident(3000, seed=2))
    in_flight = [m for m in detector._modules.values() if m.creations]  # noqa: SLF001 - the point of the test
    # In flight: the modules of the horizon and of the last 1024 lifecycle spans (one sweep's worth).
    assert len(detector._summaries) > 2300 and len(in_flight) < 1024 / 5  # noqa: SLF001
    # Loads with no creation yet stay in flight whole (their creation may still come): 600 orphans here.
    assert sum(1 for m in detector._modules.values() if not m.creations) == 600  # noqa: SLF001


def test_a_late_load_of_a_settled_module_is_judged_against_its_summary() -> None:
    spans = creation("m-late", "t1", commit_end_ms=20, cache_end_ms=30) + load("m-late", "t1", -10)
    spans += creation("m-other", "t2", commit_end_ms=120 * MINUTE_MS) + load("m-other", "t2", 120 * MINUTE_MS + 5)
    late = load("m-late", "t3", 121 * MINUTE_MS)  # two hours later, another trace
    detector = RaceDetector(settle_after_s=60)
    detector.add_all([*spans, *late])
    result = detector.report()
    assert [r.module_id for r in result.races] == ["m-late"] and result.loads == 3 and result.clean == 2
    assert result.modules == 2


def test_a_load_whose_creation_comes_later_is_not_judged_early() -> None:
    spans = load("m-1", "t1", -10) + creation("m-2", "t2", 90 * MINUTE_MS)  # m-1's creation not seen yet
    detector = RaceDetector(settle_after_s=60)
    detector.add_all(spans)
    detector.add_all(creation("m-1", "t9", commit_end_ms=10))  # found later (e.g. by module id)
    (race,) = detector.report().races
    assert race.module_id == "m-1" and race.matched_by == "module.id"


def kept_and_settled(spans: list[Span], *settle_after_s: float) -> list[RaceReport]:
    """The report keeping everything, then settling after each horizon (60 s unless given)."""
    return [report(spans, horizon) for horizon in (None, *(settle_after_s or (60,)))]


def test_a_load_compared_on_the_tolerance_is_judged_again_with_pairs_read_later() -> None:
    # The read (host B) ends 6 ms before the commit (host A) began: beyond the 5 ms tolerance, a race.
    # But a client/server pair read 2.5 hours of data later bounds clock(B) - clock(A) to [-9, -7] ms:
    # the read then ended 1-3 ms after the commit began, while it ran: ambiguous (overlap).
    spans = creation("m-p", "tp", commit_end_ms=20) + [span("load_request", "m-p", "tp", -10, -5, resource=PROCESS_B)]
    pair = rpc(
        "rpc", PROCESS_A, PROCESS_B, (150 * MINUTE_MS + 107, 150 * MINUTE_MS + 109), (150 * MINUTE_MS + 100,) * 2
    )
    everything = [*spans, *fillers(150 * MINUTE_MS), *pair]
    for result in kept_and_settled(everything, 60, 3600):
        assert result.races == []
        (ambiguous,) = result.ambiguous
        assert ambiguous.reason == "overlap" and ambiguous.checks[0].basis == "derived bound"


def test_a_cache_update_hours_after_its_loads_still_decides_them() -> None:
    # A lagging indexer: the commit [1, 20], a load reading at [30, 32], the cache update 4.6 hours
    # later. Judged when the module settled, without its cache update, the load would be clean.
    spans = creation("m-s", "ts", commit_end_ms=20) + load("m-s", "ts", 30)
    cache = span("cache_update", "m-s", "ts", 276 * MINUTE_MS, 276 * MINUTE_MS + 10)
    for result in kept_and_settled([*spans, *fillers(275 * MINUTE_MS), cache]):
        (race,) = result.races
        assert race.module_id == "m-s" and race.preceded == ["cache_update"]


def test_a_cache_update_retried_hours_later_still_decides_the_loads_before_it() -> None:
    # The first cache update failed; the indexer's retry succeeds 2.5 hours later. A load at [1000,
    # 1002] read before it: a race on cache_update, however long the retry took.
    spans = creation("m-r", "tr", commit_end_ms=20) + [span("cache_update", "m-r", "tr", 20, 30, failed=True)]
    spans += load("m-r", "tr", 1000)
    retry = span("cache_update", "m-r", "tr", 150 * MINUTE_MS, 150 * MINUTE_MS + 10)
    for result in kept_and_settled([*spans, *fillers(149 * MINUTE_MS), retry]):
        (race,) = result.races
        assert race.module_id == "m-r" and race.preceded == ["cache_update"]


def test_a_load_a_narrower_bound_read_later_could_decide_waits_for_it() -> None:
    # An early pair bounds clock(B) - clock(A) to [-9, 9] ms; the read on B ends 6 ms before the
    # commit on A began: undecided (clock). A pair 2.5 hours later narrows the bound to [-1, 1]: a race.
    early = rpc("r1", PROCESS_A, PROCESS_B, (-10, 10), (1, 1))  # theta in [1 - 10, 1 + 10] = [-9, 11]
    spans = creation("m-b", "tb", commit_end_ms=20, cache_end_ms=30)
    spans += [span("load_request", "m-b", "tb", -10, -5, resource=PROCESS_B)]
    at = 150 * MINUTE_MS
    late = rpc("r2", PROCESS_A, PROCESS_B, (at, at + 2), (at + 1, at + 1))  # theta in [-1, 1]
    for result in kept_and_settled([*early, *spans, *fillers(at), *late]):
        (race,) = result.races
        assert race.module_id == "m-b" and race.checks[0].basis == "derived bound"


def test_a_failed_commit_of_a_module_created_again_after_it_settled_is_reported() -> None:
    spans = creation("m-c", "t1", commit_end_ms=20, cache_end_ms=30) + load("m-c", "t1", 50)
    again = [
        span("create_start", "m-c", "t2", 150 * MINUTE_MS, 150 * MINUTE_MS + 30),
        span("db_commit", "m-c", "t2", 150 * MINUTE_MS + 1, 150 * MINUTE_MS + 20, failed=True),
    ]
    for result in kept_and_settled([*spans, *fillers(149 * MINUTE_MS), *again]):
        assert [(f.module_id, f.trace_id[-2:]) for f in result.failed_commits] == [("m-c", "t2")]


def test_a_failed_creation_settles_though_it_has_no_cache_update() -> None:
    # Its commit failed: no cache update will come, so its load is judged (unmatched) as it settles.
    spans = [span("create_start", "m-f", "tf", 0, 30), span("db_commit", "m-f", "tf", 1, 20, failed=True)]
    detector = RaceDetector(settle_after_s=60)
    detector.add_all([*spans, *load("m-f", "tf", 25), *fillers(120 * MINUTE_MS)])
    assert "m-f" not in detector._modules  # noqa: SLF001 - settled, summarised
    assert [u.module_id for u in detector.report().unmatched] == ["m-f"]


def fillers(until_ms: float, count: int = 300) -> list[Span]:
    """Other modules' creations and loads in time order up to ``until_ms``: more than a sweep's worth."""
    out: list[Span] = []
    for n in range(1, count + 1):
        at = n * until_ms / count
        out += creation(f"f-{n}", f"tf{n}", commit_end_ms=at, cache_end_ms=at + 2) + load(f"f-{n}", f"tf{n}", at + 5)
    return out


def test_a_settled_creation_keeps_its_first_successful_commit_not_its_last() -> None:
    spans = [
        span("create_start", "m-c", "tc", 0, 200),
        span("db_commit", "m-c", "tc", 10, 20),
        span("db_commit", "m-c", "tc", 100, 150),  # a second, later successful commit (a retry's)
    ]
    spans += fillers(120 * MINUTE_MS)
    # Two hours of data later, a load in another trace reads [50, 52] on the same clock as the creation...
    late = load("m-c", "t3", 50)
    detector = RaceDetector(settle_after_s=60)
    detector.add_all([*spans, *late])
    # ...after the first successful commit [10, 20] ended: clean. Judged against [100, 150] it would race.
    result = detector.report()
    assert result.races == [] and result.clean == result.loads == 301


def test_a_module_created_again_is_judged_against_the_creation_before_the_read() -> None:
    first = creation("m-r", "t-old", commit_end_ms=20)
    again = [span("create_start", "m-r", "t-new", 1000, 1100), span("db_commit", "m-r", "t-new", 1010, 1050)]
    # A load in a third trace reads at 1005: after the old creation, before the new commit began.
    report = RaceDetector()
    report.add_all(first + again + load("m-r", "t-load", 1005))
    (race,) = report.report().races
    assert race.creation_trace_id.endswith("t-new") and race.matched_by == "module.id"


def test_spans_arriving_late_but_inside_the_settle_window_are_judged_with_their_module() -> None:
    # m-w's first commit failed; its load came; its successful commit reaches the archive late, after
    # 58 minutes of other modules' data (well over a sweep's 1024 lifecycle spans), inside the 1 h window.
    early = [span("create_start", "m-w", "tw", 0, 25), span("db_commit", "m-w", "tw", 1, 5, failed=True)]
    early += load("m-w", "tw", -10)
    late_commit = span("db_commit", "m-w", "tw", 10, 20)
    detector = RaceDetector(settle_after_s=3600)
    detector.add_all([*early, *fillers(58 * MINUTE_MS), late_commit])
    report = detector.report()
    # Judged against the late successful commit [10, 20]: a race. Settled too early, it would be unmatched.
    assert [r.module_id for r in report.races] == ["m-w"] and report.unmatched == []


def test_the_scope_is_fixed_once_loads_were_judged_early() -> None:
    detector = RaceDetector(settle_after_s=10, scope=LoadScope(service="canvas-service"))
    detector.add_all(incident(200, seed=3))
    assert all(r.load_service == "canvas-service" for r in detector.report().races)
    with pytest.raises(ValueError):
        detector.report(module="m-1")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), modules=st.integers(1, 80), horizon=st.sampled_from([5, 30, 50]))
def test_any_time_ordered_incident_gives_the_same_report_settled_or_not(seed: int, modules: int, horizon: int) -> None:
    spans = incident(modules, seed)
    kept = outcome(report(spans, None))
    assert outcome(report(spans, horizon)) == kept
    assert outcome(report(spans, horizon, in_memory=2)) == kept  # most summaries on disk


def test_summaries_beyond_the_bound_go_to_disk_and_memory_stays_flat() -> None:
    detector = RaceDetector(settle_after_s=10, settled_in_memory=100)
    held = []
    for n, piece in enumerate(_chunks(incident(3000, seed=5), 500)):
        detector.add_all(piece)
        if n % 4 == 3:
            held.append(len(detector._summaries._memory))  # noqa: SLF001 - the point of the test
    assert max(held) <= 100 and detector._summaries.on_disk > 2000  # noqa: SLF001
    assert len(detector._summaries) > 2300  # noqa: SLF001 - none forgotten


def _chunks(spans: list[Span], size: int) -> list[list[Span]]:
    return [spans[i : i + size] for i in range(0, len(spans), size)]


@pytest.mark.parametrize(("read_ms", "raced"), [(50, False), (5, True)])
def test_a_late_load_finds_its_module_summary_on_disk(read_ms: int, raced: bool) -> None:
    spans = creation("m-d", "td", commit_end_ms=20, cache_end_ms=30) + fillers(120 * MINUTE_MS)
    detector = RaceDetector(settle_after_s=60, settled_in_memory=10)
    detector.add_all(spans)
    summaries = detector._summaries  # noqa: SLF001 - the point of the test
    assert summaries.on_disk > 150 and "m-d" not in summaries._memory  # noqa: SLF001 - m-d's on disk
    detector.add_all(load("m-d", "t-late", read_ms))  # two hours later, another trace, by module id
    result = detector.report()
    assert [r.module_id for r in result.races] == (["m-d"] if raced else [])
    assert result.unmatched == [] and result.loads == 301 and result.modules == 301
    if raced:
        assert result.races[0].matched_by == "module.id" and result.races[0].creation_trace_id.endswith("td")


def failures(modules: int, seed: int) -> list[Span]:
    """Modules one minute apart whose loads fail in every way diagnose tells apart: a race, a pool
    timeout on the query, a 401 on an HTTP call inside the load (another span of its trace), no
    creation at all, or nothing known; some loads come in a trace of their own, by module id."""
    rng = random.Random(seed)
    spans: list[Span] = rpc("rpc", PROCESS_A, PROCESS_B, (-1, 1), (0, 0))  # bounds the hosts' offset
    for n in range(modules):
        at = n * MINUTE_MS
        module, trace = f"m-{n}", f"t{n}"
        spans += creation(module, trace, commit_end_ms=at + 20, cache_end_ms=at + 30)
        way = rng.choice(["race", "pool", "auth", "none", "clean"])
        load_trace = trace if rng.random() < 0.7 else f"l{n}"
        query: dict[str, object] = {"error.type": "ModuleNotFound"} if way == "race" else {}
        if way == "pool":
            query = {"module.pool.timed_out": True, "module.pool.wait_ms": 5000.0, "module.pool.size": 5}
        loaded = load(
            module,
            load_trace,
            at + (10 if way == "race" else 50),
            resource=rng.choice([PROCESS_A, PROCESS_B]),
            failed=way != "clean",
            query_attributes=query,
        )
        if way == "auth":
            call = span("load_request", None, load_trace, at + 50, at + 52, parent=loaded[0].span_id)
            spans.append(call._replace(name="GET", kind=3, attributes={"http.response.status_code": 401}))
        spans += loaded
        if n % 9 == 0:  # no creation: not found, and never settled
            spans += load(f"orphan-{n}", f"o{n}", at + 5, failed=True)
    return sorted(spans, key=lambda s: s.end_ns)


def diagnosis(spans: list[Span], settle_after_s: float | None) -> tuple[Diagnoser, tuple[object, ...]]:
    diagnoser = Diagnoser(RaceDetector(settle_after_s=settle_after_s))
    diagnoser.add_all(spans)
    report, races = diagnoser.reports()
    return diagnoser, (
        [
            (d.module_id, d.load_span_id, d.cause, d.strength, d.evidence, d.secondary, d.missing, d.detail)
            for d in report.diagnoses
        ],
        report.loads,
        report.by_cause,
        outcome(races),
    )


def test_a_settling_diagnosis_gives_the_same_report_as_keeping_everything_on_time_ordered_data() -> None:
    spans = failures(1500, seed=4)
    kept, everything = diagnosis(spans, None)
    settled, bounded = diagnosis(spans, settle_after_s=10)
    assert bounded == everything
    causes = {d[2] for d in everything[0]}  # type: ignore[index]
    assert causes == {"race", "pool", "auth", "not_found", "unknown"}
    # Memory follows the modules in flight: the evidence of most traces is gone, the orphans' kept.
    assert len(kept._traces) > 1000 and len(settled._traces) < 300  # noqa: SLF001 - the point of the test
    assert all(e.loads for e in settled._traces.values() if e.bucket < settled._cutoff())  # noqa: SLF001


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), modules=st.integers(1, 60), horizon=st.sampled_from([5, 30, 50]))
def test_any_time_ordered_incident_gives_the_same_diagnosis_settled_or_not(
    seed: int, modules: int, horizon: int
) -> None:
    spans = failures(modules, seed)
    assert diagnosis(spans, horizon)[1] == diagnosis(spans, None)[1]


def test_a_late_load_whose_summary_was_damaged_on_disk_is_unmatched_and_its_module_counted_once() -> None:
    spans = creation("m-d", "td", commit_end_ms=20, cache_end_ms=30) + fillers(120 * MINUTE_MS)
    detector = RaceDetector(settle_after_s=60, settled_in_memory=10)
    detector.add_all(spans)
    disk = detector._summaries._disk  # noqa: SLF001 - the damage is put into the real file
    assert disk is not None
    disk._db.execute("UPDATE settled SET creations = x'00' WHERE module_id = 'm-d'")  # noqa: SLF001
    detector.add_all(load("m-d", "t-late", 5))  # would race its commit, were the summary there
    result = detector.report()
    assert result.races == [] and [u.module_id for u in result.unmatched] == ["m-d"]
    assert result.modules == 301 and "never a race" in detector.settled_problem
