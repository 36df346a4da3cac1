"""moduletrace: find out why modules intermittently fail to load after being created.

Five lifecycle spans under one trace ID, and ``moduletrace races`` to find, after an incident,
the loads that ran before their module's commit or cache update::

    import moduletrace

    moduletrace.configure(service_name="module-service")

    with moduletrace.create_start(module_id):
        with moduletrace.db_commit(module_id):
            db.commit()
        with moduletrace.cache_update(module_id):
            cache.set(module_id, row)
        carrier = moduletrace.carrier()          # store it with the module

    with moduletrace.load_request(module_id, parent=carrier):
        with moduletrace.load_db_query(module_id) as q:
            row = db.get(module_id)
            q.found(row is not None)             # what the read saw decides, not the clocks
"""

from typing import TYPE_CHECKING, Any

from moduletrace._version import __version__
from moduletrace.errors import BackendError, EmptyScanError, InputError, ModuleTraceError

if TYPE_CHECKING:
    from moduletrace.instrumentation import *  # noqa: F403

__all__ = [
    "AsyncModuleLoader",
    "BackendError",
    "EmptyScanError",
    "InputError",
    "LifecycleSampler",
    "ModuleLoadError",
    "ModuleLoader",
    "ModuleTraceError",
    "Parent",
    "ReplicaLag",
    "Stage",
    "StageHandle",
    "StageSpan",
    "__version__",
    "arecord_replica_lag",
    "cache_update",
    "carrier",
    "configure",
    "create_start",
    "db_commit",
    "instrument_sqlalchemy_pool",
    "load_db_query",
    "load_request",
    "pool_wait",
    "record_auth_failure",
    "record_data_version",
    "record_replica_lag",
    "record_token",
    "shutdown",
    "uninstrument_sqlalchemy_pool",
]


def __getattr__(name: str) -> Any:
    """The instrumentation's names, imported on first use (PEP 562): the command line never loads the SDK."""
    if name in __all__:
        from moduletrace import instrumentation

        value = getattr(instrumentation, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'moduletrace' has no attribute {name!r}")
