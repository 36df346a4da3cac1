"""Errors the ``moduletrace`` command reports, each with its exit code.

::

    ModuleTraceError
     ├── InputError          exit 2: bad usage, unreadable or malformed input
     ├── BackendError        exit 3: Jaeger/Tempo unreachable or answering with an error
     │    └── BudgetExhausted     the scan made all the requests it may (--max-requests): the scan
     │                            judges what it read and reports itself partial
     └── EmptyScanError      exit 3: the sources held no lifecycle span: nothing was judged

The instrumentation never raises these (nor anything else) into a host service.
"""

from __future__ import annotations


class ModuleTraceError(Exception):
    """Base class of the errors the command reports as one line."""

    exit_code = 2


class InputError(ModuleTraceError):
    """Bad usage, or an input that cannot be read (exit status 2)."""

    exit_code = 2


class BackendError(ModuleTraceError):
    """A backend was unreachable or answered with an error (exit status 3)."""

    exit_code = 3


class BudgetExhausted(BackendError):
    """The scan made as many backend requests as it may: what was read so far is a partial scan."""


class EmptyScanError(ModuleTraceError):
    """The scan read no lifecycle span at all: that is no evidence of "no race" (exit status 3)."""

    exit_code = 3
