"""Instrumentation: the stage helpers, propagation, sampling and ``configure()``."""

from moduletrace.instrumentation.configuration import configure, shutdown
from moduletrace.instrumentation.evidence import (
    instrument_sqlalchemy_pool,
    pool_wait,
    record_auth_failure,
    record_data_version,
    record_token,
    uninstrument_sqlalchemy_pool,
)
from moduletrace.instrumentation.loader import AsyncModuleLoader, ModuleLoader, ModuleLoadError
from moduletrace.instrumentation.propagation import Parent, carrier
from moduletrace.instrumentation.replica import ReplicaLag, arecord_replica_lag, record_replica_lag
from moduletrace.instrumentation.sampling import LifecycleSampler
from moduletrace.instrumentation.stages import (
    Stage,
    StageHandle,
    StageSpan,
    cache_update,
    create_start,
    db_commit,
    load_db_query,
    load_request,
)

__all__ = [
    "AsyncModuleLoader",
    "LifecycleSampler",
    "ModuleLoadError",
    "ModuleLoader",
    "Parent",
    "ReplicaLag",
    "Stage",
    "StageHandle",
    "StageSpan",
    "arecord_replica_lag",
    "cache_update",
    "carrier",
    "configure",
    "create_start",
    "db_commit",
    "load_db_query",
    "load_request",
    "instrument_sqlalchemy_pool",
    "pool_wait",
    "record_auth_failure",
    "record_data_version",
    "record_replica_lag",
    "record_token",
    "shutdown",
    "uninstrument_sqlalchemy_pool",
]
