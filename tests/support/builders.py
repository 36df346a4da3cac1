"""Normalised spans for analysis tests, with times in milliseconds from an arbitrary epoch."""

from __future__ import annotations

import itertools
from typing import Any

from moduletrace.conventions import SPAN_NAMES
from moduletrace.spans import KIND_INTERNAL, STATUS_ERROR, STATUS_UNSET, Link, Resource, Span

EPOCH_NS = 1_795_000_000_000_000_000
PROCESS_A = Resource("module-service", "proc-a", "host-a")
PROCESS_A2 = Resource("canvas-service", "proc-a2", "host-a")  # same host as A, other process
PROCESS_B = Resource("canvas-service", "proc-b", "host-b")  # another host
_ids = itertools.count(1)


def ns(ms: float) -> int:
    return EPOCH_NS + int(ms * 1_000_000)


def span(
    stage: str,
    module: Any,
    trace: str,
    start_ms: float,
    end_ms: float,
    *,
    resource: Resource = PROCESS_A,
    failed: bool = False,
    parent: str = "",
    span_id: str | None = None,
    links: tuple[Link, ...] = (),
    kind: int = KIND_INTERNAL,
    attributes: dict[str, Any] | None = None,
) -> Span:
    attrs: dict[str, Any] = {"module.stage": stage}
    if module is not None:
        attrs["module.id"] = module
    attrs.update(attributes or {})
    return Span(
        trace_id=trace.rjust(32, "0"),
        span_id=span_id or format(next(_ids), "016x"),
        parent_span_id=parent,
        name=SPAN_NAMES[stage],
        kind=kind,
        start_ns=ns(start_ms),
        end_ns=ns(end_ms),
        status_code=STATUS_ERROR if failed else STATUS_UNSET,
        status_message="boom" if failed else "",
        attributes=attrs,
        resource=resource,
        links=links,
    )


def rpc(
    trace: str, client: Resource, server: Resource, client_ms: tuple[float, float], server_ms: tuple[float, float]
) -> list[Span]:
    """A client span and its server child on (possibly) another clock."""
    client_id = format(next(_ids), "016x")
    common = dict(status_code=STATUS_UNSET, status_message="", attributes={}, links=())
    return [
        Span(
            trace.rjust(32, "0"), client_id, "", "GET", 3, ns(client_ms[0]), ns(client_ms[1]), resource=client, **common
        ),
        Span(
            trace.rjust(32, "0"),
            format(next(_ids), "016x"),
            client_id,
            "GET /x",
            2,
            ns(server_ms[0]),
            ns(server_ms[1]),
            resource=server,
            **common,
        ),
    ]


def creation(
    module: Any, trace: str, commit_end_ms: float, cache_end_ms: float | None = None, *, resource: Resource = PROCESS_A
) -> list[Span]:
    spans = [
        span("create_start", module, trace, 0, max(commit_end_ms, cache_end_ms or 0) + 1, resource=resource),
        span("db_commit", module, trace, 1, commit_end_ms, resource=resource),
    ]
    if cache_end_ms is not None:
        spans.append(span("cache_update", module, trace, commit_end_ms, cache_end_ms, resource=resource))
    return spans


def load(
    module: Any,
    trace: str,
    query_start_ms: float,
    *,
    resource: Resource = PROCESS_A,
    failed: bool = False,
    links: tuple[Link, ...] = (),
    request_start_ms: float | None = None,
    query_attributes: dict[str, Any] | None = None,
) -> list[Span]:
    """A load: its request [query - 1, query + 5] and its query [query, query + 2] (ms)."""
    request_start = query_start_ms - 1 if request_start_ms is None else request_start_ms
    request = span(
        "load_request", module, trace, request_start, query_start_ms + 5, resource=resource, failed=failed, links=links
    )
    query = span(
        "load_db_query",
        module,
        trace,
        query_start_ms,
        query_start_ms + 2,
        resource=resource,
        parent=request.span_id,
        failed=failed,
        attributes=query_attributes,
    )
    return [request, query]
