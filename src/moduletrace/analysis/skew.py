"""Bounds on the clock offset between two hosts, derived from the client/server spans between them.

For a CLIENT span on clock A whose child SERVER span ran on clock B, causality says the server
started after the client started and ended before the client ended. With theta = clock_B - clock_A:

    server.end - client.end  <=  theta  <=  server.start - client.start

Intersecting that interval over every such pair gives a hard bound (shared/reference/rca.md 1.6),
usually far tighter than a guessed tolerance, and centred on the real offset rather than on 0.
An empty intersection means the instrumentation or the clocks are inconsistent: no bound then.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from moduletrace.spans import KIND_CLIENT, KIND_SERVER, Span


@dataclass(frozen=True, slots=True)
class OffsetBound:
    """theta = clock(target) - clock(reference) lies in [low_ns, high_ns], from ``pairs`` RPCs."""

    low_ns: int
    high_ns: int
    pairs: int


class ClockOffsets:
    """Collects client/server pairs as spans stream by; memory is bounded by ``window`` spans.

    A server span is paired with its client when both are among the last ``window`` client
    (or unpaired server) spans read: in a collector archive they are lines apart, not millions.
    """

    def __init__(self, window: int = 20_000) -> None:
        self._window = window
        self._clients: OrderedDict[str, tuple[str, int, int]] = OrderedDict()
        self._servers: OrderedDict[str, list[tuple[str, int, int]]] = OrderedDict()
        self._bounds: dict[tuple[str, str], list[int]] = {}  # (A, B) -> [low, high, pairs]
        self._inconsistent: set[tuple[str, str]] = set()

    def add(self, span: Span) -> None:
        if span.kind == KIND_CLIENT:
            clock = span.resource.clock
            key = span.span_id  # 64 random bits: unique enough without the trace id
            self._remember(self._clients, key, (clock, span.start_ns, span.end_ns))
            for server in self._servers.pop(key, ()):
                self._pair((clock, span.start_ns, span.end_ns), server)
        elif span.kind == KIND_SERVER and span.parent_span_id:
            server = (span.resource.clock, span.start_ns, span.end_ns)
            key = span.parent_span_id
            client = self._clients.get(key)
            if client is not None:
                self._pair(client, server)
            else:
                pending = self._servers.get(key)
                if pending is None:
                    self._remember(self._servers, key, [server])
                else:
                    pending.append(server)

    def _remember(self, table: OrderedDict, key: str, value: object) -> None:  # type: ignore[type-arg]
        table[key] = value
        if len(table) > self._window:
            table.popitem(last=False)

    def _pair(self, client: tuple[str, int, int], server: tuple[str, int, int]) -> None:
        a, client_start, client_end = client
        b, server_start, server_end = server
        if a == b:
            return
        low, high = server_end - client_end, server_start - client_start
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
        key = (target, reference) if flip else (reference, target)
        bound = self._bounds.get(key)
        if bound is None or bound[0] > bound[1]:
            return None
        low, high, pairs = bound
        return OffsetBound(-high, -low, pairs) if flip else OffsetBound(low, high, pairs)

    def inconsistent_pairs(self) -> list[tuple[str, str]]:
        """Clock pairs whose RPCs contradict each other (broken instrumentation or a clock step)."""
        return sorted(key for key, (low, high, _) in self._bounds.items() if low > high)
