"""What a moduletrace stage decorator costs, measured side by side with bare OpenTelemetry.

    python benchmarks/bench_stages.py

Targets: with tracing on (SDK + BatchSpanProcessor, no-op exporter), at most 1.10x a
bare ``@tracer.start_as_current_span`` decorator with the same attributes; with tracing off
(no SDK installed, or OTEL_SDK_DISABLED=true) at most 1 microsecond above the undecorated call.

Each mode runs in a fresh process (the global TracerProvider can be set once); inside a mode the
contenders are timed in alternation, best of several repeats, so machine noise hits all alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import timeit
from collections.abc import Callable, Sequence
from typing import Any

CALLS = 20_000
REPEATS = 7
ATTRIBUTES = {"module.id": "m-17", "module.stage": "db_commit"}


def _best_us(functions: dict[str, Callable[[], Any]]) -> dict[str, float]:
    best = {name: float("inf") for name in functions}
    for _ in range(REPEATS):
        for name, function in functions.items():
            seconds = min(timeit.repeat(function, number=CALLS, repeat=1))
            best[name] = min(best[name], seconds / CALLS * 1e6)
    return best


def _contenders(mode: str) -> dict[str, Callable[[], Any]]:
    from opentelemetry import trace

    if mode in ("sdk", "sdk-disabled"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class NullExporter(SpanExporter):
            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(NullExporter()))
        trace.set_tracer_provider(provider)

    import moduletrace

    tracer = trace.get_tracer("bench")

    def plain(module_id: str) -> int:
        return 1

    @tracer.start_as_current_span("module_create_db_commit", attributes=ATTRIBUTES)
    def bare(module_id: str) -> int:
        return 1

    @moduletrace.db_commit
    def ours(module_id: str) -> int:
        return 1

    def ours_cm() -> int:
        with moduletrace.db_commit("m-17"):
            return 1

    return {
        "undecorated": lambda: plain("m-17"),
        "bare_otel_decorator": lambda: bare("m-17"),
        "moduletrace_decorator": lambda: ours("m-17"),
        "moduletrace_context_manager": ours_cm,
    }


def _run_mode(mode: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode == "sdk-disabled":
        env["OTEL_SDK_DISABLED"] = "true"
    out = subprocess.run(
        [sys.executable, __file__, "--mode", mode], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--mode":
        print(json.dumps(_best_us(_contenders(sys.argv[2]))))
        return
    print(f"{CALLS} calls x {REPEATS} repeats per contender, best run, microseconds per call\n")
    rows = []
    for mode, title in (
        ("sdk", "tracing on: SDK + BatchSpanProcessor(no-op exporter)"),
        ("no-sdk", "tracing off: no SDK installed (API only)"),
        ("sdk-disabled", "tracing off: SDK installed, OTEL_SDK_DISABLED=true"),
    ):
        us = _run_mode(mode)
        print(title)
        for name, value in us.items():
            print(f"  {name:30s} {value:8.3f} us")
        if mode == "sdk":
            ratio = us["moduletrace_decorator"] / us["bare_otel_decorator"]
            cm_ratio = us["moduletrace_context_manager"] / us["bare_otel_decorator"]
            print(f"  -> decorator / bare OpenTelemetry decorator = {ratio:.2f}x (target <= 1.10x)")
            print(f"  -> context manager / bare OpenTelemetry decorator = {cm_ratio:.2f}x")
            rows.append(ratio <= 1.10)
        else:
            extra = us["moduletrace_decorator"] - us["undecorated"]
            print(
                f"  -> decorator - undecorated = {extra:+.3f} us (target <= 1 us); "
                f"bare OpenTelemetry no-op decorator: {us['bare_otel_decorator'] - us['undecorated']:+.3f} us"
            )
            rows.append(extra <= 1.0)
        print()
    print("all targets met" if all(rows) else "TARGET MISSED")


if __name__ == "__main__":
    main()
