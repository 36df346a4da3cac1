"""`races` and `diagnose` on hostile files: exit 0-3 with one line on stderr, never a traceback.

Each case runs with orjson and with the standard library's json (the file source has an orjson
fast path; without orjson deep nesting is a RecursionError and ``1e999`` a float infinity).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from moduletrace.cli.main import main
from moduletrace.cli.render import printable, rfc3339
from moduletrace.sources import file as file_source
from tests.reliability import hostile


@pytest.fixture(params=["orjson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(file_source, "_loads", json.loads)
    else:
        import orjson

        monkeypatch.setattr(file_source, "_loads", orjson.loads)
    return str(request.param)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("moduletrace: error: ")]
    assert len(errors) == 1 and err.endswith("\n") and "Traceback" not in err and "internal error" not in err, err
    return errors[0]


@pytest.mark.parametrize(
    ("maker", "said"),
    [
        (hostile.corrupt_zstd_file, "corrupt zstd data"),
        (hostile.corrupt_zstd_frame, "nothing could be decoded"),
        (hostile.huge_number_times, "nothing could be decoded"),
        (hostile.deep_nesting, "nothing could be decoded"),
    ],
    ids=["corrupt-zstd-file", "corrupt-zstd-frame", "1e999-times", "deep-nesting"],
)
@pytest.mark.parametrize("command", ["races", "diagnose"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_unreadable_files_are_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    parser: str,
    maker: Callable[[Path], Path],
    said: str,
    command: str,
    fmt: str,
) -> None:
    code, out, err = run(capsys, command, "--file", str(maker(tmp_path / "spans")), "--format", fmt)
    assert code == 2 and out == "" and said in one_error_line(err)


@pytest.mark.parametrize("command", ["races", "diagnose"])
def test_a_lone_surrogate_in_a_module_id_is_printed_escaped_in_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parser: str, command: str
) -> None:
    path = hostile.lone_surrogate(tmp_path / "spans.jsonl")
    code, out, err = run(capsys, command, "--file", str(path), "--format", "table")
    if parser == "orjson":  # orjson refuses the line: nothing else in the file
        assert code == 2 and "nothing could be decoded" in one_error_line(err)
        return
    assert code == (1 if command == "races" else 0) and "Traceback" not in err, err
    if command == "races":
        assert "m-\\ud800" in out
    out.encode("utf-8")  # printable on any UTF-8 terminal


def test_ansi_escapes_in_a_module_id_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hostile.ansi_module_id(tmp_path / "spans.jsonl")
    code, out, err = run(capsys, "races", "--file", str(path), "--format", "table")
    assert code == 1 and "\x1b" not in out + err and "\x07" not in out
    assert "m-\\x1b[2J\\x1b]0;pwned\\x07" in out
    code, out, _ = run(capsys, "races", "--file", str(path), "--format", "json")
    assert json.loads(out)["races"][0]["module_id"] == "m-\x1b[2J\x1b]0;pwned\x07" and "\x1b" not in out


def test_control_characters_in_a_file_name_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spans\x1b[31m.jsonl"
    path.write_text("{}\n")
    code, _, err = run(capsys, "races", "--file", str(path))
    assert code == 2 and "\x1b" not in err and "spans\\x1b[31m.jsonl" in one_error_line(err)


@pytest.mark.parametrize(
    ("maker", "said", "code"),
    [
        (hostile.end_before_start, "1 span skipped: it ends before it starts", 1),
        (hostile.negative_times, "1 span skipped: a time before 1970 or past what OTLP can hold", 1),
        (hostile.year_10000, "1 span skipped: a time before 1970 or past what OTLP can hold", 1),
        (hostile.no_start_time, "1 span skipped: no start time", 1),
        (hostile.odd_ids, "2 spans skipped: a trace, span or parent id that is not lower-case hex", 3),
    ],
    ids=["end-before-start", "negative-times", "year-10000", "no-start-time", "odd-ids"],
)
@pytest.mark.parametrize("command", ["races", "diagnose"])
def test_impossible_spans_are_skipped_with_a_counted_warning(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    parser: str,
    maker: Callable[[Path], Path],
    said: str,
    code: int,
    command: str,
) -> None:
    path = maker(tmp_path / "spans.jsonl")
    got, out, err = run(capsys, command, "--file", str(path), "--format", "table")
    # diagnose finds no failed load in what it read: with a span skipped, that proves nothing (exit 3)
    assert got == (code if command == "races" else 3), err
    assert f"moduletrace: warning: {said}" in err and "Traceback" not in err
    if got == 3:
        assert "moduletrace: error:" in err and "partial" in err
    assert "\x1b" not in out + err


def test_ids_are_lower_case_hex_in_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(hostile.racing_line() + hostile.racing_line(module="m-2", ids=("A1" * 8, "zz" * 8, "c2" * 8)))
    code, out, err = run(capsys, "races", "--file", str(path), "--format", "json")
    assert code == 1 and "2 spans skipped" in err  # the load request and its query (its parent)
    for race in json.loads(out)["races"]:
        assert set(race["trace_id"] + race["load_span_id"]) <= set("0123456789abcdef")


def test_times_no_calendar_holds_are_rendered_as_numbers() -> None:
    assert rfc3339(1_795_000_000_123_456_789) == "2026-11-18T11:06:40.123456Z"
    assert rfc3339(253_402_300_800 * 10**9) == "253402300800000000000ns since 1970-01-01T00:00:00Z"
    assert rfc3339(-(10**30)).endswith("ns since 1970-01-01T00:00:00Z")


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    assert printable("m-1 ok") == "m-1 ok"
    assert printable("a\x1b[2Jb\nc\ud800\u202e") == "a\\x1b[2Jb\\x0ac\\ud800\\u202e"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--since", "9" * 400 + "d"], "at most 1000 years"),
        (["--since", "1000000w"], "at most 1000 years"),
        (["--start", "0001-01-01T00:00:00Z"], "before 1970"),
        (["--skew-tolerance", "nan"], "--skew-tolerance must be a finite number"),
        (["--skew-tolerance", "inf"], "--skew-tolerance must be a finite number"),
        (["--timeout", "nan"], "--timeout must be a finite number"),
        (["--timeout", "0"], "--timeout must be > 0"),
    ],
)
def test_numbers_out_of_range_in_flags_are_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(hostile.racing_line())
    code, _, err = run(capsys, "races", "--file", str(path), *argv)
    assert code == 2 and said in one_error_line(err)
