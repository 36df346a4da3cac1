"""Flask views with the stage decorator in the right place and in the wrong one (above the route)."""

from __future__ import annotations

from flask import Flask

import moduletrace

app = Flask(__name__)


@moduletrace.load_request  # above the route decorator: Flask registered the undecorated function
@app.get("/misplaced/<module_id>")
def misplaced(module_id: str) -> str:
    return module_id


@app.get("/modules/<module_id>")
@moduletrace.load_request
def load(module_id: str) -> str:
    return module_id
