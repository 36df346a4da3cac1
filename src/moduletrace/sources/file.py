"""Spans from files the collector ``file`` exporter (or ``moduletrace.configure(file=...)``) wrote.

Accepted, detected from the bytes, not the name:

- OTLP JSON lines (``format: json``): one ``{"resourceSpans": [...]}`` per line;
- the same, gzip-compressed, or zstd-compressed as a whole (``exporter.file.nativeCompression``);
- length-prefixed records (``format: proto``, or ``json`` with ``compression: zstd``): a 4-byte
  big-endian length, then the payload, zstd-compressed or not, OTLP JSON or OTLP protobuf.

Files are streamed: a line is decoded, its wanted spans handed on, and it is dropped. A last
line cut short (a collector killed mid-write) is skipped with a warning; so is a corrupt line in
the middle, with its number. A file in which no line decodes is an input error.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, cast

from moduletrace.errors import InputError
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.spans import ResourceCache, Span, Wanted

_loads: Callable[[bytes], Any]
try:  # orjson parses OTLP JSON twice as fast as the standard library; optional (moduletrace[fast])
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


def expand(patterns: Sequence[str]) -> list[str]:
    """Paths for ``--file`` arguments (globs allowed); an argument that matches nothing is an error."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"--file {pattern}: no file matches")
        for path in matches:
            if not os.path.isfile(path):
                raise InputError(f"--file {path}: no such file")
            paths.append(path)
    return paths


class FileSource:
    """Reads spans from files; ``warn`` receives one line per skipped record."""

    def __init__(self, patterns: Sequence[str], warn: Callable[[str], None]) -> None:
        self.paths = expand(patterns)
        self.warn = warn
        self.bytes_total = sum(os.path.getsize(p) for p in self.paths)
        self.bytes_done = 0
        self.resources = ResourceCache()
        self.partial: list[str] = []

    def describe(self) -> str:
        return ", ".join(self.paths)

    def spans_for_modules(
        self, module_ids: Sequence[str], since_ns: int, wanted: Wanted | None = None
    ) -> Iterator[Span]:
        """Files are read whole: there is nothing more to look up."""
        return iter(())

    def trace_url(self, trace_id: str) -> str | None:
        return None

    def progress(self) -> str:
        return f"{100 * self.bytes_done / max(self.bytes_total, 1):.0f}% of {self.bytes_total / 1e6:.0f} MB"

    def close(self) -> None:
        pass

    def spans(self, wanted: Wanted | None = None) -> Iterator[Span]:
        for path in self.paths:
            yield from self._read(path, wanted)

    def _read(self, path: str, wanted: Wanted | None) -> Iterator[Span]:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"--file {path}: {exc.strerror}") from None
        done_before = self.bytes_done
        try:
            head = raw.read(4)
            raw.seek(0)
            if head[:2] == _GZIP:
                records = _lines(cast(IO[bytes], gzip.open(raw)))
            elif head == _ZSTD:
                records = _lines(_zstd_stream(raw, path))
            elif head.lstrip()[:1] in (b"{", b"") or head[:1] in (b" ", b"\n", b"\r", b"\t"):
                records = _lines(raw)
            else:
                records = _frames(raw)
            decoded = 0
            pending: list[str] = []  # warnings wait for a first good record: a wrong file is one error
            for number, record, last in records:
                self.bytes_done = done_before + raw.tell()
                try:
                    payload = _payload(record)
                    spans = decode(payload, self.resources, wanted)
                except (ValueError, FormatError, UnicodeDecodeError, EOFError, OSError) as exc:
                    where = "last record" if last else f"record {number}"
                    reason = "cut short (collector killed mid-write?)" if last else str(exc)[:200]
                    message = f"{path}: {where} skipped: {reason}"
                    if decoded:
                        self.warn(message)
                    else:
                        pending.append(message)
                    continue
                decoded += 1
                for message in pending:
                    self.warn(message)
                pending.clear()
                yield from spans
            if decoded == 0 and pending:
                raise InputError(f"--file {path}: not OTLP JSON lines or OTLP records (nothing could be decoded)")
        except (OSError, EOFError) as exc:
            raise InputError(f"--file {path}: {exc}") from None
        finally:
            raw.close()
            self.bytes_done = done_before + os.path.getsize(path)


def _payload(record: bytes) -> Any:
    if record[:4] == _ZSTD:
        record = _zstd_decompress(record)
    if record[:1] == b"{" or record[:64].lstrip()[:1] == b"{":  # no copy of a whole line to look at its start
        return _loads(record)
    return _proto_to_dict(record)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line, is-last) for each non-empty line; the last flag marks a possible cut."""
    previous: tuple[int, bytes] | None = None
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        if previous is not None:
            yield previous[0], previous[1], False
        previous = (number, line)
    if previous is not None:
        # Only a last line without its newline can be a partial write.
        yield previous[0], previous[1], not previous[1].endswith(b"\n")


def _frames(stream: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    number = 0
    while True:
        header = stream.read(4)
        if not header:
            return
        number += 1
        if len(header) < 4:
            yield number, b"", True
            return
        (size,) = struct.unpack(">I", header)
        body = stream.read(size)
        yield number, body, len(body) < size
        if len(body) < size:
            return


def _zstd_module() -> Any:
    try:
        import zstandard
    except ImportError:
        raise InputError(
            "reading zstd-compressed files needs the zstandard package: pip install 'moduletrace[zstd]'"
        ) from None
    return zstandard


def _zstd_stream(raw: IO[bytes], path: str) -> IO[bytes]:
    return io.BufferedReader(_zstd_module().ZstdDecompressor().stream_reader(raw, read_across_frames=True))


def _zstd_decompress(record: bytes) -> bytes:
    reader = _zstd_module().ZstdDecompressor().stream_reader(io.BytesIO(record), read_across_frames=True)
    return reader.read()  # type: ignore[no-any-return]


def _proto_to_dict(record: bytes) -> Any:
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(record)
    except DecodeError as exc:
        raise FormatError(f"neither OTLP JSON nor OTLP protobuf: {exc}") from None
    if not request.resource_spans and record:
        raise FormatError("neither OTLP JSON nor OTLP protobuf")
    return json_format.MessageToDict(request)


def read_spans(paths: Iterable[str], wanted: Wanted | None = None) -> list[Span]:
    """All wanted spans of the given files (tests and small tools; the command streams)."""
    warnings: list[str] = []
    return list(FileSource(list(paths), warnings.append).spans(wanted))
