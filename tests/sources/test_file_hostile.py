"""The file source on damaged and hostile input: every outcome is spans, a warning or an InputError."""

from __future__ import annotations

import gzip
import json
import os
import struct
import time
from pathlib import Path

import pytest
import zstandard

from moduletrace.errors import InputError
from moduletrace.sources import file as file_source
from moduletrace.sources.file import FileSource, expand
from tests.reliability import hostile


def read(path: Path) -> tuple[list[str], list[str]]:
    """(span ids, warnings) of one file."""
    warnings: list[str] = []
    return [s.span_id for s in FileSource([str(path)], warnings.append).spans()], warnings


def test_a_corrupt_zstd_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corrupt zstd data"):
        read(hostile.corrupt_zstd_file(tmp_path / "spans.zst"))


def test_a_corrupt_zstd_record_is_skipped_with_a_warning(tmp_path: Path) -> None:
    good = hostile.racing_line().encode()
    bad = b"\x28\xb5\x2f\xfd" + b"\x13" * 40
    path = tmp_path / "records"
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in (good, bad, good)))
    ids, warnings = read(path)
    assert len(ids) == 6 and len(warnings) == 1 and "record 2 skipped: corrupt zstd data" in warnings[0]
    with pytest.raises(InputError, match="nothing could be decoded"):
        read(hostile.corrupt_zstd_frame(tmp_path / "only-bad"))


@pytest.mark.parametrize("maker", [hostile.truncated_gzip, hostile.truncated_zstd], ids=["gzip", "zstd"])
def test_a_compressed_file_cut_short_keeps_what_came_before_the_cut_with_one_warning(
    tmp_path: Path, maker: object
) -> None:
    path = maker(tmp_path / "spans")  # type: ignore[operator]
    ids, warnings = read(path)
    assert 0 < len(ids) < 6000 and len(ids) % 3 == 0  # whole lines only, not all 2000 of them
    assert warnings == [f"{path}: last record skipped: cut short (collector killed mid-write?)"]


def test_a_zstd_file_cut_at_a_line_boundary_is_still_reported_cut(tmp_path: Path) -> None:
    first, second = (zstandard.ZstdCompressor().compress(hostile.racing_line().encode() * n) for n in (50, 2))
    whole = tmp_path / "whole.zst"
    whole.write_bytes(first + second)
    assert len(read(whole)[0]) == 156
    cut = tmp_path / "cut.zst"
    cut.write_bytes(first + second[:-3])  # the second frame was being written: whole lines before it
    ids, warnings = read(cut)
    assert len(ids) == 150 and warnings == [f"{cut}: last record skipped: cut short (collector killed mid-write?)"]


def test_corrupt_gzip_data_is_an_input_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(hostile.racing_line().encode() * 50))
    data[20:40] = b"\xff" * 20
    path = tmp_path / "spans.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError):
        read(path)


def test_a_line_longer_than_the_limit_is_skipped_without_being_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_source, "MAX_RECORD_BYTES", 4096)
    good = hostile.racing_line()
    for name, opener in (("plain", open), ("gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wt") as out:  # type: ignore[operator]
            out.write(good + '{"resourceSpans": [], "x": "' + " " * 100_000 + '"}\n' + good)
        ids, warnings = read(path)
        assert len(ids) == 6
        assert warnings == [f"{path}: record 2 skipped: longer than 0 MiB (the limit), not read"]


def test_a_gzip_bomb_is_read_past_in_bounded_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_source, "MAX_RECORD_BYTES", 2**20)
    path = hostile.gzip_bomb(tmp_path / "bomb.gz", size=64 * 2**20)
    with pytest.raises(InputError, match="nothing could be decoded"):
        read(path)


def test_a_length_prefixed_record_longer_than_the_limit_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_source, "MAX_RECORD_BYTES", 4096)
    good = hostile.racing_line().encode()
    path = tmp_path / "records"
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in (good, b"{" + b" " * 10_000 + b"}", good)))
    ids, warnings = read(path)
    assert len(ids) == 6 and warnings == [f"{path}: record 2 skipped: longer than 0 MiB (the limit), not read"]
    path.write_bytes(struct.pack(">I", 2**31) + b"{}")  # a header claiming 2 GiB, then the end of the file
    with pytest.raises(InputError):
        read(path)


def test_warnings_before_the_first_good_record_are_counted_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text("{}\n" * 500 + hostile.racing_line())
    ids, warnings = read(path)
    assert len(ids) == 3 and len(warnings) == 11
    assert warnings[-1] == f"{path}: 490 more records skipped before the first readable one"


@pytest.mark.parametrize("maker", [hostile.empty_objects, hostile.nul_bytes], ids=["empty-objects", "nul-bytes"])
def test_a_file_of_nothing_but_bad_records_gives_up_early(tmp_path: Path, maker: object) -> None:
    path = maker(tmp_path / "spans")  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(InputError, match="none of the first 1000 records could be decoded"):
        read(path)
    assert time.monotonic() - started < 10


def test_a_file_deleted_during_the_scan_is_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(hostile.racing_line() * 3)
    source = FileSource([str(path)], lambda message: None)
    spans = source.spans()
    first = next(spans)
    path.unlink()
    assert [first, *spans][-1].name == "module_load_db_query"
    assert source.bytes_done == source.bytes_total


def test_a_file_deleted_before_its_turn_is_an_input_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(hostile.racing_line())
    b.write_text(hostile.racing_line())
    spans = FileSource([str(a), str(b)], lambda message: None).spans()
    next(spans)
    b.unlink()
    with pytest.raises(InputError, match="No such file"):
        list(spans)


def test_directories_fifos_and_devices_are_named_for_what_they_are(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, said in ((tmp_path, "is a directory"), (fifo, "is a named pipe (FIFO)"), ("/dev/null", "is a device")):
        with pytest.raises(InputError, match=r"\(FIFO\)" if "FIFO" in said else said) as caught:
            expand([str(path)])
        assert "no such file" not in str(caught.value) and said in str(caught.value)
    with pytest.raises(InputError, match="no such file"):
        expand([str(tmp_path / "missing.jsonl")])


def test_json_lines_of_many_shapes_never_escape_as_anything_but_input_errors(tmp_path: Path) -> None:
    shapes = [
        '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps(json.loads(hostile.racing_line())).replace('"5000"', "1e999"),
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": NaN}]}]}]}',
    ]
    for n, shape in enumerate(shapes):
        path = tmp_path / f"{n}.jsonl"
        path.write_text(shape + "\n")
        with pytest.raises(InputError):
            read(path)
