"""Spans from files the collector ``file`` exporter (or ``moduletrace.configure(file=...)``) wrote.

Accepted, detected from the bytes, not the name:

- OTLP JSON lines (``format: json``): one ``{"resourceSpans": [...]}`` per line;
- the same, gzip-compressed, or zstd-compressed as a whole (``exporter.file.nativeCompression``);
- length-prefixed records (``format: proto``, or ``json`` with ``compression: zstd``): a 4-byte
  big-endian length, then the payload, zstd-compressed or not, OTLP JSON or OTLP protobuf.

Files are streamed: a line is decoded, its wanted spans handed on, and it is dropped. A last
line cut short (a collector killed mid-write) is skipped with a warning; so is a corrupt line in
the middle, with its number. A compressed file cut short (gzip or zstd, no end-of-stream marker)
is the same case: what was written before the cut is read, and the cut is one warning. Data that
cannot be decompressed (a corrupt gzip or zstd stream) is an input error, as is a file in which
no line decodes (given up after the first :data:`MAX_FAILURES_BEFORE_FIRST` records).

Every read is bounded: a line or record longer than :data:`MAX_RECORD_BYTES` (decompressed) is
skipped with a warning, read past without being kept.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from moduletrace.errors import InputError
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.spans import ResourceCache, Span, Wanted

if TYPE_CHECKING:
    from moduletrace.sources.otlp_json_typed import LineDecoder

_loads: Callable[[bytes], Any]
try:  # orjson parses OTLP JSON twice as fast as the standard library; optional (moduletrace[fast])
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

_LineDecoder: type[LineDecoder] | None
try:  # msgspec decodes a JSON line straight to the fields the analysis reads (moduletrace[fast])
    from moduletrace.sources.otlp_json_typed import LineDecoder as _LineDecoder
except ImportError:  # pragma: no cover - depends on the environment
    _LineDecoder = None

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"

#: The longest line or record read (after decompression). The collector writes one export batch
#: per line: 8192 spans (the batch processor's default) of a few KB each stay far below it.
MAX_RECORD_BYTES = 64 * 2**20
#: A file whose first this many records all fail to decode is not span data: give up early.
MAX_FAILURES_BEFORE_FIRST = 1000
#: Warnings kept while waiting for a first good record (the others are counted).
_PENDING_KEPT = 10
#: Files are read through a buffer this large: a collector's lines are tens of KB to MBs long, and
#: readline on the default 8 KiB buffer costs as much as a fifth of the JSON parse.
_READ_BUFFER = 2**20
#: Compressed input is fed to zstd in pieces this small, which bounds what one call can inflate to.
_ZSTD_INPUT_CHUNK = 2048


def expand(patterns: Sequence[str], flag: str = "--file") -> list[str]:
    """Paths for ``--file`` (or ``flag``) arguments (globs allowed); an argument that matches nothing is an error."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"{flag} {pattern}: no file matches")
        for path in matches:
            _check_regular(path, flag)
            paths.append(path)
    return paths


