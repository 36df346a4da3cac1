"""Where ``moduletrace races --file`` (and ``diagnose``) spend their CPU time, stage by stage.

    python benchmarks/profile_scan.py ARCHIVE [--repeat 3] [--cprofile]

Stages are measured cumulatively in one process, each pass over the whole file, with the cyclic
GC off as the command runs: read lines; + parse and decode to ``Span`` as the file source does it
(the typed msgspec decoder when installed, else orjson/json and the generic decoder; with the
command's ``wanted`` filter); + the whole scan as the command runs it (``scan.read``: the span
checks, detector ``add``); then ``report()`` and the rendering. A stage's cost is the difference
between consecutive passes (median of ``--repeat``). Interpreter start and imports are measured
as child processes: ``python -c pass`` and ``python -c 'import <what the command imports>'``.
``--cprofile`` adds the top functions of one full races run (cProfile inflates call-heavy code:
use it to see which functions, the stage table for how much).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from moduletrace import scan
from moduletrace.analysis.diagnosis import Diagnoser
from moduletrace.analysis.diagnosis import wanted as diagnosis_wanted
from moduletrace.analysis.races import RaceDetector
from moduletrace.analysis.races import wanted as race_wanted
from moduletrace.cli.render import as_json, pretty_json
from moduletrace.sources import file as file_source
from moduletrace.sources.file import FileSource
from moduletrace.spans import Wanted

IMPORTS = "import moduletrace.cli.main, moduletrace.scan, moduletrace.sources.file, moduletrace.analysis.races"


def cpu(fn: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        started = time.process_time()
        fn()
        return time.process_time() - started
    finally:
        gc.enable()


def child_cpu(code: str) -> float:
    child = subprocess.Popen([sys.executable, "-c", code])
    _, _, usage = os.wait4(child.pid, 0)
    return usage.ru_utime + usage.ru_stime


def read_lines(path: str) -> None:
    with open(path, "rb") as f:
        for _number, _line, _last in file_source._lines(f):
            pass


def decode_all(path: str, wanted: Wanted) -> None:
    for _batch in FileSource([path], print).batches(wanted):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    path = args.path
    options = scan.ScanOptions(files=[path])
    state: dict[str, object] = {}

    def races_scan() -> None:
        detector = RaceDetector(settle_after_s=options.settle_after_s)
        scan.read(scan.open_sources(options, print), detector, race_wanted, options)
        state["detector"] = detector

    def races_report() -> None:
        state["report"] = state["detector"].report()  # type: ignore[attr-defined]

    def races_render() -> None:
        pretty_json(as_json(state["report"]))  # type: ignore[arg-type]  # as the command prints it

    def diagnose_scan() -> None:
        diagnoser = Diagnoser(RaceDetector(settle_after_s=options.settle_after_s))
        scan.read(scan.open_sources(options, print), diagnoser, diagnosis_wanted, options)
        state["diagnoser"] = diagnoser

    def diagnose_report() -> None:
        state["diagnosis"], _ = state["diagnoser"].reports()  # type: ignore[attr-defined]

    def diagnose_render() -> None:
        from moduletrace.cli.render import diagnosis_table

        diagnosis_table(state["diagnosis"], None, [])  # type: ignore[arg-type]

    passes: dict[str, Callable[[], object]] = {
        "read lines": lambda: read_lines(path),
        "+ decode to Span (races' wanted)": lambda: decode_all(path, race_wanted),
        "+ decode to Span (every span whole: diagnose)": lambda: decode_all(path, diagnosis_wanted),
        "races: whole scan (+ detector add)": races_scan,
        "races: report()": races_report,
        "races: render JSON": races_render,
        "diagnose: whole scan (+ diagnoser add)": diagnose_scan,
        "diagnose: reports": diagnose_report,
        "diagnose: render table": diagnose_render,
    }
    runs: dict[str, list[float]] = {name: [] for name in passes}
    startup: list[float] = []
    imports: list[float] = []
    for _ in range(args.repeat):
        startup.append(child_cpu("pass"))
        imports.append(child_cpu(IMPORTS))
        for name, fn in passes.items():
            runs[name].append(cpu(fn))
    t = {name: statistics.median(v) for name, v in runs.items()}
    start_s, import_s = statistics.median(startup), statistics.median(imports) - statistics.median(startup)
    races_rows = [
        ("interpreter start", start_s),
        ("imports", import_s),
        ("read lines", t["read lines"]),
        ("parse + decode to Span", t["+ decode to Span (races' wanted)"] - t["read lines"]),
        ("detector add (+ checks)", t["races: whole scan (+ detector add)"] - t["+ decode to Span (races' wanted)"]),
        ("report()", t["races: report()"]),
        ("render JSON", t["races: render JSON"]),
    ]
    diag_rows = [
        ("interpreter start + imports", start_s + import_s),
        ("read + parse + decode (all whole)", t["+ decode to Span (every span whole: diagnose)"]),
        (
            "diagnoser add",
            t["diagnose: whole scan (+ diagnoser add)"] - t["+ decode to Span (every span whole: diagnose)"],
        ),
        ("reports", t["diagnose: reports"]),
        ("render table", t["diagnose: render table"]),
    ]
    typed = "typed (msgspec)" if file_source._LineDecoder is not None else "generic"
    print(f"decoder: {typed}")
    for title, rows in (("races --format json", races_rows), ("diagnose", diag_rows)):
        total = sum(v for _, v in rows)
        print(f"\n{title}: {total:.2f} s CPU in all (median of {args.repeat}), by stage")
        for name, value in rows:
            print(f"  {name:36s} {value:7.2f} s  {100 * value / total:5.1f}%")
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        races_scan()
        races_report()
        races_render()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
        print("\ncProfile, one races run, by own time:")
        print("\n".join(out.getvalue().splitlines()[6:]))


if __name__ == "__main__":
    main()
