"""FastAPI routes with the stage decorator in the right place and in the wrong one (above the route)."""

from __future__ import annotations

from fastapi import FastAPI

import moduletrace
from moduletrace.instrumentation.integrations.fastapi import ModuleCarrier

app = FastAPI()


@moduletrace.load_request  # above the route decorator: FastAPI registered the undecorated function
@app.get("/misplaced/{module_id}")
async def misplaced(module_id: str) -> dict[str, str]:
    return {"module_id": module_id}


@app.get("/modules/{module_id}")
@moduletrace.load_request(parent_param="carrier")
async def load(module_id: str, carrier: ModuleCarrier) -> dict[str, str]:
    return {"module_id": module_id}
