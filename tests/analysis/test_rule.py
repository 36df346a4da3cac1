"""The race rule version 2 for one load against one stage (docs/design.md), at every boundary.

Windows are in nanoseconds on the stage's clock unless a bound says the read's clock differs:
theta = clock(read) - clock(stage) lies in the bound, so the true margin is margin + theta.
"""

from __future__ import annotations

import pytest

from moduletrace.analysis.clocks import ClockBasis, OffsetBound
from moduletrace.analysis.rule import Window, _ms, judge_stage

SAME = ClockBasis("same process", None)
TOLERANCE = ClockBasis("tolerance", OffsetBound(-5, 5, 0))  # +-5 ns, to keep the arithmetic visible
STAGE = Window(100, 200)


def judge(read: Window, clock: ClockBasis = SAME, saw: bool | None = None) -> tuple[str, str]:
    check = judge_stage("db_commit", "c0ffee", STAGE, read, clock, saw)
    return check.verdict, check.reason


# --- clocks alone, one clock -------------------------------------------------------------------


def test_a_read_that_ended_just_before_the_stage_began_is_a_race() -> None:
    assert judge(Window(50, 99)) == ("race", "")


def test_a_read_that_ended_exactly_when_the_stage_began_is_not_proven_a_race() -> None:
    assert judge(Window(50, 100)) == ("ambiguous", "overlap")


def test_a_read_that_began_just_after_the_stage_ended_is_clean() -> None:
    assert judge(Window(201, 250)) == ("clean", "")


def test_a_read_that_began_exactly_when_the_stage_ended_is_not_proven_clean() -> None:
    assert judge(Window(200, 250)) == ("ambiguous", "overlap")


def test_a_read_inside_the_stage_is_an_overlap() -> None:
    assert judge(Window(120, 180)) == ("ambiguous", "overlap")


def test_a_read_spanning_the_whole_stage_is_an_overlap() -> None:
    assert judge(Window(50, 250)) == ("ambiguous", "overlap")


def test_the_margin_is_stage_start_minus_read_end_in_milliseconds() -> None:
    check = judge_stage("db_commit", "c", Window(3_000_000, 5_000_000), Window(0, 1_500_000), SAME)
    assert check.margin_ms == 1.5
    check = judge_stage("db_commit", "c", Window(3_000_000, 5_000_000), Window(6_000_000, 7_000_000), SAME)
    assert check.margin_ms == -4.0


# --- across clocks: the gap must clear the bound ----------------------------------------------


def test_across_clocks_a_gap_beyond_the_bound_is_a_race() -> None:
    assert judge(Window(50, 94), TOLERANCE) == ("race", "")  # margin 6 > 5


def test_across_clocks_a_gap_exactly_at_the_bound_is_undecided_by_the_clock() -> None:
    assert judge(Window(50, 95), TOLERANCE) == ("ambiguous", "clock")  # margin 5 = bound


def test_across_clocks_a_gap_inside_the_bound_is_undecided_by_the_clock() -> None:
    assert judge(Window(50, 98), TOLERANCE) == ("ambiguous", "clock")
    assert judge(Window(203, 250), TOLERANCE) == ("ambiguous", "clock")


def test_across_clocks_a_late_read_beyond_the_bound_is_clean_and_at_the_bound_is_not() -> None:
    assert judge(Window(206, 250), TOLERANCE) == ("clean", "")
    assert judge(Window(205, 250), TOLERANCE) == ("ambiguous", "clock")


def test_across_clocks_a_read_overlapping_for_every_offset_is_an_overlap() -> None:
    assert judge(Window(120, 180), TOLERANCE) == ("ambiguous", "overlap")


def test_a_derived_bound_off_zero_shifts_the_comparison() -> None:
    # The read's clock runs 100..102 ns ahead: a read stamped 150..190 ran at 48..90 on the stage's clock.
    ahead = ClockBasis("derived bound", OffsetBound(100, 102, 3))
    assert judge(Window(150, 190), ahead) == ("race", "")
    assert judge(Window(150, 200), ahead) == ("ambiguous", "clock")  # 98..100: the last ns is undecided


# --- recorded data first ------------------------------------------------------------------------


def test_a_read_that_saw_the_write_is_clean_whatever_the_clocks_say() -> None:
    check = judge_stage("db_commit", "c", STAGE, Window(50, 99), SAME, saw=True)
    assert (check.verdict, check.decided_by, check.clocks_contradicted) == ("clean", "data", True)
    assert "contradict" in check.explanation


def test_a_read_that_saw_the_write_during_the_stage_is_clean_without_contradiction() -> None:
    check = judge_stage("db_commit", "c", STAGE, Window(150, 160), SAME, saw=True)
    assert (check.verdict, check.clocks_contradicted) == ("clean", False)


@pytest.mark.parametrize("read", [Window(50, 99), Window(120, 180), Window(50, 250), Window(200, 210)])
def test_a_read_that_missed_the_write_before_or_during_the_stage_is_a_race(read: Window) -> None:
    check = judge_stage("db_commit", "c", STAGE, read, SAME, saw=False)
    assert (check.verdict, check.decided_by) == ("race", "data")


def test_a_read_that_missed_the_write_after_the_stage_ended_is_a_stale_read() -> None:
    assert judge(Window(201, 250), saw=False) == ("stale_read", "")
    # Across clocks, "after" must clear the bound too; inside it the miss is a race.
    assert judge(Window(206, 250), TOLERANCE, saw=False) == ("stale_read", "")
    assert judge(Window(205, 250), TOLERANCE, saw=False) == ("race", "")


