"""Instrumentation: the stage helpers, propagation, sampling and ``configure()``."""

from moduletrace.instrumentation.configuration import configure, shutdown
from moduletrace.instrumentation.propagation import Parent, carrier
from moduletrace.instrumentation.sampling import LifecycleSampler
from moduletrace.instrumentation.stages import (
    Stage,
    StageSpan,
    cache_update,
    create_start,
    db_commit,
    load_db_query,
    load_request,
)

__all__ = [
    "LifecycleSampler",
    "Parent",
    "Stage",
    "StageSpan",
    "cache_update",
    "carrier",
    "configure",
    "create_start",
    "db_commit",
    "load_db_query",
    "load_request",
    "shutdown",
]
