"""`moduletrace races`: exit codes, one-line errors, the JSON contract, and no secrets in output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from moduletrace import scan
from moduletrace.cli.main import main
from moduletrace.errors import BackendError
from tests.sources.test_file import line, otlp_span, write_lines
from tests.support.local_server import LocalServer
from tests.support.processes import free_port

HEX32 = set("0123456789abcdef")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def racing_file(tmp_path: Path, failed: bool = False) -> Path:
    # m-1: the query reads [5.0, 5.1] us, the commit runs [6, 10] us, same process: a race (its load failed
    # when ``failed``). m-2: clean.
    def spans(module: str, trace: str, commit_end: int, query_start: int) -> list[dict[str, Any]]:
        out = [
            otlp_span("module_create_db_commit", "a" + trace[-15:], module=module, start=6_000, end=commit_end),
            otlp_span(
                "module_load_request", "b" + trace[-15:], module=module, start=query_start - 500, end=query_start + 500
            ),
            otlp_span(
                "module_load_db_query",
                "c" + trace[-15:],
                module=module,
                start=query_start,
                end=query_start + 100,
                parentSpanId="b" + trace[-15:],
            ),
        ]
        for span in out:
            span["traceId"] = trace
        if failed and module == "m-1":
            out[1]["status"] = {"code": 2}
        return out

    return write_lines(
        tmp_path / "spans.jsonl",
        line(*spans("m-1", "1" * 32, 10_000, 5_000)),
        line(*spans("m-2", "2" * 32, 10_000, 20_000)),
    )


def test_races_found_exit_1_with_the_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "races", "--file", str(racing_file(tmp_path)), "--format", "json")
    assert code == 1 and err == ""
    report = json.loads(out)
    assert set(report) >= {"races", "ambiguous", "unmatched", "summary"}
    (race,) = report["races"]
    assert {"module_id", "trace_id", "load_span_id", "preceded", "margin_ms", "verdict", "same_trace"} <= set(race)
    assert race["module_id"] == "m-1" and race["verdict"] == "race" and race["same_trace"] is True
    assert race["preceded"] == ["db_commit"] and race["margin_ms"] == {"db_commit": 0.0009}
    assert len(race["trace_id"]) == 32 and set(race["trace_id"]) <= HEX32
    assert len(race["load_span_id"]) == 16 and set(race["load_span_id"]) <= HEX32
    assert report["summary"]["loads"] == 2 and report["summary"]["races"] == 1


def test_no_race_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "races", "--file", str(racing_file(tmp_path)), "--module", "m-2", "--format", "json")
    assert code == 0 and json.loads(out)["races"] == []


def test_table_lists_each_raced_load_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "races", "--file", str(racing_file(tmp_path)), "--format", "table")
    assert code == 1
    assert "m-1" in out and "1" * 32 in out and "db_commit by 0.0 ms" in out
    assert out.strip().splitlines()[-1] == (
        "2 loads of 2 modules (0 failed): 1 raced (0 failed, 1 succeeded), 0 stale reads (0 failed, 0 succeeded), "
        "0 ambiguous, 0 unmatched, 1 clean."
    )


def test_table_gives_no_negative_lead_for_a_stage_the_data_says_was_missed_during_the_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # m-1's query [7.0, 7.1] us overlaps its commit [6, 10] us, but recorded found=false: a race by data.
    path = racing_file(tmp_path)
    text = path.read_text().replace('"startTimeUnixNano": "5000"', '"startTimeUnixNano": "7000"')
    text = text.replace('"endTimeUnixNano": "5100"', '"endTimeUnixNano": "7100"')
    record = json.loads(text.splitlines()[0])
    query = record["resourceSpans"][0]["scopeSpans"][0]["spans"][2]
    query["attributes"].append({"key": "module.data.found", "value": {"boolValue": False}})
    path.write_text(json.dumps(record) + "\n" + text.splitlines()[1] + "\n")
    code, out, _ = run(capsys, "races", "--file", str(path), "--format", "table")
    assert code == 1 and "db_commit: missed (data), no clock lead" in out and "by -" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["races"], "give a source"),
        (["races", "--file", "x.jsonl", "--since", "2 fortnights"], "expected a duration"),
        (["races", "--file", "x.jsonl", "--start", "yesterday"], "expected an RFC 3339 time"),
        (["races", "--file", "x.jsonl", "--start", "2026-11-29T10:00:00"], "give a time zone"),
        (
            ["races", "--file", "x.jsonl", "--start", "2026-11-29T10:00:00Z", "--end", "2026-11-29T09:00:00Z"],
            "window is empty",
        ),
        (["races", "--file", "x.jsonl", "--skew-tolerance", "-1"], "--skew-tolerance must be >= 0"),
        (["races", "--file", "x.jsonl", "--skew-tolerance", "abc"], "invalid float value"),
        (["races", "--file", "x.jsonl", "--format", "xml"], "invalid choice"),
        (["races", "--bogus"], "unrecognized arguments"),
        (["races", "--file", "missing.jsonl"], "no such file"),
        (["races", "--jaeger", "ftp://host"], "must be http(s)"),
        (["nonsense"], "invalid choice"),
        (["demo", "--modules", "0"], "--modules and --concurrency must be >= 1"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text("")
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("moduletrace: error: ") and message in err, err


def test_unreadable_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not telemetry\n")
    code, _, err = run(capsys, "races", "--file", str(path))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_an_unreachable_backend_is_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "races", "--jaeger", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert code == 3 and err.count("\n") == 1 and "unreachable" in err


class _Failing:
    """A backend answering 503 to everything, recording the headers it got.

    A fake, on purpose: no real Jaeger or Tempo answers 5xx on demand.
    """

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.headers.append(dict(self.headers))
                body = b'{"error":{"httpCode":503,"message":"storage overloaded"}}'
                self.send_response(503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.local = LocalServer(Handler)
        self.url = self.local.url


@pytest.fixture
def failing() -> Iterator[_Failing]:
    backend = _Failing()
    yield backend
    backend.local.close()


def test_a_backend_answering_5xx_is_retried_then_exit_3(failing: _Failing, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "races", "--tempo", failing.url)
    assert code == 3 and err.count("\n") == 1
    assert "HTTP 503: storage overloaded after 4 attempts" in err
    assert len(failing.headers) == 4


def test_a_bearer_token_reaches_the_backend_but_never_the_output(
    failing: _Failing, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODULETRACE_TOKEN", "s3cr3t-token")
    code, out, err = run(capsys, "races", "--jaeger", failing.url, "--tenant", "team-a", "--verbose")
    assert code == 3 and "s3cr3t-token" not in out + err
    assert failing.headers[0]["Authorization"] == "Bearer s3cr3t-token"
    assert failing.headers[0]["X-Scope-OrgID"] == "team-a"
    assert "GET http://127.0.0.1:" in err  # --verbose logs requests, without credentials


def test_basic_auth_reaches_the_backend_but_never_the_output(
    failing: _Failing, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODULETRACE_PASSWORD", "hunter2")
    for argv in (["--user", "admin"], []):
        url = failing.url if argv else failing.url.replace("http://", "http://admin:hunter2@")
        code, out, err = run(capsys, "races", "--tempo", url, "--verbose", *argv)
        assert code == 3 and "hunter2" not in out + err
        assert failing.headers[-1]["Authorization"] == "Basic YWRtaW46aHVudGVyMg=="  # admin:hunter2


def test_basic_auth_needs_its_password_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "races", "--tempo", "http://127.0.0.1:1", "--user", "admin")
    assert code == 2 and "MODULETRACE_PASSWORD" in err


def test_tls_is_verified_by_default() -> None:
    from moduletrace.sources.http import Auth

    assert Auth().verify is True
    assert "hunter2" not in repr(Auth(token="hunter2", password="hunter2"))


@pytest.mark.parametrize(
    ("content", "extra"),
    [
        (b"", []),  # an empty file
        (None, ["--service", "no-such-service"]),  # a --service typo
        (b'{"resourceSpans": []}\n', []),  # spans, but no lifecycle span
    ],
    ids=["empty-file", "service-typo", "no-lifecycle-span"],
)
def test_a_scan_that_read_no_lifecycle_span_is_not_a_silent_no_race(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, extra: list[str]
) -> None:
    path = racing_file(tmp_path) if content is None else tmp_path / "spans.jsonl"
    if content is not None:
        path.write_bytes(content)
    said = "no load of service no-such-service found in" if extra else "no lifecycle span found in"
    code, out, err = run(capsys, "races", "--file", str(path), *extra)
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and said in err and str(path) in err and "no evidence of 'no race'" in err
    code, _, err = run(capsys, "diagnose", "--file", str(path), *extra)
    assert code == 3 and said in err


def test_an_empty_window_names_the_window_and_what_was_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = racing_file(tmp_path)
    code, _, err = run(capsys, "races", "--file", str(path), "--since", "0s")
    assert code == 3 and "no load in the window found in" in err
    code, _, err = run(capsys, "races", "--file", str(path), "--since", "0s", "--module", "m-9")
    assert code == 3 and "no load of module m-9 in the window found in" in err


def test_failed_only_lists_only_failed_loads_and_counts_them_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = racing_file(tmp_path)
    lines = path.read_text().splitlines()
    failed = json.loads(lines[0])
    for span in failed["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        if span["name"] == "module_load_request":
            span["status"] = {"code": 2}
    # m-1's load (which raced) now failed; a copy of m-1 under another id raced and succeeded.
    path.write_text("\n".join([json.dumps(failed), lines[0].replace('"m-1"', '"m-3"'), *lines[1:]]) + "\n")
    _, out, _ = run(capsys, "races", "--file", str(path), "--format", "json")
    summary = json.loads(out)["summary"]
    assert (summary["loads"], summary["failed_loads"]) == (3, 1)
    assert summary["races_by_load"] == {"failed": 1, "succeeded": 1}
    _, out, _ = run(capsys, "races", "--file", str(path), "--format", "json", "--failed-only")
    assert [(r["module_id"], r["load_failed"]) for r in json.loads(out)["races"]] == [("m-1", True)]


def test_the_skew_tolerance_flag_decides_a_cross_host_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The commit ran [10, 20] ms on host h1; the load read [2.0, 2.1] ms on host h2: 7.9 ms before it began.
    trace = "4" * 32
    commit = otlp_span("module_create_db_commit", "a" * 16, start=10_000_000, end=20_000_000)
    request = otlp_span("module_load_request", "b" * 16, start=1_500_000, end=2_500_000)
    query = otlp_span("module_load_db_query", "c" * 16, start=2_000_000, end=2_100_000, parentSpanId="b" * 16)
    for span in (commit, request, query):
        span["traceId"] = trace
    other_host = json.loads(json.dumps(line(request, query, service="canvas")).replace('"h1"', '"h2"'))
    path = write_lines(tmp_path / "spans.jsonl", line(commit, service="creator"), other_host)

    def verdicts(tolerance: str) -> tuple[int, list[str], list[str]]:
        code, out, _ = run(capsys, "races", "--file", str(path), "--format", "json", "--skew-tolerance", tolerance)
        report = json.loads(out)
        return code, [r["verdict"] for r in report["races"]], [a["reason"] for a in report["ambiguous"]]

    assert verdicts("5") == (1, ["race"], [])
    assert verdicts("7.8") == (1, ["race"], [])
    assert verdicts("7.9") == (0, [], ["clock"])  # exactly at the bound: undecided
    assert verdicts("10") == (0, [], ["clock"])


# --- exit statuses: what each way a scan ends exits with, and the one line it says ------------------


def test_no_command_prints_the_usage_on_stderr_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out == "" and err.startswith("usage: moduletrace")


def test_diagnose_exits_1_for_a_failed_load_and_0_without(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(racing_file(tmp_path, failed=True))
    assert run(capsys, "diagnose", "--file", path, "--module", "m-1")[0] == 1
    assert run(capsys, "diagnose", "--file", path, "--module", "m-2")[0] == 0


@pytest.mark.parametrize(
    ("command", "module", "code"),
    [("races", "m-1", 1), ("races", "m-2", 3), ("diagnose", "m-1", 1), ("diagnose", "m-2", 3)],
)
def test_a_partial_scan_that_found_something_exits_1_and_one_that_found_nothing_exits_3(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    module: str,
    code: int,
) -> None:
    whole = getattr(scan, command)

    def partial(*args: Any) -> tuple[Any, scan.Scan]:
        found, read = whole(*args)
        read.partial.append("Tempo answered HTTP 500 for 2 of 9 windows")
        return found, read

    monkeypatch.setattr(scan, command, partial)
    got, _, err = run(capsys, command, "--file", str(racing_file(tmp_path, failed=True)), "--module", module)
    assert got == code
    assert err == (
        ""
        if code == 1
        else "moduletrace: error: the scan is partial, so finding nothing proves nothing: "
        "Tempo answered HTTP 500 for 2 of 9 windows\n"
    )


@pytest.mark.parametrize(
    ("raised", "code", "said"),
    [
        pytest.param(
            BackendError("Tempo answered HTTP 401"), 3, "moduletrace: error: Tempo answered HTTP 401", id="backend"
        ),
        pytest.param(KeyboardInterrupt(), 130, "moduletrace: interrupted", id="interrupted"),
        pytest.param(BrokenPipeError(), 0, "", id="the-reader-went-away"),
        pytest.param(
            MemoryError(),
            3,
            "moduletrace: error: out of memory (narrow the scan: --since, --service, --module)",
            id="out-of-memory",
        ),
        pytest.param(
            KeyError("x" * 300),
            3,
            "moduletrace: error: internal error, please report it: KeyError: '" + "x" * 199,
            id="a-bug-in-one-line-of-at-most-200-characters",
        ),
    ],
)
@pytest.mark.parametrize("command", ["races", "diagnose"])
def test_how_a_scan_ends_decides_the_exit_status_and_the_one_line_said(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    raised: BaseException,
    code: int,
    said: str,
) -> None:
    def failing(*args: Any) -> None:
        raise raised

    monkeypatch.setattr(scan, command, failing)
    got, out, err = run(capsys, command, "--file", str(racing_file(tmp_path)))
    assert (got, out, err) == (code, "", said + "\n" if said else "")
