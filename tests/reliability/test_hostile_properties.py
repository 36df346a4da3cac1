"""Property-based: hostile shapes (deep nesting, huge numbers, long lines, compression bombs and
cuts, odd ids and module ids) give documented outcomes only: spans that are well formed, a warning,
or exit 2/3 with one line on stderr. Each runs with the typed (msgspec) decoder, and without it with
orjson and with the standard library's json.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moduletrace.cli.main import main
from moduletrace.errors import BackendError, InputError
from moduletrace.sources import file as file_source
from moduletrace.sources import http as http_source
from moduletrace.sources.file import FileSource
from moduletrace.sources.http import Auth, Backend
from moduletrace.sources.jaeger import JaegerSource
from tests.reliability import hostile

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HEX = set("0123456789abcdef")


@pytest.fixture(params=["msgspec", "orjson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """msgspec: files through the typed decoder first (what moduletrace[fast] installs); orjson and
    json: through the generic decoder only, as without msgspec."""
    if request.param != "msgspec":
        monkeypatch.setattr(file_source, "_LineDecoder", None)
    if request.param == "json":
        monkeypatch.setattr(file_source, "_loads", json.loads)
        monkeypatch.setattr(http_source, "_loads", json.loads)
    yield str(request.param)


def command(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["races", "--file", str(path), *argv])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, 3), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code in (2, 3):
        assert sum(line.startswith("moduletrace: error: ") for line in err.splitlines()) == 1, err
    return code, out, err


#: JSON number tokens, written raw: huge, tiny, infinite (1e999), not a number, negative, fractional.
number_tokens = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "1e19", "18446744073709551616", "0.5", "-0", "1E3"]),
    st.integers(min_value=-(2**80), max_value=2**80).map(lambda n: json.dumps(str(n))),
)


@SETTINGS
@given(start=number_tokens, end=number_tokens, fmt=st.sampled_from(["table", "json"]))
def test_any_number_as_a_time_is_read_skipped_or_refused(
    capsys: pytest.CaptureFixture[str], parser: str, start: str, end: str, fmt: str
) -> None:
    text = hostile.racing_line(start="@START@", end="@END@")
    text = text.replace('"@START@"', start).replace('"@END@"', end)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans.jsonl"
        path.write_text(text)
        code, out, _ = command(capsys, path, "--format", fmt)
    if code in (0, 1) and fmt == "json":
        for race in json.loads(out)["races"]:
            assert race["read_start"].endswith("Z")


@SETTINGS
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from(["[", '{"a":', '{"arrayValue":']))
def test_any_nesting_depth_is_read_or_refused(
    capsys: pytest.CaptureFixture[str], parser: str, depth: int, opener: str
) -> None:
    closer = {"[": "]", '{"a":': "}", '{"arrayValue":': "}"}[opener]
    inner = opener * depth + "1" + closer * depth
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans.jsonl"
        path.write_text(hostile.racing_line() + '{"resourceSpans": [' + inner + "]}\n")
        code, _, err = command(capsys, path)
    assert code == 1 and (err == "" or "record 2 skipped" in err), err  # the race on line 1 is always found


@SETTINGS
@given(length=st.integers(min_value=3_900, max_value=4_300), compress=st.sampled_from(["", "gzip", "zstd"]))
def test_lines_around_the_length_limit_are_read_or_skipped_with_a_warning(
    parser: str, monkeypatch: pytest.MonkeyPatch, length: int, compress: str
) -> None:
    monkeypatch.setattr(file_source, "MAX_RECORD_BYTES", 4096)
    good = hostile.racing_line()
    padded = good[:-2] + ', "pad": "' + "x" * max(0, length - len(good) - 11) + '"}\n'
    data = (good + padded + good).encode()
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans"
        path.write_bytes(data)
        warnings: list[str] = []
        spans = list(FileSource([str(path)], warnings.append).spans())
    if len(padded) - 1 <= 4096:  # the limit is on the line, its newline not counted
        assert len(spans) == 9 and warnings == []
    else:
        assert len(spans) == 6 and len(warnings) == 1 and "longer than" in warnings[0]


@SETTINGS
@given(
    inflated=st.integers(min_value=0, max_value=4 * 2**20),
    cut=st.floats(min_value=0.0, max_value=1.0),
    compress=st.sampled_from(["gzip", "zstd"]),
)
def test_bombs_and_cut_compressed_files_are_bounded(
    parser: str, monkeypatch: pytest.MonkeyPatch, inflated: int, cut: float, compress: str
) -> None:
    monkeypatch.setattr(file_source, "MAX_RECORD_BYTES", 2**20)
    data = (hostile.racing_line() * 20 + '{"x": "' + " " * inflated + '"}\n' + hostile.racing_line()).encode()
    data = gzip.compress(data) if compress == "gzip" else zstandard.ZstdCompressor().compress(data)
    data = data[: max(1, int(len(data) * cut))]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans"
        path.write_bytes(data)
        warnings: list[str] = []
        try:
            spans = list(FileSource([str(path)], warnings.append).spans())
        except InputError:
            return
    assert len(spans) % 3 == 0 and len(spans) <= 63 and len(warnings) <= 3


odd_ids = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=40),
    st.sampled_from(["0" * 32, "Z" * 32, "\x1b[31m" + "a" * 27, "ab" * 16 + "\n", "AAAAAAAAAAAAAAAAAAAAAA=="]),
)


@SETTINGS
@given(trace=odd_ids, span=odd_ids, parent=odd_ids)
def test_odd_ids_never_reach_the_output_unless_lower_case_hex(
    capsys: pytest.CaptureFixture[str], parser: str, trace: str, span: str, parent: str
) -> None:
    document = json.loads(hostile.racing_line())
    for raw in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        if raw["name"] == "module_load_request":
            raw["traceId"], raw["spanId"] = trace, span
        elif raw["name"] == "module_load_db_query":
            raw["traceId"], raw["parentSpanId"] = trace, parent
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans.jsonl"
        path.write_text(json.dumps(document) + "\n")
        code, out, _ = command(capsys, path, "--format", "json")
    if code in (0, 1):
        report = json.loads(out)
        for verdict in report["races"] + report["ambiguous"] + report["unmatched"]:
            assert len(verdict["trace_id"]) == 32 and set(verdict["trace_id"]) <= HEX
            assert len(verdict["load_span_id"]) == 16 and set(verdict["load_span_id"]) <= HEX


@SETTINGS
@given(module=st.text(min_size=1, max_size=30))
def test_any_module_id_prints_as_one_safe_table_row(
    capsys: pytest.CaptureFixture[str], parser: str, module: str
) -> None:
    # Written as JSON escapes, so lone surrogates reach the parser as the standard library allows them.
    text = hostile.racing_line(module="@MODULE@").replace('"@MODULE@"', json.dumps(module))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans.jsonl"
        path.write_text(text)
        code, out, err = command(capsys, path, "--format", "table")
    out.encode("utf-8")
    assert all(line.isprintable() for line in (out + err).splitlines()), (out, err)
    if code == 1:
        assert sum(line.startswith("  ") and "race" not in line for line in out.splitlines()) >= 1


backend_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.sampled_from([1e308, -1e308, 0.5]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["result", "resourceSpans", "scopeSpans", "spans", "traceId", "startTimeUnixNano", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@SETTINGS
@given(body=backend_json, raw=st.sampled_from(["", "1e999", "-1e999", "NaN", "[" * 5000 + "]" * 5000]))
def test_any_jaeger_search_answer_gives_spans_or_a_backend_error(parser: str, body: Any, raw: str) -> None:
    """A MockTransport, not a server: the answer's bytes are all that is under test."""
    text = json.dumps(body)
    if raw:
        text = json.dumps({"result": {"resourceSpans": [], "x": "@"}}).replace('"@"', raw) if body else raw

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/operations":
            return httpx.Response(200, json={"operations": [{"name": "module_load_request"}]})
        return httpx.Response(200, content=text.encode())

    backend = Backend("http://jaeger.test", Auth(), "Jaeger", transport=httpx.MockTransport(answer), retries=0)
    source = JaegerSource(backend, 10**18, 10**18 + 10**12, service="svc")
    try:
        spans = list(source.spans())
    except BackendError:
        return
    finally:
        source.close()
    assert all(isinstance(s.start_ns, int) for s in spans)
