"""The race rule version 2 for one load against one stage (docs/design.md), at every boundary.

Windows are in nanoseconds on the stage's clock unless a bound says the read's clock differs:
theta = clock(read) - clock(stage) lies in the bound, so the true margin is margin + theta.
"""

from __future__ import annotations

import pytest

from moduletrace.analysis.clocks import ClockBasis, OffsetBound
from moduletrace.analysis.rule import Window, judge_stage

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
