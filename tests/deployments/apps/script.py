"""A plain script: spans, then it waits to be stopped (with "tick": making a span every 0.1 s)."""

from __future__ import annotations

import os
import sys
import time

import moduletrace

exit_timeout = float(os.environ.get("APP_EXIT_TIMEOUT", "5"))
moduletrace.configure(service_name="module-script", instrument_httpx=False, exit_timeout=exit_timeout)
for n in range(int(sys.argv[1])):
    with moduletrace.load_request(f"m-{n}"):
        pass
print("ready", flush=True)
for n in range(600):  # with "tick": one more span every 0.1 s
    time.sleep(0.1)
    if sys.argv[2:] == ["tick"]:
        with moduletrace.load_request(f"tick-{n}"):
            pass
