"""gunicorn server hooks: in ``gunicorn.conf.py``::

    from moduletrace.instrumentation.integrations.gunicorn import post_worker_init, worker_exit  # noqa: F401

Needed with ``preload_app = True`` (configure() ran in the arbiter, before the fork: each worker
resets its signal handlers, so ours must be chained again in the worker), harmless otherwise.
``worker_exit`` runs in the worker as it leaves (sync and gthread workers); a UvicornWorker leaves
by re-raising SIGTERM, where the chained handler flushes.
"""

from __future__ import annotations

from typing import Any

from moduletrace.instrumentation import configuration, exit_hooks
from moduletrace.instrumentation._guard import internal_error


def post_worker_init(worker: Any) -> None:
    """Chain the SIGTERM handler in the worker, after gunicorn set up the worker's own."""
    try:
        exit_hooks.install_signal_handlers()
    except Exception as exc:  # noqa: BLE001 - a server hook must not stop the worker
        internal_error("gunicorn post_worker_init", exc)


def worker_exit(server: Any, worker: Any) -> None:
    """Flush and stop the span pipeline as the worker exits (bounded by configure()'s exit_timeout)."""
    try:
        configuration.shutdown(configuration.exit_timeout())
    except Exception as exc:  # noqa: BLE001
        internal_error("gunicorn worker_exit", exc)
