"""Prototype: a typed OTLP JSON decoder (msgspec Structs holding only the fields the analysis reads).

    python benchmarks/msgspec_decode.py races --file ARCHIVE --format json   # the command, this decoder

Runs the real command (``moduletrace.cli.main.main``) with the file source's parse + decode step
replaced by :func:`decode_line`: one ``msgspec.json.Decoder`` call per line straight from bytes to
Structs (no intermediate dicts for the fields skipped), attributes kept as raw JSON and decoded
only for the spans the consumer wants whole. Anything this fast path does not expect (Tempo's
enum names, base64 ids, array/kvlist values, a malformed line) falls back to the shipped path
(``orjson.loads`` + ``otlp_json.decode``), so answers and warnings are the command's.

The source change it stands for: in ``sources/file.py``, ``_payload`` + ``decode`` of a JSON
line become one call to a decoder like this one, kept in ``sources/otlp_json.py`` next to the
generic one (which Jaeger and Tempo keep using).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import msgspec

from moduletrace.sources import file as file_source
from moduletrace.sources import otlp_json
from moduletrace.spans import BARE, Link, ResourceCache, Span, Wanted


class Value(msgspec.Struct):
    stringValue: str | None = None
    intValue: int | None = None  # OTLP JSON writes int64 as a string: lax decoding converts it
    boolValue: bool | None = None
    doubleValue: float | None = None
    bytesValue: str | None = None
    arrayValue: msgspec.Raw = msgspec.Raw(b"")  # b"": absent (a union of Raw and None is not allowed)
    kvlistValue: msgspec.Raw = msgspec.Raw(b"")


class KeyValue(msgspec.Struct):
    key: str
    value: Value | None = None


class Status(msgspec.Struct):
    code: int = 0
    message: str = ""


class RawLink(msgspec.Struct):
    traceId: str = ""
    spanId: str = ""
    attributes: list[KeyValue] = []


class RawSpan(msgspec.Struct):
    traceId: str = ""
    spanId: str = ""
    parentSpanId: str = ""
    name: str = ""
    kind: int = 0
    startTimeUnixNano: int = 0
    endTimeUnixNano: int = 0
    attributes: msgspec.Raw = msgspec.Raw(b"")  # decoded only for spans wanted whole; b"": absent
    status: Status | None = None
    links: list[RawLink] | None = None


class ScopeSpans(msgspec.Struct):
    spans: list[RawSpan] = []


class RawResource(msgspec.Struct):
    attributes: list[KeyValue] = []


class ResourceSpans(msgspec.Struct):
    resource: RawResource | None = None
    scopeSpans: list[ScopeSpans] = []


class Payload(msgspec.Struct):
    resourceSpans: list[ResourceSpans]


_payload_decoder = msgspec.json.Decoder(Payload, strict=False)
_attributes_decoder = msgspec.json.Decoder(list[KeyValue], strict=False)
_NO_ATTRIBUTES: dict[str, Any] = {}
_SHIPPED_PAYLOAD: Callable[[bytes], Any] = file_source._payload  # orjson (or json) loads


class _Fallback(Exception):
    pass


def _value(value: Value | None) -> Any:
    if value is None:
        return None
    if value.stringValue is not None:
        return value.stringValue
    if value.boolValue is not None:
        return value.boolValue
    if value.intValue is not None:
        return value.intValue
    if value.doubleValue is not None:
        return value.doubleValue
    if value.bytesValue is not None:
        return value.bytesValue
    if value.arrayValue or value.kvlistValue:
        raise _Fallback  # rare: the generic decoder knows nested values
    return None


def _attributes(items: list[KeyValue]) -> dict[str, Any]:
    out = {}
    for item in items:
        value = item.value
        text = value.stringValue if value is not None else None
        out[item.key] = text if text is not None else _value(value)
    return out


def decode_line(record: bytes, resources: ResourceCache, wanted: Wanted | None) -> list[Span]:
    """The spans of one OTLP JSON line, as ``otlp_json.decode(orjson.loads(record), ...)`` returns them."""
    try:
        return _decode(record, resources, wanted)
    except (msgspec.DecodeError, _Fallback):
        return otlp_json.decode(_SHIPPED_PAYLOAD(record), resources, wanted)


def _decode(record: bytes, resources: ResourceCache, wanted: Wanted | None) -> list[Span]:
    payload = _payload_decoder.decode(record)
    out: list[Span] = []
    append = out.append
    for entry in payload.resourceSpans:
        resource = None
        for scope in entry.scopeSpans:
            for raw in scope.spans:
                name = raw.name
                kind = raw.kind
                want = True if wanted is None else wanted(name, kind)
                if not want:
                    continue
                if resource is None:
                    resource = resources.get(_attributes(entry.resource.attributes) if entry.resource else {})
                trace_id, span_id, parent = raw.traceId, raw.spanId, raw.parentSpanId
                if len(trace_id) != 32 or len(span_id) != 16 or (parent and len(parent) != 16):
                    raise _Fallback  # base64 or stripped ids: the generic decoder's job
                if want is BARE:
                    append(
                        Span(
                            trace_id.lower(),
                            span_id.lower(),
                            parent.lower(),
                            name,
                            kind,
                            raw.startTimeUnixNano,
                            raw.endTimeUnixNano,
                            0,
                            "",
                            _NO_ATTRIBUTES,
                            resource,
                        )
                    )
                    continue
                status = raw.status
                attributes = raw.attributes
                links = raw.links
                append(
                    Span(
                        trace_id.lower(),
                        span_id.lower(),
                        parent.lower(),
                        name,
                        kind,
                        raw.startTimeUnixNano,
                        raw.endTimeUnixNano,
                        status.code if status is not None else 0,
                        status.message if status is not None else "",
                        _attributes(_attributes_decoder.decode(attributes)) if attributes else {},
                        resource,
                        tuple(
                            Link(
                                otlp_json.decode_id(link.traceId, 32),
                                otlp_json.decode_id(link.spanId, 16),
                                _attributes(link.attributes),
                            )
                            for link in links
                        )
                        if links
                        else (),
                    )
                )
    return out


def install() -> None:
    """Route the file source's JSON lines through :func:`decode_line` (other records as before)."""
    shipped_decode = file_source.decode

    def payload(record: bytes) -> Any:
        if record[:1] == b"{":
            return record  # decoded below, straight from bytes
        return _SHIPPED_PAYLOAD(record)

    def decode(payload: Any, resources: ResourceCache, wanted: Wanted | None = None) -> list[Span]:
        if isinstance(payload, bytes):
            return decode_line(payload, resources, wanted)
        return shipped_decode(payload, resources, wanted)

    file_source._payload = payload  # type: ignore[assignment]
    file_source.decode = decode  # type: ignore[assignment]


if __name__ == "__main__":
    install()
    from moduletrace.cli.main import main

    sys.exit(main(sys.argv[1:]))
