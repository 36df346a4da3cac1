"""Flask: SIGTERM under ``flask run`` and gunicorn is handled by configure(); one line checks the decorators::

    from moduletrace.instrumentation.integrations.flask import instrument_app
    instrument_app(app)  # after the routes are registered

It reports (once each) the views whose stage decorator sits above ``@app.route``, where it has
no effect: Flask registered the undecorated function.
"""

from __future__ import annotations

from typing import Any

from moduletrace.instrumentation._guard import internal_error
from moduletrace.instrumentation.integrations._placement import report_misplaced


def instrument_app(app: Any) -> Any:
    """Check the stage decorators' placement on ``app``'s views; returns ``app``."""
    try:
        check_decorators(app)
    except Exception as exc:  # noqa: BLE001 - a check must not stop the app
        internal_error("flask instrument_app", exc)
    return app


def check_decorators(app: Any) -> list[str]:
    """The ``module.function`` names of views whose stage decorator sits above ``@app.route`` (logged once each)."""
    paths: dict[str, str] = {}
    for rule in app.url_map.iter_rules():
        paths.setdefault(rule.endpoint, rule.rule)
    views = [(view, paths.get(name, "?")) for name, view in app.view_functions.items()]
    return report_misplaced(views, "@app.route(...)")
