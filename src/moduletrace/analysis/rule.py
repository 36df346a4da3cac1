"""The race rule, version 2 (docs/design.md), for one load against one creation stage: a pure function.

The stage window ``W = [w_s, w_e]`` is the stage's span; the read window ``R = [r_s, r_e]`` is what
the load read in (its database client span, else its database-query stage span, else its request).
First match wins:

1. data: the load recorded what it saw. Saw the write: ``clean`` (if the clocks said the read ended
   before the stage began, that contradiction is noted). Missed it: ``race``, or ``stale_read`` when
   the read provably began after the stage ended (a lagging replica or cache).
2. ``race`` when the read provably ended before the stage began: ``r_e < w_s``.
3. ``clean`` when the read provably began after the stage ended: ``r_s > w_e``.
4. ``ambiguous``: reason ``overlap`` (for every admissible clock offset the read ran while the stage
   was in flight) or ``clock`` (some admissible offset would have decided it).

"Provably" is exact on a shared clock; across clocks it must hold for every offset theta =
clock(read) - clock(stage) in the bound: the true margin ``w_s - r_e`` is ``margin + theta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from moduletrace.analysis.clocks import ClockBasis, OffsetBound

Verdict = Literal["race", "stale_read", "ambiguous", "clean"]
Reason = Literal["overlap", "clock", ""]


class Window(NamedTuple):
    """An interval of Unix nanoseconds on one clock."""

    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class StageCheck:
    """One load compared with one creation stage, and why."""

    stage: str
    verdict: Verdict
    reason: Reason  # for ambiguous: "overlap" or "clock"
    decided_by: Literal["data", "clocks"]
    margin_ms: float  # w_s - r_e, to the nanosecond: positive = the read ended that long before the stage began
    stage_span_id: str
    stage_window: Window
    stage_service: str  # the service that ran the stage
    basis: str  # "same process", "same host", "derived bound", "tolerance"
    bound_ms: tuple[float, float] | None  # the clock-offset interval used across clocks, else None
    clocks_contradicted: bool  # the data said it saw the write; the clocks said the read came first
    explanation: str


def judge_stage(
    stage: str,
    stage_span_id: str,
    written: Window,
    read: Window,
    clock: ClockBasis,
    saw: bool | None = None,
    seen_detail: str = "",
    stage_service: str = "",
) -> StageCheck:
    """The verdict of the rule for one stage. ``saw``: what the load recorded (None: nothing)."""
    margin = written.start_ns - read.end_ns  # > 0: the read ended before the stage began
    after = read.start_ns - written.end_ns  # > 0: the read began after the stage ended
    bound = clock.bound
    verdict, reason, contradicted = decide(written.start_ns, written.end_ns, read.start_ns, read.end_ns, bound, saw)
    bound_ms = (round(bound.low_ns / 1e6, 6), round(bound.high_ns / 1e6, 6)) if bound is not None else None
    return StageCheck(
        stage=stage,
        verdict=verdict,
        reason=reason,
        decided_by="data" if saw is not None else "clocks",
        margin_ms=round(margin / 1e6, 6),
        stage_span_id=stage_span_id,
        stage_window=written,
        stage_service=stage_service,
        basis=clock.basis,
        bound_ms=bound_ms,
        clocks_contradicted=contradicted,
        explanation=_explain(stage, stage_span_id, verdict, reason, margin, after, clock, bound_ms, saw, seen_detail),
    )


def decide(
    written_start: int,
    written_end: int,
    read_start: int,
    read_end: int,
    bound: OffsetBound | None,
    saw: bool | None = None,
) -> tuple[Verdict, Reason, bool]:
    """The rule's decision alone: (verdict, reason, clocks contradicted), as :func:`judge_stage` gives
    them, without the evidence (most loads are clean: the detector asks this first)."""
    margin = written_start - read_end
    after = read_start - written_end
    low, high = (bound.low_ns, bound.high_ns) if bound is not None else (0, 0)
    surely_before = margin + low > 0
    surely_after = after - high > 0
    if saw is True:
        return "clean", "", surely_before
    if saw is False:
        return ("stale_read" if surely_after else "race"), "", False
    if surely_before:
        return "race", "", False
    if surely_after:
        return "clean", "", False
    return "ambiguous", ("clock" if (margin + high > 0 or after - low > 0) else "overlap"), False


def settled_by_narrower_bounds(
    written_start: int, written_end: int, read_start: int, read_end: int, bound: OffsetBound
) -> bool:
    """Whether every narrower bound gives :func:`decide` the same answer as ``bound`` (more client/server
    pairs only narrow a derived bound): neither "the read ended before the stage began" nor "began
    after it ended" holds for some offsets of the bound and not for all."""
    margin = written_start - read_end
    after = read_start - written_end
    before_open = margin + bound.high_ns > 0 >= margin + bound.low_ns
    after_open = after - bound.low_ns > 0 >= after - bound.high_ns
    return not (before_open or after_open)


def _explain(
    stage: str,
    span_id: str,
    verdict: Verdict,
    reason: Reason,
    margin: int,
    after: int,
    clock: ClockBasis,
    bound_ms: tuple[float, float] | None,
    saw: bool | None,
    seen_detail: str,
) -> str:
    if margin > 0:
        timing = f"the read ended {margin / 1e6:.3f} ms before {stage} span {span_id} began"
    elif after > 0:
        timing = f"the read began {after / 1e6:.3f} ms after {stage} span {span_id} ended"
    else:
        timing = f"the read overlapped {stage} span {span_id}"
    if bound_ms is None:
        clocks = f"{clock.basis}: timestamps compare exactly"
    elif clock.basis == "derived bound" and clock.bound is not None:
        clocks = (
            f"clock offset in [{_ms(bound_ms[0])}, {_ms(bound_ms[1])}] ms from {clock.bound.pairs} client/server pairs"
        )
    elif clock.note:
        clocks = f"skew tolerance {_ms(bound_ms[1])} ms: {clock.note}"
    else:
        clocks = f"different hosts, skew tolerance {_ms(bound_ms[1])} ms"
    if saw is not None:
        data = f"the load recorded that it {'saw' if saw else 'missed'} the write" + (
            f" ({seen_detail})" if seen_detail else ""
        )
        if verdict == "stale_read":
            return f"{data}, although {timing} ({clocks}): a stale read (a lagging replica or cache)"
        if saw and margin > 0:
            return f"{data}; the clocks contradict it: {timing} ({clocks}); the data wins"
        return f"{data}; {timing} ({clocks})"
    if verdict == "ambiguous":
        why = "inside the clock bound" if reason == "clock" else "while the stage was in flight"
        return f"{timing} ({clocks}): undecided, {why}"
    return f"{timing} ({clocks})"


def _ms(value: float) -> str:
    """Milliseconds as people write them: 5, 0.25, 0.000001."""
    return f"{round(value, 6) + 0.0:.6f}".rstrip("0").rstrip(".")  # "0.000000" -> "0"; + 0.0: never "-0"