def _check_regular(path: str, flag: str = "--file") -> None:
    """A regular file, or an InputError saying what the path is instead."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{flag} {path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{flag} {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        what = "is a directory (give the files in it, e.g. a glob like DIR/*.jsonl)"
    elif stat.S_ISFIFO(mode):
        what = "is a named pipe (FIFO), not a file: write its data to a file first"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "is a device, not a file"
    elif stat.S_ISSOCK(mode):
        what = "is a socket, not a file"
    else:
        what = "is not a regular file"
    raise InputError(f"{flag} {path} {what}")


class FileSource:
    """Reads spans from files; ``warn`` receives one line per skipped record."""

    def __init__(self, patterns: Sequence[str], warn: Callable[[str], None]) -> None:
        self.paths = expand(patterns)
        self.warn = warn
        self.bytes_total = sum(_size(p) for p in self.paths)
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
        for batch in self.batches(wanted):
            yield from batch

    def batches(self, wanted: Wanted | None = None) -> Iterator[list[Span]]:
        """The wanted spans of each record (line) in turn."""
        typed = _LineDecoder(self.resources, wanted) if _LineDecoder is not None else None
        for path in self.paths:
            yield from self._read(path, wanted, typed)

    def _read(self, path: str, wanted: Wanted | None, typed: LineDecoder | None) -> Iterator[list[Span]]:
        try:
            raw = open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"--file {path}: {exc.strerror or exc}") from None
        done_before = self.bytes_done
        try:
            records = records_of(raw)
            decoded = failed = skipped = 0
            first_skipped = ""
            pending: list[str] = []  # warnings wait for a first good record: a wrong file is one error
            for number, record, last in records:
                self.bytes_done = done_before + raw.tell()
                try:
                    if record is None:
                        raise FormatError(f"longer than {MAX_RECORD_BYTES // 2**20} MiB (the limit), not read")
                    # The typed decoder takes the usual JSON line; it leaves anything else (and
                    # anything it finds unusual: None) to the parser and the generic decoder.
                    spans: list[Span] | None = (
                        typed.decode(record) if typed is not None and record[:1] == b"{" else None
                    )
                    if spans is None:
                        spans = decode(_payload(record), self.resources, wanted)
                except _RECORD_ERRORS as exc:
                    where = "last record" if last else f"record {number}"
                    reason = "cut short (collector killed mid-write?)" if last else _reason(exc)
                    message = f"{path}: {where} skipped: {reason}"
                    skipped += 1
                    if skipped == 1:
                        first_skipped = message
                    if decoded:
                        self.warn(message)
                        continue
                    failed += 1
                    if len(pending) < _PENDING_KEPT:
                        pending.append(message)
                    if failed >= MAX_FAILURES_BEFORE_FIRST:
                        raise InputError(
                            f"--file {path}: not OTLP JSON lines or OTLP records "
                            f"(none of the first {failed} records could be decoded)"
                        ) from None
                    continue
                decoded += 1
                if pending:
                    for message in pending:
                        self.warn(message)
                    if failed > len(pending):
                        self.warn(f"{path}: {failed - len(pending)} more records skipped before the first readable one")
                    pending.clear()
                yield spans
            if decoded == 0 and pending:
                raise InputError(f"--file {path}: not OTLP JSON lines or OTLP records (nothing could be decoded)")
            if skipped:
                # What was not read may hold a race: finding nothing in the rest proves nothing.
                more = f" ({skipped} records skipped)" if skipped > 1 else ""
                self.partial.append(f"{first_skipped}{more}")
        except _CorruptStream as exc:
            raise InputError(f"--file {path}: {exc}") from None
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"--file {path}: {_reason(exc)}") from None
        finally:
            try:
                size = os.fstat(raw.fileno()).st_size  # the file may be gone from its folder by now
            except (OSError, ValueError):
                size = raw.tell() if not raw.closed else 0
            raw.close()
            self.bytes_done = done_before + size


def records_of(raw: IO[bytes]) -> Iterator[tuple[int, bytes | None, bool]]:
    """The records of an archive file, whichever of the collector's formats it is: JSON lines, plain or
    gzip or whole-file zstd, or length-prefixed (zstd) protobuf records; see :func:`_lines`."""
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == _GZIP:
        return _lines(cast(IO[bytes], gzip.GzipFile(fileobj=raw)))
    if head == _ZSTD:
        return _lines(io.BufferedReader(_ZstdReader(raw)))
    if head.lstrip()[:1] in (b"{", b"") or head[:1] in (b" ", b"\n", b"\r", b"\t"):
        return _lines(raw)
    return _frames(raw)


class _CorruptStream(Exception):
    """Compressed data that cannot be decompressed."""


#: What decoding one record may raise on hostile input (RecursionError: deep nesting without orjson).
_RECORD_ERRORS = (ValueError, FormatError, UnicodeDecodeError, EOFError, OSError, RecursionError, OverflowError)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _payload(record: bytes) -> Any:
    if record[:4] == _ZSTD:
        record = _zstd_decompress(record)
    if record[:1] == b"{" or record[:64].lstrip()[:1] == b"{":  # no copy of a whole line to look at its start
        return _loads(record)
    return _proto_to_dict(record)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None, bool]]:
    """(line number, line, is-last) for each non-empty line; the last flag marks a possible cut.

    A line longer than MAX_RECORD_BYTES comes as None, read past without being kept. A compressed
    stream that ends before its end-of-stream marker ends with an empty last record (a cut).
    """
    previous: tuple[int, bytes | None] | None = None
    readline = stream.readline
    number = 0
    cut = False
    while True:
        try:
            line: bytes | None = readline(MAX_RECORD_BYTES + 1)
        except EOFError:  # gzip or zstd without its end: the writer was killed mid-write
            cut = True
            break
        if not line:
            break
        number += 1
        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
            try:
                while True:  # read past the rest of it, a piece at a time
                    rest = readline(2**20)
                    if not rest or rest.endswith(b"\n"):
                        break
            except EOFError:
                cut = True
            line = None
        elif not line.strip():
            continue
        if previous is not None:
            yield previous[0], previous[1], False
        previous = (number, line)
        if cut:
            break
    if cut:
        if previous is not None:
            yield previous[0], previous[1], False
        yield number + 1, b"", True
    elif previous is not None:
        # Only a last line without its newline can be a partial write.
        last = previous[1]
        yield previous[0], last, last is not None and not last.endswith(b"\n")


def _frames(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None, bool]]:
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
        if size > MAX_RECORD_BYTES:  # skipped, not read: seek past it
            whole = stream.seek(size, io.SEEK_CUR) <= os.fstat(stream.fileno()).st_size
            yield number, None if whole else b"", not whole
            if not whole:
                return
            continue
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


class _ZstdReader(io.RawIOBase):
    """A zstd stream (one or more frames) read a bounded piece at a time.

    Raises EOFError at the end of the input when the last frame is incomplete (a cut, as gzip
    does), and _CorruptStream when the data cannot be decompressed.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._zstd = _zstd_module()
        self._decompressor = self._zstd.ZstdDecompressor()
        self._frame: Any = None
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._done:
            self._fill()
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def _fill(self) -> None:
        if self._frame is not None and self._frame.eof:
            leftover = self._frame.unused_data
            self._frame = None
        else:
            leftover = b""
        data = leftover or self._raw.read(_ZSTD_INPUT_CHUNK)
        if not data:
            self._done = True
            if self._frame is not None:  # a frame begun and never finished
                raise EOFError("zstd stream ended before the end of its frame")
            return
        if self._frame is None:
            self._frame = self._decompressor.decompressobj()
        try:
            self._buffer = self._frame.decompress(data)
        except self._zstd.ZstdError as exc:
            raise _CorruptStream(f"corrupt zstd data ({exc})") from None


def _zstd_decompress(record: bytes) -> bytes:
    """One zstd-compressed record, at most MAX_RECORD_BYTES of it (FormatError otherwise)."""
    reader = io.BufferedReader(_ZstdReader(io.BytesIO(record)))
    try:
        data = reader.read(MAX_RECORD_BYTES + 1)
    except _CorruptStream as exc:
        raise FormatError(str(exc)) from None
    except EOFError:
        raise FormatError("zstd record ends before the end of its frame") from None
    if len(data) > MAX_RECORD_BYTES:
        raise FormatError(f"decompresses to more than {MAX_RECORD_BYTES // 2**20} MiB (the limit)")
    return data


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
