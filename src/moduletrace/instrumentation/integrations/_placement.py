"""A stage decorator above a route decorator has no effect: finding it in a web framework's routes.

``@app.get(...)`` / ``@app.route(...)`` register the function they are given and return it: a
stage decorator placed above wraps a function the framework never calls, and no span is ever
made. Where the endpoint is a module attribute (routes declared at module level), that attribute
is the stage wrapper while the route holds the undecorated function inside it.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from moduletrace.instrumentation import stages
from moduletrace.instrumentation._guard import warn_once

#: Where the stage wrappers' code lives (the package, not one file: stages may be split in modules).
_INSTRUMENTATION_DIR = os.path.dirname(os.path.abspath(stages.__file__))


def report_misplaced(routes: Iterable[tuple[Callable[..., Any], str]], route_decorator: str) -> list[str]:
    """Log once per endpoint, and return, the ``module.function`` names of misplaced stage decorators.

    ``routes``: (endpoint, path) pairs as the framework registered them.
    """
    misplaced: list[str] = []
    for endpoint, path in routes:
        wrapper = _module_attribute(endpoint)
        if wrapper is None or wrapper is endpoint or not _is_stage_wrapper(wrapper):
            continue
        if _unwraps_to(wrapper, endpoint):
            where = f"{endpoint.__module__}.{endpoint.__qualname__}"
            misplaced.append(where)
            warn_once(
                f"misplaced:{where}",
                "moduletrace: the stage decorator on %s (route %s) sits above the route decorator, where it "
                "has no effect: the framework calls the undecorated function. Put %s first, then the "
                "moduletrace decorator",
                where,
                path,
                route_decorator,
            )
    return misplaced


def _module_attribute(endpoint: Callable[..., Any]) -> Any:
    module = sys.modules.get(getattr(endpoint, "__module__", "") or "")
    name = getattr(endpoint, "__name__", None)
    if module is None or not name:
        return None
    return getattr(module, name, None)


def _is_stage_wrapper(candidate: Any) -> bool:
    code = getattr(candidate, "__code__", None)
    if code is None:
        return False
    return os.path.dirname(os.path.abspath(str(code.co_filename))).startswith(_INSTRUMENTATION_DIR)


def _unwraps_to(wrapper: Any, endpoint: Any) -> bool:
    try:
        return inspect.unwrap(wrapper, stop=lambda f: f is endpoint) is endpoint
    except ValueError:
        return False
