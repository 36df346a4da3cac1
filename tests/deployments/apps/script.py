"""A plain script: spans, then it waits to be stopped."""

from __future__ import annotations

import sys
import time

import moduletrace

moduletrace.configure(service_name="module-script", instrument_httpx=False)
for n in range(int(sys.argv[1])):
    with moduletrace.load_request(f"m-{n}"):
        pass
print("ready", flush=True)
time.sleep(60)
