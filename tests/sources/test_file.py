"""Reading collector file-exporter output: every framing, compression, and damaged input."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard

from moduletrace.errors import InputError
from moduletrace.sources.file import FileSource, expand, read_spans
from moduletrace.spans import BARE

TRACE = "0af7651916cd43dd8448eb211c80319c"


def otlp_span(
    name: str, span_id: str, module: Any = "m-1", start: int = 1_000, end: int = 2_000, **extra: Any
) -> dict[str, Any]:
    attributes = [{"key": "module.stage", "value": {"stringValue": name.split("_", 2)[-1]}}]
    if isinstance(module, int):
        attributes.append({"key": "module.id", "value": {"intValue": str(module)}})
    elif module is not None:
        attributes.append({"key": "module.id", "value": {"stringValue": module}})
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": attributes,
        "status": {},
        **extra,
    }


def line(*spans: dict[str, Any], service: str = "svc") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service}},
                        {"key": "host.name", "value": {"stringValue": "h1"}},
                    ]
                },
                "scopeSpans": [{"scope": {"name": "moduletrace"}, "spans": list(spans)}],
            }
        ]
    }


def write_lines(path: Path, *lines: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def test_json_lines_decode_to_normalised_spans(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "a.jsonl",
        line(
            otlp_span(
                "module_create_db_commit",
                "00000000000000a1",
                status={"code": 2, "message": "boom"},
                parentSpanId="00000000000000a0",
            )
        ),
    )
    (span,) = read_spans([str(path)])
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, "00000000000000a1", "00000000000000a0")
    assert (span.start_ns, span.end_ns, span.status_code, span.status_message) == (1000, 2000, 2, "boom")
    assert span.attributes["module.id"] == "m-1"
    assert (span.resource.service_name, span.resource.host) == ("svc", "h1")


def test_a_trace_spread_over_many_lines_and_files_is_read_whole(tmp_path: Path) -> None:
    a = write_lines(
        tmp_path / "a.jsonl",
        line(otlp_span("module_create_start", "01" * 8)),
        line(otlp_span("module_create_db_commit", "02" * 8)),
    )
    b = write_lines(tmp_path / "b.jsonl", line(otlp_span("module_load_request", "03" * 8)))
    assert [s.span_id for s in read_spans([str(a), str(b)])] == ["01" * 8, "02" * 8, "03" * 8]


def test_globs_expand_and_a_pattern_matching_nothing_is_an_input_error(tmp_path: Path) -> None:
    for n in range(3):
        write_lines(tmp_path / f"spans-{n}.jsonl", line(otlp_span("module_load_request", f"{n:016x}")))
    assert len(expand([str(tmp_path / "spans-*.jsonl")])) == 3
    with pytest.raises(InputError, match="no file matches"):
        expand([str(tmp_path / "nothing-*.jsonl")])
    with pytest.raises(InputError, match="no such file"):
        expand([str(tmp_path / "missing.jsonl")])


def test_gzip_and_whole_file_zstd_are_read(tmp_path: Path) -> None:
    payload = (json.dumps(line(otlp_span("module_load_request", "01" * 8))) + "\n").encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(payload))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    (tmp_path / "no-extension").write_bytes(zstandard.ZstdCompressor().compress(payload))  # bytes decide, not names
    for name in ("a.jsonl.gz", "a.jsonl.zst", "no-extension"):
        assert [s.name for s in read_spans([str(tmp_path / name)])] == ["module_load_request"]


def test_length_prefixed_records_zstd_json_and_protobuf_are_read(tmp_path: Path) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    record = json.dumps(line(otlp_span("module_load_request", "01" * 8))).encode()
    compressed = zstandard.ZstdCompressor().compress(record)
    (tmp_path / "zstd").write_bytes(struct.pack(">I", len(compressed)) + compressed)
    message = ExportTraceServiceRequest()
    as_proto = line(otlp_span("module_load_db_query", "02" * 8, module=7))
    for rs in as_proto["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                s["traceId"] = "CvdlGRbNQ92ESOshHIAxnA=="  # proto3 JSON mapping is base64
                s["spanId"] = "AgICAgICAgI="
    json_format.ParseDict(as_proto, message)
    raw = message.SerializeToString()
    (tmp_path / "proto").write_bytes(struct.pack(">I", len(raw)) + raw)
    (zstd_span,) = read_spans([str(tmp_path / "zstd")])
    (proto_span,) = read_spans([str(tmp_path / "proto")])
    assert zstd_span.name == "module_load_request"
    assert (proto_span.trace_id, proto_span.span_id, proto_span.attributes["module.id"]) == (TRACE, "02" * 8, 7)


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    complete = json.dumps(line(otlp_span("module_create_start", "01" * 8))) + "\n"
    path.write_text(complete + json.dumps(line(otlp_span("module_load_request", "02" * 8)))[:57])
    warnings: list[str] = []
    source = FileSource([str(path)], warnings.append)
    spans = list(source.spans())
    assert [s.span_id for s in spans] == ["01" * 8]
    assert warnings == [f"{path}: last record skipped: cut short (collector killed mid-write?)"]
    # The cut record may have held the race: the scan is partial, so finding nothing proves nothing.
    assert source.partial == warnings


def test_a_corrupt_line_in_the_middle_is_skipped_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    good = json.dumps(line(otlp_span("module_create_start", "01" * 8)))
    path.write_text(f'{good}\n{{not json\n{good}\n{{"x": 1}}\n')
    warnings: list[str] = []
    source = FileSource([str(path)], warnings.append)
    assert len(list(source.spans())) == 2
    assert len(warnings) == 2 and "record 2 skipped" in warnings[0] and "record 4 skipped" in warnings[1]
    assert source.partial == [f"{warnings[0]} (2 records skipped)"]


def test_a_file_read_whole_is_not_partial(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", line(otlp_span("module_create_start", "01" * 8)))
    source = FileSource([str(path)], lambda message: None)
    assert len(list(source.spans())) == 1 and source.partial == []


def test_upper_case_hex_ids_are_read_lower_case_on_spans_read_for_their_timing_only(tmp_path: Path) -> None:
    # A server span is read bare (ids and times, for clock bounds): its parent, the client span's id,
    # must match the client's lower-cased id, or the pair is lost (and the tolerance decides).
    server = {**otlp_span("GET /m", "0A" * 8), "kind": 2, "traceId": TRACE.upper(), "parentSpanId": "0B" * 8}
    path = write_lines(tmp_path / "a.jsonl", line(server))
    (span,) = read_spans([str(path)], wanted=lambda name, kind: BARE)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, "0a" * 8, "0b" * 8)


def test_a_file_with_nothing_decodable_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not telemetry\nnor is this\n")
    with pytest.raises(InputError, match="nothing could be decoded"):
        list(FileSource([str(path)], lambda message: None).spans())


def test_json_that_is_not_otlp_is_an_input_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", {"hello": "world"})
    with pytest.raises(InputError):
        list(FileSource([str(path)], lambda message: None).spans())


def test_an_empty_file_has_no_spans(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert read_spans([str(path)]) == []


def test_the_wanted_filter_skips_spans_early(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "a.jsonl",
        line(otlp_span("module_load_request", "01" * 8), {**otlp_span("SELECT", "02" * 8), "kind": 3}),
    )
    spans = read_spans([str(path)], wanted=lambda name, kind: name.startswith("module_"))
    assert [s.name for s in spans] == ["module_load_request"]


def test_progress_counts_bytes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", *[line(otlp_span("module_load_request", f"{n:016x}")) for n in range(5)])
    source = FileSource([str(path)], lambda message: None)
    list(source.spans())
    assert source.bytes_done == source.bytes_total == path.stat().st_size
