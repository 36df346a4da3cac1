"""Flushing spans on the way out, wherever the host lets code run before the process ends.

``atexit`` runs only when the interpreter exits normally. Servers end differently:

- SIGTERM with its default disposition kills the process on the spot (a plain script, ``flask run``,
  a billiard pool child). A chained handler flushes first, then restores the default and raises
  the signal again, so the process still ends "killed by SIGTERM" (exit status 143) as before.
- uvicorn catches SIGTERM, shuts down gracefully, then restores the handler it found and raises
  the signal again. When configure() ran before uvicorn installed its handlers (``uvicorn
  module:app`` imports the app first, as do ``uvicorn.run(app)`` in a script and gunicorn's
  UvicornWorker), that handler is ours: the flush runs then. When the app is imported inside
  uvicorn's server (``--workers``, ``--reload``), the previous handler we chain to is the
  server's own; the flush is added to the end of that server's graceful shutdown, after the last
  request and the ASGI lifespan shutdown.
- Celery prefork children end with ``os._exit``; Celery's ``worker_process_shutdown`` signal runs
  just before (connected here when Celery is imported; see ``integrations.celery`` otherwise).

Every path is bounded by configure()'s ``exit_timeout``. The chained handler always calls the
host's previous handler and lets whatever it raises (KeyboardInterrupt, SystemExit) propagate:
the host's own signal handling and exit status are never swallowed.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from moduletrace.instrumentation._guard import internal_error, logger

#: Signals whose default action ends the process without running atexit hooks.
HANDLED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM,)

_stop: Callable[[], None] | None = None  # flush and stop the pipeline: the process is ending
_flush: Callable[[], None] | None = None  # flush only: the process may go on (PID 1 in a container)
_previous: dict[int, Any] = {}
_hooked_servers: set[int] = set()
_celery_connected = False
_ending = False


def install(stop: Callable[[], None], flush: Callable[[], None]) -> None:
    """Run ``stop`` at exit and in the hosts' shutdown hooks, ``flush`` on SIGTERM (both bounded by the caller)."""
    global _stop, _flush
    _stop, _flush = stop, flush
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
    install_signal_handlers()
    _connect_celery()


def uninstall() -> None:
    """Undo install() (tests): restore the handlers we replaced, where ours is still in place."""
    global _stop, _flush
    atexit.unregister(_at_exit)
    if threading.current_thread() is threading.main_thread():
        for signum, previous in list(_previous.items()):
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, previous)
    _previous.clear()
    _stop = _flush = None


def install_signal_handlers() -> bool:
    """Chain our handler in front of the current SIGTERM handler (main thread only).

    Idempotent; a host that resets its signals after configure() ran (gunicorn's workers, Celery's
    pool processes) calls it again from its own hooks, see ``integrations``. Returns True when our
    handler is in place.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    installed = False
    for signum in HANDLED_SIGNALS:
        try:
            current = signal.getsignal(signum)
            if current is _on_signal:
                installed = True
                continue
            if current is None or current == signal.SIG_IGN:
                continue  # set from C, or ignored on purpose: not ours to change
            _previous[signum] = current
            signal.signal(signum, _on_signal)
            installed = True
        except (ValueError, OSError) as exc:  # an embedded interpreter without signals
            logger.debug("moduletrace: cannot chain a handler for signal %s: %s", signum, exc)
    return installed


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        # The host shuts down its own way; make sure its graceful path ends with a flush.
        _hook_host(previous)
        previous(signum, frame)  # whatever it raises is the host's business: let it through
        return
    # The default disposition would end the process right here, without atexit: flush first,
    # then end exactly as the default would have. A second signal during the flush ends it at once.
    global _ending
    if not _ending:
        _ending = True
        _run(_flush, "SIGTERM")
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)  # synchronous for this thread: with SIG_DFL the process ends here
    # Still running: the kernel dropped the signal, as it does for a container's PID 1 sending itself
    # a signal it has no handler for. That process was not ending before moduletrace either: go on,
    # with the pipeline intact and the handler armed for the next SIGTERM.
    _ending = False
    signal.signal(signum, _on_signal)


def _at_exit() -> None:
    _run(_stop, "exit")


def _run(work: Callable[[], None] | None, why: str) -> None:
    if work is None:
        return
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - on the way out, never in the host's way
        internal_error(f"flush on {why}", exc)


# ---------------------------------------------------------------------------------------------
# Hosts that handle SIGTERM themselves.
# ---------------------------------------------------------------------------------------------


def _hook_host(handler: Any) -> None:
    try:
        server = getattr(handler, "__self__", None)
        uvicorn_server = sys.modules.get("uvicorn.server")
        if server is not None and uvicorn_server is not None and isinstance(server, uvicorn_server.Server):
            hook_uvicorn_server(server)  # uvicorn's own, a subclass, gunicorn's UvicornWorker's
    except Exception as exc:  # noqa: BLE001
        internal_error("hook host", exc)


def hook_uvicorn_server(server: Any) -> None:
    """Flush at the end of this uvicorn ``Server``'s graceful shutdown (once per server).

    uvicorn re-raises the signal after ``Server.shutdown`` returns, with the handler it found at
    start-up; that is the last moment Python code runs in the process.
    """
    if id(server) in _hooked_servers or not callable(getattr(server, "shutdown", None)):
        return
    _hooked_servers.add(id(server))
    original = server.shutdown

    async def shutdown(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        finally:
            _run(_stop, "server shutdown")

    server.shutdown = shutdown


def _connect_celery() -> None:
    """Connect Celery's worker shutdown signals when Celery is imported (prefork children exit with os._exit)."""
    if "celery" in sys.modules:
        connect_celery()


def connect_celery() -> None:
    """Flush when a Celery pool process or worker shuts down; re-chain SIGTERM in pool processes."""
    global _celery_connected
    if _celery_connected:
        return
    try:
        from celery import signals
    except ImportError:
        return
    _celery_connected = True
    signals.worker_process_init.connect(_celery_process_init, weak=False)
    signals.worker_process_shutdown.connect(_celery_shutdown, weak=False)
    signals.worker_shutdown.connect(_celery_shutdown, weak=False)


def _celery_process_init(**_: Any) -> None:
    # The pool resets signal dispositions in each new child: chain again, so a child ended with
    # SIGTERM (a cold shutdown, a time limit) flushes before it dies.
    try:
        install_signal_handlers()
    except Exception as exc:  # noqa: BLE001 - never in the way of the pool
        internal_error("celery process init", exc)


def _celery_shutdown(**_: Any) -> None:
    _run(_stop, "worker shutdown")
