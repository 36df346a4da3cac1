"""The ``moduletrace`` command: it parses flags, calls the scan (``moduletrace.scan``), renders.

Exit status: 0 no race, 1 at least one race or stale read, 2 bad usage or unreadable input, 3 a
backend unreachable or answering with an error, or a scan that read no lifecycle span (or read
only part of the data and found nothing). Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from moduletrace._version import __version__
from moduletrace.analysis.races import DEFAULT_SKEW_TOLERANCE_MS
from moduletrace.cli.render import as_json, as_table, pretty_json, printable
from moduletrace.errors import InputError, ModuleTraceError
from moduletrace.scan import Scan, ScanOptions

if TYPE_CHECKING:  # pathlib imports urllib.parse and ipaddress: not for races and diagnose
    from pathlib import Path

EXIT_OK, EXIT_RACES, EXIT_USAGE, EXIT_BACKEND = 0, 1, 2, 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), as for every other input error."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see '{self.prog} --help')")


def parse_duration(text: str, flag: str = "--since") -> float:
    """'500ms', '90s', '15m', '2h', '1d', '1w' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"{flag} {text!r}: expected a duration like 500ms, 90s, 15m, 2h, 1d or 1w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= _MAX_DURATION_S:
        raise InputError(f"{flag} {text!r}: at most 1000 years")
    return seconds


_MAX_DURATION_S = 1000 * 366 * 86400.0


