"""The typed (msgspec) decoder gives the generic decoder's spans for every line it takes, and leaves
every other line to it (among them, lines with a span the scan would reject: the scan then says
which); the file source reads the same spans and warnings with it and without it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moduletrace.analysis.diagnosis import wanted as diagnosis_wanted
from moduletrace.analysis.races import wanted as race_wanted
from moduletrace.errors import InputError
from moduletrace.scan import _admissible
from moduletrace.sources import file as file_source
from moduletrace.sources.file import FileSource
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.sources.otlp_json_typed import LineDecoder
from moduletrace.spans import CheckedSpans, ResourceCache, Span, Wanted
from tests.reliability import hostile

WANTS: dict[str, Wanted | None] = {"races": race_wanted, "diagnose": diagnosis_wanted, "all": None}

#: JSON values that are none of what OTLP puts in a field, or a near miss of it.
odd = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1.5,
        2**70,
        -(2**70),
        1e300,
        "",
        "x",
        " 5",
        "1e3",
        "5.0",
        "+5",
        "5_0",
        [],
        {},
        [1],
        {"a": 1},
    ]
)
hex32 = st.text("0123456789abcdef", min_size=32, max_size=32)
hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)
ids32 = st.one_of(hex32, hex32.map(str.upper), st.sampled_from(["", "AAAAAAAAAAAAAAAAAAAAAA==", "abc", "zz" * 16]), odd)
ids16 = st.one_of(hex16, hex16.map(str.upper), st.sampled_from(["", "AAAAAAAAAAA=", "abc", "zz" * 8]), odd)
times = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1).map(str),
    st.integers(min_value=-(2**65), max_value=2**65),
    odd,
)
kinds = st.one_of(st.integers(min_value=-1, max_value=7), st.sampled_from(["SPAN_KIND_CLIENT", "3", 3.0]), odd)
names = st.one_of(
    st.sampled_from(["module_load_request", "module_create_db_commit", "SELECT modules", "GET /x", ""]), odd
)
values = st.one_of(
    st.fixed_dictionaries({"stringValue": st.one_of(st.text(max_size=5), odd)}),
    st.fixed_dictionaries(
        {"intValue": st.one_of(st.integers(-(2**70), 2**70).map(str), st.integers(-(2**70), 2**70), odd)}
    ),
    st.fixed_dictionaries({"boolValue": st.one_of(st.booleans(), odd)}),
    st.fixed_dictionaries({"doubleValue": st.one_of(st.floats(allow_nan=False, allow_infinity=False), odd)}),
    st.fixed_dictionaries({"bytesValue": st.one_of(st.text(max_size=4), odd)}),
    st.fixed_dictionaries({"arrayValue": st.just({"values": [{"stringValue": "a"}, {"intValue": "2"}]})}),
    st.fixed_dictionaries({"kvlistValue": st.just({"values": [{"key": "k", "value": {"boolValue": True}}]})}),
    st.just({}),
    st.just({"stringValue": "a", "intValue": "1"}),
    odd,
)
attribute = st.one_of(
    st.fixed_dictionaries(
        {"key": st.sampled_from(["module.id", "db.system.name", "data.found", "k"]), "value": values}
    ),
    st.fixed_dictionaries({"key": st.sampled_from(["module.id", "k"])}),
    st.fixed_dictionaries({"value": values}),
    odd,
)
attributes = st.one_of(st.lists(attribute, max_size=4), odd)


def optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of these fields."""
    return st.fixed_dictionaries({}, optional=fields)


status = st.one_of(
    optional(
        {
            "code": st.one_of(st.integers(0, 3), st.sampled_from(["STATUS_CODE_ERROR", "2", "x"]), odd),
            "message": st.one_of(st.text(max_size=5), odd),
        }
    ),
    odd,
)
link = st.one_of(optional({"traceId": ids32, "spanId": ids16, "attributes": attributes}), odd)
span = optional(
    {
        "traceId": ids32,
        "spanId": ids16,
        "parentSpanId": ids16,
        "name": names,
        "kind": kinds,
        "startTimeUnixNano": times,
        "endTimeUnixNano": times,
        "attributes": attributes,
        "status": status,
        "links": st.one_of(st.lists(link, max_size=2), odd),
        "flags": st.integers(0, 768),
    }
)
scope = st.one_of(optional({"spans": st.one_of(st.lists(span, max_size=3), odd), "scope": st.just({"name": "s"})}), odd)
entry = st.one_of(
    optional(
        {
            "resource": st.one_of(optional({"attributes": attributes}), odd),
            "scopeSpans": st.one_of(st.lists(scope, max_size=2), odd),
            "instrumentationLibrarySpans": st.one_of(st.lists(scope, max_size=2), odd),
        }
    ),
    odd,
)
payload = st.one_of(
    optional({"resourceSpans": st.one_of(st.lists(entry, max_size=2), odd), "batches": st.lists(entry, max_size=1)}),
    odd,
)

