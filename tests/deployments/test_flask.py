"""Flask: a stage decorator above ``@app.route`` is reported; below it, it makes its span."""

from __future__ import annotations

import logging

import pytest

from moduletrace.instrumentation.integrations.flask import check_decorators, instrument_app
from tests.conftest import Recorded


def test_a_stage_decorator_above_the_route_is_reported_and_the_right_order_works(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.deployments.apps import flask_routes

    with caplog.at_level(logging.WARNING, logger="moduletrace"):
        assert instrument_app(flask_routes.app) is flask_routes.app
    assert check_decorators(flask_routes.app) == ["tests.deployments.apps.flask_routes.misplaced"]
    (message,) = [r.getMessage() for r in caplog.records if "above the route decorator" in r.getMessage()]
    assert "/misplaced/<module_id>" in message and "@app.route(...)" in message

    client = flask_routes.app.test_client()
    assert client.get("/misplaced/m-1").status_code == 200
    assert client.get("/modules/m-2").status_code == 200
    (load,) = spans.named("module_load_request")  # none from the misplaced view
    assert load.attributes is not None and load.attributes["module.id"] == "m-2"
