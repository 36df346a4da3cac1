"""Clock-offset bounds from client/server pairs, in both orientations, and how two spans compare."""

from __future__ import annotations

from moduletrace.analysis.clocks import ClockBasis, ClockOffsets, Clocks, OffsetBound
from moduletrace.spans import KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, Resource, Span

A = Resource("caller", "proc-a", "host-a")
Z = Resource("callee", "proc-z", "host-z")  # sorts after A: bounds are stored one way round


def rpc(
    client: Resource, server: Resource, client_ns: tuple[int, int], server_ns: tuple[int, int], n: int
) -> list[Span]:
    client_id, server_id = f"{n:015x}c", f"{n:015x}s"
    return [
        Span("1" * 32, client_id, "", "GET", KIND_CLIENT, *client_ns, 0, "", {}, client),
        Span("1" * 32, server_id, client_id, "GET /", KIND_SERVER, *server_ns, 0, "", {}, server),
    ]


def offsets(*pairs: list[Span]) -> ClockOffsets:
    found = ClockOffsets()
    for pair in pairs:
        for span in pair:
            found.add(span)
    return found


def test_a_server_start_inside_its_client_bounds_the_offset_from_both_sides() -> None:
    # Client [0, 10] on A; the server starts at 102 on Z's clock: theta(Z - A) in [92, 102].
    found = offsets(rpc(A, Z, (0, 10), (102, 500), 1))
    assert found.bound(A.clock, Z.clock) == OffsetBound(92, 102, 1)
    assert found.bound(Z.clock, A.clock) == OffsetBound(-102, -92, 1)


def test_the_bound_is_the_same_whichever_side_calls() -> None:
    # Z calls A this time: client [0, 10] on Z, server starts at 3 on A: theta(A - Z) in [-7, 3].
    found = offsets(rpc(Z, A, (0, 10), (3, 8), 1))
    assert found.bound(Z.clock, A.clock) == OffsetBound(-7, 3, 1)
    assert found.bound(A.clock, Z.clock) == OffsetBound(-3, 7, 1)


def test_pairs_intersect_and_are_counted() -> None:
    found = offsets(rpc(A, Z, (0, 10), (102, 105), 1), rpc(A, Z, (1000, 1004), (1099, 1100), 2))
    assert found.bound(A.clock, Z.clock) == OffsetBound(95, 99, 2)


def test_an_exact_bound_is_a_bound_and_a_contradiction_is_none() -> None:
    exact = offsets(rpc(A, Z, (0, 10), (10, 12), 1), rpc(A, Z, (100, 110), (100, 130), 2))
    assert exact.bound(A.clock, Z.clock) == OffsetBound(0, 0, 2)
    contradictory = offsets(rpc(A, Z, (0, 10), (2, 8), 1), rpc(A, Z, (100, 110), (250, 260), 2))
    assert contradictory.bound(A.clock, Z.clock) is None and contradictory.bound(Z.clock, A.clock) is None
    assert contradictory.inconsistent_pairs() == [(A.clock, Z.clock)]


def test_a_server_span_read_before_its_client_is_paired_when_the_client_comes() -> None:
    client, server = rpc(A, Z, (0, 10), (102, 500), 1)
    found = offsets([server, client])
    assert found.bound(A.clock, Z.clock) == OffsetBound(92, 102, 1)


def test_pairs_on_one_clock_bound_nothing() -> None:
    assert offsets(rpc(A, A, (0, 10), (2, 8), 1)).bound(A.clock, A.clock) is None


def test_spans_of_one_process_or_one_host_compare_exactly() -> None:
    clocks = Clocks(ClockOffsets(), tolerance_ns=5_000_000)
    assert clocks.compare(A, A) == ClockBasis("same process", None)
    assert clocks.compare(A, Resource("other", "proc-b", "host-a")) == ClockBasis("same host", None)


def test_across_hosts_a_derived_bound_wins_over_the_tolerance_unless_switched_off() -> None:
    found = offsets(rpc(A, Z, (0, 10), (102, 500), 1))
    assert Clocks(found, 5).compare(A, Z) == ClockBasis("derived bound", OffsetBound(92, 102, 1))
    assert Clocks(found, 5, derive_bounds=False).compare(A, Z) == ClockBasis("tolerance", OffsetBound(-5, 5, 0))


def test_a_service_without_host_or_process_is_named_in_the_comparison() -> None:
    anonymous = Resource("svc", "", "")
    clocks = Clocks(ClockOffsets(), 5)
    assert clocks.compare(anonymous, A).note == (
        "service svc records no host or process (host.name, service.instance.id): its spans can share a clock "
        "with nothing; set them in OTEL_RESOURCE_ATTRIBUTES or enable the SDK's host and process resource detectors"
    )
    assert clocks.compare(A, anonymous).note == clocks.compare(anonymous, A).note
    assert clocks.compare(A, Resource("", "", "")).note.startswith("service ? records no host or process ")
    assert clocks.compare(A, Z).note == ""


def test_two_server_spans_read_before_their_client_both_count() -> None:
    client, first = rpc(A, Z, (0, 10), (102, 500), 1)
    second = first._replace(span_id="2" * 16, start_ns=105)  # a retry served under the same client span
    found = offsets([first, second, client])
    assert found.bound(A.clock, Z.clock) == OffsetBound(95, 102, 2)
    assert found.inconsistent_pairs() == []


def test_an_exact_bound_is_not_an_inconsistency_and_a_host_alone_is_an_identity() -> None:
    exact = offsets(rpc(A, Z, (0, 10), (10, 12), 1), rpc(A, Z, (100, 110), (100, 130), 2))
    assert exact.inconsistent_pairs() == []
    assert Clocks(ClockOffsets(), 5).compare(Resource("svc", "", "h1"), Resource("svc", "", "h2")).note == ""


def test_only_a_server_span_bounds_the_offset_not_a_later_job_its_client_started() -> None:
    # The call queued a job on Z that ran 490 ns after the call ended: its start is no evidence.
    client, server = rpc(A, Z, (0, 10), (500, 900), 1)
    assert offsets([client, server._replace(kind=KIND_INTERNAL)]).bound(A.clock, Z.clock) is None


def test_a_server_span_finds_its_client_among_the_last_window_client_spans_only() -> None:
    X, Y = Resource("callee-x", "proc-x", "host-x"), Resource("callee-y", "proc-y", "host-y")
    (c1, s1), (c2, s2), (c3, s3) = (rpc(A, callee, (0, 10), (5, 8), n) for n, callee in enumerate((X, Y, Z)))
    found = ClockOffsets(window=2)
    for span in (c1, c2, c3, s1, s2, s3):  # the oldest client is forgotten when the third comes
        found.add(span)
    assert [found.bound(A.clock, callee.clock) is not None for callee in (X, Y, Z)] == [False, True, True]


def test_by_default_a_server_span_finds_its_client_among_the_last_20000_client_spans() -> None:
    client, server = rpc(A, Z, (0, 10), (5, 8), 0)
    later = [rpc(A, Z, (0, 10), (5, 8), n)[0] for n in range(1, 20_001)]  # clients whose servers never came
    held, forgotten = ClockOffsets(), ClockOffsets()
    for span in (client, *later[:-1], server):  # 20,000 clients: the first is still held
        held.add(span)
    for span in (client, *later, server):  # 20,001: the first is forgotten
        forgotten.add(span)
    assert held.bound(A.clock, Z.clock) == OffsetBound(-5, 5, 1)
    assert forgotten.bound(A.clock, Z.clock) is None