# --- what a check says, exactly (responders read these lines) -----------------------------------


def test_a_check_names_its_stage_span_window_and_how_it_was_decided() -> None:
    check = judge_stage("cache_update", "beef", STAGE, Window(50, 99), SAME, stage_service="indexer")
    assert (check.stage, check.stage_span_id, check.stage_window, check.stage_service) == (
        "cache_update",
        "beef",
        STAGE,
        "indexer",
    )
    assert (check.decided_by, check.clocks_contradicted, check.bound_ms, check.reason) == ("clocks", False, None, "")


def test_margins_and_bounds_are_milliseconds_to_the_nanosecond() -> None:
    bound = ClockBasis("derived bound", OffsetBound(-1_234_567, 2_345_678, 4))
    check = judge_stage("db_commit", "c", Window(10_000_000, 20_000_000), Window(0, 4_765_433), bound)
    assert check.margin_ms == 5.234567 and check.bound_ms == (-1.234567, 2.345678)
    # A race by one nanosecond has a positive margin, never a rounded 0.0.
    assert judge_stage("db_commit", "c", Window(100, 200), Window(0, 99), SAME).margin_ms == 0.000001


def test_the_undecided_reason_turns_on_the_last_nanosecond_of_the_bound() -> None:
    # With theta in [-5, +5] ns: a read ending 4 ns into the stage may still have ended before it.
    assert judge(Window(50, 104), TOLERANCE) == ("ambiguous", "clock")
    assert judge(Window(50, 105), TOLERANCE) == ("ambiguous", "overlap")
    assert judge(Window(196, 250), TOLERANCE) == ("ambiguous", "clock")
    assert judge(Window(195, 250), TOLERANCE) == ("ambiguous", "overlap")


def test_explanations_say_what_decided_each_verdict() -> None:
    def says(read: Window, clock: ClockBasis = SAME, saw: bool | None = None, detail: str = "") -> str:
        return judge_stage("db_commit", "c0ffee", STAGE, read, clock, saw, detail).explanation

    assert says(Window(50, 99)) == (
        "the read ended 0.000 ms before db_commit span c0ffee began (same process: timestamps compare exactly)"
    )
    assert says(Window(120, 180)) == (
        "the read overlapped db_commit span c0ffee (same process: timestamps compare exactly): "
        "undecided, while the stage was in flight"
    )
    assert says(Window(203, 250), TOLERANCE) == (
        "the read began 0.000 ms after db_commit span c0ffee ended (different hosts, skew tolerance 0.000005 ms): "
        "undecided, inside the clock bound"
    )
    assert says(Window(50, 99), saw=True) == (
        "the load recorded that it saw the write; the clocks contradict it: the read ended 0.000 ms before "
        "db_commit span c0ffee began (same process: timestamps compare exactly); the data wins"
    )
    assert says(Window(201, 250), saw=False, detail="module.data.found=false") == (
        "the load recorded that it missed the write (module.data.found=false), although the read began 0.000 ms "
        "after db_commit span c0ffee ended (same process: timestamps compare exactly): a stale read "
        "(a lagging replica or cache)"
    )
    derived = ClockBasis("derived bound", OffsetBound(-2_000_000, 3_000_000, 7))
    assert says(Window(150, 160), derived).endswith(
        "(clock offset in [-2, 3] ms from 7 client/server pairs): undecided, inside the clock bound"
    )
    anonymous = ClockBasis("tolerance", OffsetBound(-5, 5, 0), "service svc records no host")
    assert "(skew tolerance 0.000005 ms: service svc records no host)" in says(Window(120, 180), anonymous)


def test_a_read_ending_exactly_at_the_stage_start_is_said_to_overlap_it() -> None:
    touching = judge_stage("db_commit", "c", STAGE, Window(50, 100), SAME)
    assert touching.explanation.startswith("the read overlapped db_commit span c")
    assert judge_stage("db_commit", "c", STAGE, Window(200, 250), SAME).explanation.startswith("the read overlapped")
    assert judge_stage("db_commit", "c", STAGE, Window(50, 100), SAME).stage_service == ""


def test_only_a_seen_write_that_the_clocks_put_after_the_read_is_a_contradiction() -> None:
    missed_early = judge_stage("db_commit", "c", STAGE, Window(50, 99), SAME, saw=False)
    assert not missed_early.clocks_contradicted and "contradict" not in missed_early.explanation
    assert missed_early.explanation.startswith("the load recorded that it missed the write; the read ended")
    seen_at_start = judge_stage("db_commit", "c", STAGE, Window(50, 100), SAME, saw=True)
    assert not seen_at_start.clocks_contradicted and "contradict" not in seen_at_start.explanation


def test_explanations_give_long_gaps_in_milliseconds() -> None:
    second = 1_000_000_000
    late = judge_stage("db_commit", "c", Window(0, second), Window(3 * second, 4 * second), SAME)
    assert late.explanation.startswith("the read began 2000.000 ms after db_commit span c ended")
    early = judge_stage("db_commit", "c", Window(3 * second, 4 * second), Window(0, second), SAME)
    assert early.explanation.startswith("the read ended 2000.000 ms before db_commit span c began")


@pytest.mark.parametrize(
    ("value", "written"), [(-0.0, "0"), (-0.0000004, "0"), (-0.0000006, "-0.000001"), (0.25, "0.25")]
)
def test_milliseconds_are_written_as_people_write_them_and_never_as_minus_zero(value: float, written: str) -> None:
    assert _ms(value) == written
