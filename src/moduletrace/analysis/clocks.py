"""Which clocks two spans were timed on, and how far apart those clocks can be.

Spans of one process (``service.instance.id``) or one host (``host.id``, else ``host.name``) share a
clock and compare exactly. Across hosts, the offset theta = clock(B) - clock(A) is bounded by the
client/server span pairs between the hosts: a SERVER span on B *starts* inside its CLIENT span on A,
so with true times

    client.start <= server.start - theta <= client.end
    =>  server.start - client.end  <=  theta  <=  server.start - client.start

Only starts are evidence: a server span may end after its client (an ASGI server span closes after
the response is sent and read), so ends say nothing. Intersecting the intervals over every pair
gives a hard bound; an empty intersection means broken instrumentation or a clock step: no bound.
Without pairs, the skew tolerance stands in as ``[-tolerance, +tolerance]``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from moduletrace.spans import KIND_CLIENT, KIND_SERVER, Resource, Span


@dataclass(frozen=True, slots=True)
class OffsetBound:
    """theta = clock(target) - clock(reference) lies in [low_ns, high_ns], from ``pairs`` RPCs."""

    low_ns: int
    high_ns: int
    pairs: int


class ClockBasis(NamedTuple):
    """How two spans' timestamps compare: exactly (``bound`` None) or within an offset bound."""

    basis: str  # "same process", "same host", "derived bound", "tolerance"
    bound: OffsetBound | None  # theta = clock(read) - clock(stage); None: compare exactly
    note: str = ""  # why no exact comparison was possible, when the data says


class ClockOffsets:
    """Collects client/server pairs as spans stream by; memory is bounded by ``window`` spans.

    A server span is paired with its client when both are among the last ``window`` client
    (or unpaired server) spans read: in a collector archive they are lines apart, not millions.
    """

    def __init__(self, window: int = 20_000) -> None:
        self._window = window
        self._clients: OrderedDict[str, tuple[str, int, int]] = OrderedDict()
        self._servers: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()
        self._bounds: dict[tuple[str, str], list[int]] = {}  # (A, B) -> [low, high, pairs]

    def add(self, span: Span) -> None:
        if span.kind == KIND_CLIENT:
            self.add_client(span.span_id, span.resource.clock, span.start_ns, span.end_ns)
        elif span.kind == KIND_SERVER and span.parent_span_id:
            self.add_server(span.parent_span_id, span.resource.clock, span.start_ns)

    def add_client(self, span_id: str, clock: str, start_ns: int, end_ns: int) -> None:
        """A CLIENT span (its fields, not the span: the detector has them unpacked already)."""
        client = (clock, start_ns, end_ns)
        clients = self._clients
        clients[span_id] = client  # 64 random bits: unique enough
        if len(clients) > self._window:
            clients.popitem(last=False)
        if self._servers:
            for server in self._servers.pop(span_id, ()):
                self._pair(client, server)

    def add_server(self, parent_span_id: str, clock: str, start_ns: int) -> None:
        """A SERVER span with a parent: paired with its client now, or when the client comes."""
        server = (clock, start_ns)
        found = self._clients.get(parent_span_id)
        if found is not None:
            self._pair(found, server)
            return
        pending = self._servers.get(parent_span_id)
        if pending is None:
            servers = self._servers
            servers[parent_span_id] = [server]
            if len(servers) > self._window:
                servers.popitem(last=False)
        else:
            pending.append(server)

    def _pair(self, client: tuple[str, int, int], server: tuple[str, int]) -> None:
        a, client_start, client_end = client
        b, server_start = server
        if a == b:
            return
        low, high = server_start - client_end, server_start - client_start
        if a > b:  # store one orientation: theta(A->B) = -theta(B->A)
            a, b, low, high = b, a, -high, -low
        bound = self._bounds.get((a, b))
        if bound is None:
            self._bounds[(a, b)] = [low, high, 1]
        else:
            bound[0] = max(bound[0], low)
            bound[1] = min(bound[1], high)
            bound[2] += 1

    def bound(self, reference: str, target: str) -> OffsetBound | None:
        """The bound on clock(target) - clock(reference), or None if unknown or inconsistent."""
        flip = reference > target
        bound = self._bounds.get((target, reference) if flip else (reference, target))
        if bound is None or bound[0] > bound[1]:
            return None
        low, high, pairs = bound
        return OffsetBound(-high, -low, pairs) if flip else OffsetBound(low, high, pairs)

    def inconsistent_pairs(self) -> list[tuple[str, str]]:
        """Clock pairs whose RPCs contradict each other (broken instrumentation or a clock step)."""
        return sorted(key for key, (low, high, _) in self._bounds.items() if low > high)


class Clocks:
    """Answers "how do these two spans' times compare?", caching derived bounds per clock pair."""

    def __init__(self, offsets: ClockOffsets, tolerance_ns: int, derive_bounds: bool = True) -> None:
        self.offsets = offsets
        self.tolerance = OffsetBound(-tolerance_ns, tolerance_ns, 0)
        self.derive_bounds = derive_bounds
        self._cache: dict[tuple[str, str], ClockBasis] = {}

    def forget(self) -> None:
        """Drop cached bounds: more pairs may have been read since."""
        self._cache = {}

    def compare(self, stage: Resource, read: Resource) -> ClockBasis:
        shared = read.shares_clock_with(stage)
        if shared is not None:
            return ClockBasis(shared, None)
        key = (stage.clock, read.clock)
        found = self._cache.get(key)
        if found is None:
            bound = self.offsets.bound(*key) if self.derive_bounds else None
            if bound is not None:
                found = ClockBasis("derived bound", bound)
            else:
                found = ClockBasis("tolerance", self.tolerance, _anonymous(stage) or _anonymous(read))
            self._cache[key] = found
        return found


def _anonymous(resource: Resource) -> str:
    if resource.host or resource.instance_id:
        return ""
    return (
        f"service {resource.service_name or '?'} records no host or process (host.name, service.instance.id): "
        "its spans can share a clock with nothing; set them in OTEL_RESOURCE_ATTRIBUTES or enable the SDK's "
        "host and process resource detectors"
    )
