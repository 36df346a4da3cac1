"""Sampling that never drops a lifecycle span.

A race is proven only when both sides (the creation's commit and the load's query) were
recorded, so lifecycle spans must be recorded even when the service's head sampler would drop
them or their parent was not sampled. moduletrace installs this sampler on *its own* tracer
only, wrapping the provider's sampler: every other span of the service keeps the service's
configured sampling, and spans started inside a lifecycle span follow it as a sampled parent.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from moduletrace.conventions import LIFECYCLE_SPAN_NAMES


class LifecycleSampler(Sampler):
    """Record and sample every lifecycle span; ask ``delegate`` about everything else."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if name in LIFECYCLE_SPAN_NAMES:
            parent_state = trace.get_current_span(parent_context).get_span_context().trace_state
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent_state)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"LifecycleSampler{{{self.delegate.get_description()}}}"