def parse_time(text: str, flag: str) -> int:
    """RFC 3339 -> Unix nanoseconds."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected an RFC 3339 time like 2026-11-29T10:00:00Z") from None
    if value.tzinfo is None:
        raise InputError(f"{flag} {text!r}: give a time zone (Z or +hh:mm)")
    try:
        return int(value.timestamp() * 1e9)
    except (OverflowError, ValueError, OSError):
        raise InputError(f"{flag} {text!r}: out of range") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moduletrace", description="Find the module loads that raced their module's creation.")
    parser.add_argument("--version", action="version", version=f"moduletrace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    races = commands.add_parser(
        "races",
        help="list the loads that ran before their module's commit or cache update",
        description="List the loads that ran before their module's commit or cache update. "
        "Exit 0: no race or stale read; 1: races or stale reads found; 2: bad usage or input; 3: a backend error, "
        "a scan that judged no load, or a partial scan that found nothing.",
    )
    _scan_arguments(races)
    diagnose = commands.add_parser(
        "diagnose",
        help="name the cause of each failed load: auth, pool, race, not_found or unknown",
        description="Classify every failed load as auth, pool, race, not_found or unknown, with the evidence that "
        "decided it and how strong it is. Exit 0: no failed load; 1: failed loads found; 2: bad usage or input; "
        "3: a backend error, a scan that judged no load, or a partial scan that found nothing.",
    )
    _scan_arguments(diagnose)
    demo = commands.add_parser(
        "demo",
        help="run a small create/load system with injected faults, and find its races",
        description="Run two real services (create, load) on 127.0.0.1 with SQLite and a connection pool, "
        "inject the three hypotheses' faults, record spans to OTLP JSON lines files and check that "
        "the race rule finds every injected race and nothing else. Exit 0 when it does.",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed for which modules get a fault (default 7)")
    demo.add_argument("--modules", type=int, default=200, metavar="N", help="modules to create and load (default 200)")
    demo.add_argument("--concurrency", type=int, default=8, metavar="N", help="concurrent clients (default 8)")
    demo.add_argument(
        "--race-rate", type=float, default=0.03, metavar="R", help="share of modules whose index lags (0.03)"
    )
    demo.add_argument("--auth-rate", type=float, default=0.02, metavar="R", help="share whose token expires (0.02)")
    demo.add_argument(
        "--pool-rate", type=float, default=0.02, metavar="R", help="share loaded in a pool-starved burst (0.02)"
    )
    demo.add_argument("--otlp", metavar="URL", help="also send the spans to this OTLP/HTTP endpoint (a collector)")
    demo.add_argument(
        "--broker",
        metavar="URL",
        help="run the indexer (the cache update) as a consumer of the creation events through this broker: "
        "redis://host:port/db (a stream) or amqp://user:password@host:port/ (a RabbitMQ queue)",
    )
    demo.add_argument("--dir", metavar="PATH", help="where to keep the database and spans (default: a new temp folder)")
    demo.add_argument("--format", choices=("table", "json"), help="table (default on a terminal) or json")
    return parser


def _scan_arguments(parser: argparse.ArgumentParser) -> None:
    """The sources, window, rule, output and backend flags that races and diagnose share."""
    source = parser.add_argument_group("sources (at least one)")
    source.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="OTLP JSON lines from the collector file exporter (repeatable, globs; .gz/.zst)",
    )
    source.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="PATH",
        help="diagnose: the collector's metrics archive (OTLP JSON lines; repeatable, globs): the databases, "
        "replicas and pool near each failed load",
    )
    source.add_argument("--jaeger", metavar="URL", help="Jaeger v2 query service, e.g. http://127.0.0.1:16686")
    source.add_argument("--tempo", metavar="URL", help="Grafana Tempo HTTP API, e.g. http://127.0.0.1:3200")
    window = parser.add_argument_group("window and filters")
    window.add_argument(
        "--since", metavar="DURATION", help="loads in the last DURATION (90s, 15m, 2h, 1d); backends default to 1h"
    )
    window.add_argument("--start", metavar="RFC3339", help="loads from this time")
    window.add_argument("--end", metavar="RFC3339", help="loads up to this time (default: now)")
    window.add_argument("--service", help="only loads served by this service")
    window.add_argument("--module", help="only this module id")
    window.add_argument(
        "--lookback",
        default="24h",
        metavar="DURATION",
        help="how far before the window to look for a creation found by module id (default 24h)",
    )
    rule = parser.add_argument_group("rule")
    rule.add_argument(
        "--skew-tolerance",
        type=float,
        default=DEFAULT_SKEW_TOLERANCE_MS,
        metavar="MS",
        help=f"clock skew allowed across hosts (default {DEFAULT_SKEW_TOLERANCE_MS:g} ms)",
    )
    rule.add_argument(
        "--settle-after",
        default="1h",
        metavar="DURATION",
        help="judge a module's loads (diagnose: their causes too) once the data is this far past its last "
        "lifecycle span, keeping only a summary of its creation (bounds memory on large archives; 'never' to keep "
        "everything; default 1h)",
    )
    rule.add_argument(
        "--no-derived-bounds",
        action="store_true",
        help="do not derive clock-offset bounds from client/server span pairs",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--failed-only", action="store_true", help="races: list only loads that failed (the counts cover all loads)"
    )
    output.add_argument(
        "--format",
        choices=("table", "json", "html"),
        help="table (default on a terminal), json (default otherwise), or html: one self-contained page with a "
        "timeline per race (use --output)",
    )
    output.add_argument(
        "--output", metavar="PATH", help="write the html page to PATH (implies --format html) and print its path"
    )
    output.add_argument("--verbose", action="store_true", help="log backend requests (never credentials) on stderr")
    backend = parser.add_argument_group("backend access (credentials may also come from the environment)")
    backend.add_argument(
        "--tenant", default=os.environ.get("MODULETRACE_TENANT"), help="X-Scope-OrgID tenant (env MODULETRACE_TENANT)"
    )
    backend.add_argument(
        "--token-env",
        default="MODULETRACE_TOKEN",
        metavar="VAR",
        help="environment variable holding a bearer token (default MODULETRACE_TOKEN)",
    )
    backend.add_argument(
        "--user",
        default=os.environ.get("MODULETRACE_USER"),
        help="basic-auth user (env MODULETRACE_USER); the password comes from MODULETRACE_PASSWORD",
    )
    backend.add_argument("--ca-cert", metavar="PATH", help="CA bundle to verify the backend's TLS certificate")
    backend.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (not recommended)")
    backend.add_argument(
        "--limit",
        type=int,
        default=1000,
        metavar="N",
        help="traces per backend search before the window is split (default 1000)",
    )
    backend.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="deadline of each request, connection to last byte (default 30)",
    )
    backend.add_argument(
        "--max-requests",
        type=int,
        default=10_000,
        metavar="N",
        help="requests one scan may make, all backends together; past it the scan stops and is reported partial "
        "(default 10000)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        if args.command == "demo":
            return _demo(args)
        if args.command == "diagnose":
            return _diagnose(args)
        return _races(args)
    except ModuleTraceError as exc:
        print(f"moduletrace: error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("moduletrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        print("moduletrace: error: out of memory (narrow the scan: --since, --service, --module)", file=sys.stderr)
        return EXIT_BACKEND
    except Exception as exc:  # a bug: one line and "nothing judged", never a traceback nor exit 1
        print(
            f"moduletrace: error: internal error, please report it: {type(exc).__name__}: {printable(exc)[:200]}",
            file=sys.stderr,
        )
        return EXIT_BACKEND


class _Warnings:
    """Warnings on stderr, at most ``limit`` of them, then a count."""

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= self.limit:
            print(f"moduletrace: warning: {printable(message)}", file=sys.stderr)

    def close(self) -> None:
        if self.count > self.limit:
            print(f"moduletrace: warning: {self.count - self.limit} more warnings not shown", file=sys.stderr)


class _Progress:
    """A progress line on stderr (a terminal only) once a scan has run for more than a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.enabled = sys.stderr.isatty()

    def tick(self, scan: Scan) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started > 1.0 and now - self.last > 0.2:
            self.last = now
            self.shown = True
            done = "".join(f", {p}" for p in (s.progress() for s in scan.sources) if p)
            sys.stderr.write(f"\r\033[Kmoduletrace: {scan.spans_read:,} spans read{done}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _options(args: argparse.Namespace) -> ScanOptions:
    """The scan the flags ask for (parsing and checking only; the scan runs elsewhere)."""
    backend = bool(args.jaeger or args.tempo)
    end = parse_time(args.end, "--end") if args.end else None
    start = parse_time(args.start, "--start") if args.start else None
    if args.since:
        if start is not None:
            raise InputError("give --since or --start, not both")
        start = (end or time.time_ns()) - int(parse_duration(args.since) * 1e9)
    if backend and end is None:
        end = time.time_ns()
    if start is not None and end is not None and start >= end:
        raise InputError("the window is empty: --start/--since must come before --end")
    if (start is not None and start < 0) or (end is not None and end < 0):
        raise InputError("the window begins before 1970-01-01: give a later --start or a shorter --since")
    for flag, value in (("--skew-tolerance", args.skew_tolerance), ("--timeout", args.timeout)):
        if not math.isfinite(value):
            raise InputError(f"{flag} must be a finite number")
    if not args.timeout > 0:
        raise InputError("--timeout must be > 0")
    settle = None if args.settle_after == "never" else parse_duration(args.settle_after, "--settle-after")
    return ScanOptions(
        files=args.file,
        metrics=args.metrics,
        jaeger=args.jaeger,
        tempo=args.tempo,
        start_ns=start,
        end_ns=end,
        service=args.service,
        module=args.module,
        lookback_s=parse_duration(args.lookback, "--lookback"),
        skew_tolerance_ms=args.skew_tolerance,
        derive_bounds=not args.no_derived_bounds,
        settle_after_s=settle,
        auth=_auth(args) if backend else None,
        limit=args.limit,
        timeout_s=args.timeout,
        max_requests=args.max_requests,
        log=(lambda line: print(f"moduletrace: {line}", file=sys.stderr)) if args.verbose else None,
    )


def _auth(args: argparse.Namespace) -> Any:
    from moduletrace.sources.http import Auth

    token = os.environ.get(args.token_env) or None
    password = os.environ.get("MODULETRACE_PASSWORD") or None
    if args.user and password is None:
        raise InputError("--user needs the password in the MODULETRACE_PASSWORD environment variable")
    if args.ca_cert and not os.path.isfile(args.ca_cert):
        raise InputError(f"--ca-cert {args.ca_cert}: no such file")
    verify: bool | str = False if args.insecure else (args.ca_cert or True)
    return Auth(token=token, user=args.user, password=password, tenant=args.tenant, verify=verify)


def _run_scan(args: argparse.Namespace, command: Callable[..., Any]) -> tuple[Any, Scan]:
    options = _options(args)
    warn = _Warnings()
    if args.insecure and options.from_backend:
        warn("TLS certificates are not verified (--insecure)")
    progress = _Progress()
    try:
        return command(options, warn, progress.tick)  # type: ignore[no-any-return]
    finally:
        progress.done()
        warn.close()


def _races(args: argparse.Namespace) -> int:
    from moduletrace import scan

    if args.output or _format(args) == "html":
        return _html(args, races=True)
    report, read = _run_scan(args, scan.races)
    shown = report.failed_only() if args.failed_only else report
    link = read.trace_url if read.links else None
    if _format(args) == "json":
        print(pretty_json(as_json(shown, link, read.partial)))
    else:
        print(as_table(shown, link, read.partial))
    return _exit(report.found_races, read.partial)


def _diagnose(args: argparse.Namespace) -> int:
    from moduletrace import scan
    from moduletrace.cli.render import diagnosis_json, diagnosis_table

    if args.output or _format(args) == "html":
        return _html(args, races=False)
    report, read = _run_scan(args, scan.diagnose)
    link = read.trace_url if read.links else None
    if _format(args) == "json":
        print(pretty_json(diagnosis_json(report, link, read.partial)))
    else:
        print(diagnosis_table(report, link, read.partial))
    return _exit(bool(report.diagnoses), read.partial)


def _html(args: argparse.Namespace, races: bool) -> int:
    """Both reports from one read, as one HTML page: to --output (its path printed), else to stdout."""
    from moduletrace import scan
    from moduletrace.cli.html import render_html, write_html

    if args.format not in (None, "html"):
        raise InputError(f"--output writes the html page: it goes with --format html, not {args.format}")
    if not args.output and sys.stdout.isatty():
        raise InputError("--format html writes a page, not text for a terminal: give --output PATH")
    found: Any = _run_scan(args, scan.incident)  # (DiagnosisReport, RaceReport, Scan)
    diagnosis, report, read = found
    shown = report.failed_only() if args.failed_only else report
    link = read.trace_url if read.links else None
    if args.output:
        try:
            path = write_html(args.output, shown, diagnosis, link, read.partial, source=_described(read))
        except OSError as exc:
            raise InputError(f"--output {args.output}: {exc.strerror or exc}") from None
        print(path)
    else:
        print(render_html(shown, diagnosis, link, read.partial, source=_described(read)))
    return _exit(report.found_races if races else bool(diagnosis.diagnoses), read.partial)


def _described(read: Scan) -> str:
    return "; ".join(source.describe() for source in read.sources)


def _exit(found: bool, partial: list[str]) -> int:
    """1 when something was found; a partial scan that found nothing is not "nothing": exit 3."""
    if found:
        return EXIT_RACES
    if partial:
        print(
            f"moduletrace: error: the scan is partial, so finding nothing proves nothing: {printable(partial[0])}",
            file=sys.stderr,
        )
        return EXIT_BACKEND
    return EXIT_OK


def _format(args: argparse.Namespace) -> str:
    return str(args.format or ("table" if sys.stdout.isatty() else "json"))


def _demo(args: argparse.Namespace) -> int:
    from moduletrace.cli.render import demo_json, demo_table
    from moduletrace.demo.runner import DemoOptions, run

    if args.modules < 1 or args.concurrency < 1:
        raise InputError("--modules and --concurrency must be >= 1")
    rates = (args.race_rate, args.auth_rate, args.pool_rate)
    if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
        raise InputError("each --*-rate must be between 0 and 1, and together at most 1")
    options = DemoOptions(
        seed=args.seed,
        modules=args.modules,
        concurrency=args.concurrency,
        race_rate=args.race_rate,
        auth_rate=args.auth_rate,
        pool_rate=args.pool_rate,
        otlp=args.otlp,
        directory=args.dir,
        broker=args.broker,
    )
    interactive = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if interactive and (done % 10 == 0 or done == total):
            sys.stderr.write(f"\r\033[Kmoduletrace demo: {done}/{total} modules created and loaded")
            sys.stderr.flush()

    started = time.monotonic()
    try:
        result = run(options, progress)
    except (OSError, RuntimeError) as exc:
        raise InputError(f"demo could not run: {exc}") from None
    finally:
        if interactive:
            sys.stderr.write("\r\033[K")
    for warning in result.warnings:
        print(f"moduletrace: warning: {warning}", file=sys.stderr)
    seconds = time.monotonic() - started
    page = _demo_page(result)
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        document = demo_json(result)
        document["demo"]["report"] = str(page)
        print(pretty_json(document))
    else:
        print(demo_table(result, options, seconds))
        print(f"Report (open it in a browser): {page}")
    return EXIT_OK if result.matches else EXIT_RACES


def _demo_page(result: Any) -> Path:
    from moduletrace.cli.html import write_html

    try:
        return write_html(
            result.directory / "report.html",
            result.report,
            result.diagnosis,
            title="moduletrace demo: incident report",
            source=result.spans_glob,
        )
    except OSError as exc:
        raise InputError(f"demo could not write its report: {exc}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