#: Well-formed spans, so that the typed path is taken, not only left: the common shape, varied.
good_value = st.one_of(
    st.fixed_dictionaries({"stringValue": st.text(max_size=5)}),
    st.fixed_dictionaries({"intValue": st.integers(-(2**63), 2**63 - 1).map(str)}),
    st.fixed_dictionaries({"boolValue": st.booleans()}),
    st.fixed_dictionaries({"doubleValue": st.floats(allow_nan=False, allow_infinity=False)}),
    st.fixed_dictionaries({"bytesValue": st.text(max_size=4)}),
    st.just({}),
)
good_attributes = st.lists(
    st.fixed_dictionaries(
        {"key": st.sampled_from(["module.id", "db.system.name", "data.found", "k"]), "value": good_value}
    ),
    max_size=4,
)
good_span = st.builds(
    lambda span, start, duration: {
        **span,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(min(start + duration, 2**64 - 1)),
    },
    st.fixed_dictionaries(
        {
            "traceId": hex32,
            "spanId": hex16,
            "name": st.sampled_from(["module_load_request", "module_create_db_commit", "SELECT modules", "GET /x", ""]),
            "kind": st.integers(0, 5),
        },
        optional={
            "parentSpanId": st.one_of(hex16, st.just("")),
            "attributes": good_attributes,
            "status": optional({"code": st.integers(0, 2), "message": st.text(max_size=5)}),
            "links": st.lists(
                st.fixed_dictionaries({"traceId": hex32, "spanId": hex16}, optional={"attributes": good_attributes}),
                max_size=2,
            ),
        },
    ),
    st.integers(1, 2**64 - 1),  # 0 is no time (OTLP JSON leaves zeros out): the generic decoder's
    st.integers(0, 10**12),
)
good_payload = st.builds(
    lambda spans, attrs: {"resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]}]},
    st.lists(good_span, max_size=4),
    good_attributes,
)


def generic(line: bytes, loads: Callable[[bytes], Any], wanted: Wanted | None) -> list[Span] | str:
    """What the generic decoder makes of a line with this parser: spans, or the error's kind."""
    try:
        return decode(loads(line), ResourceCache(), wanted)
    except (FormatError, ValueError, RecursionError, OverflowError) as exc:
        return type(exc).__name__


def assert_same_as_generic(document: Any) -> bool:
    """For each consumer: the typed decoder's spans, when it takes the line, are both parsers' spans,
    and spans the scan admits."""
    line = json.dumps(document).encode()
    taken = False
    for wanted in WANTS.values():
        typed = LineDecoder(ResourceCache(), wanted).decode(line)
        if typed is None:
            continue
        taken = True
        assert typed == generic(line, orjson.loads, wanted)
        assert typed == generic(line, json.loads, wanted)
        assert isinstance(typed, CheckedSpans) and _admissible(typed)  # the scan may take them unchecked
    return taken


@settings(max_examples=400, deadline=None)
@given(document=payload)
def test_any_line_gives_the_generic_decoders_spans_or_is_left_to_it(document: Any) -> None:
    assert_same_as_generic(document)


@settings(max_examples=300, deadline=None)
@given(document=good_payload)
def test_well_formed_lines_are_taken_and_give_the_generic_decoders_spans(document: Any) -> None:
    line = json.dumps(document).encode()
    for wanted in WANTS.values():
        assert LineDecoder(ResourceCache(), wanted).decode(line) is not None
    assert assert_same_as_generic(document)


@pytest.mark.parametrize("shape", ["racing", "odd ids", "year 10000", "end before start", "negative", "huge"])
def test_hostile_files_read_the_same_with_and_without_the_typed_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    makers = {
        "odd ids": hostile.odd_ids,
        "year 10000": hostile.year_10000,
        "end before start": hostile.end_before_start,
        "negative": hostile.negative_times,
        "huge": hostile.huge_number_times,
    }
    path = tmp_path / "spans.jsonl"
    if shape == "racing":
        path.write_text(hostile.racing_line() * 3 + "{}\n" + hostile.racing_line()[:-20] + "\n")
    else:
        makers[shape](path)

    def read() -> tuple[list[Span], list[str], str]:
        warnings: list[str] = []
        spans: list[Span] = []
        try:
            spans.extend(FileSource([str(path)], warnings.append).spans(race_wanted))
        except InputError as exc:
            return spans, warnings, str(exc)
        return spans, warnings, ""

    monkeypatch.setattr(file_source, "_LineDecoder", LineDecoder)
    typed = read()
    monkeypatch.setattr(file_source, "_LineDecoder", None)
    assert typed == read()


def test_a_collector_archive_takes_the_typed_path_on_every_line(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    import archive

    path = tmp_path / "archive.jsonl"
    archive.generate(str(path), 3000, seed=3)
    for wanted in WANTS.values():
        decoder = LineDecoder(ResourceCache(), wanted)
        for line in path.read_bytes().splitlines():
            typed = decoder.decode(line)
            assert typed is not None
            assert typed == generic(line, orjson.loads, wanted)
