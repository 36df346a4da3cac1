"""OTLP JSON lines straight from bytes to spans with msgspec (``moduletrace[fast]``), for the file source.

One msgspec call per line decodes into :class:`msgspec.Struct` types that hold only what
:func:`moduletrace.sources.otlp_json.decode` reads; the rest of the line is skipped without being
built, and a span is turned into a :class:`~moduletrace.spans.Span` only when the consumer wants it.
A span's attributes are decoded then, once per distinct text: spans with the same attributes (a
database client's system and operation) share one dict, which no consumer writes to.

The generic decoder stays the reference. This one takes the common shape only (ids of the hex
length, integer kinds 0-5, times present, attribute values that are not arrays or key-value lists)
and types every field narrowly, so anything else (a missing time, an enum name, a null where a
string belongs, a malformed line) makes :meth:`LineDecoder.decode` return None: the caller then
parses the line and hands it to the generic decoder, which decides, warns or raises as it always
did. Both paths give equal spans for every line this one accepts (tests/sources/test_typed_decoder.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from moduletrace.sources.otlp_json import _STATUS, _enum, decode_id
from moduletrace.spans import BARE, CheckedSpans, Link, Resource, ResourceCache, Span, Wanted

# JSON integers in int64 (orjson makes floats of those past 64 bits, json.loads keeps them exact):
# outside it the generic decoder's parser decides.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Value(Struct, gc=False):
    stringValue: str | UnsetType = UNSET
    intValue: str | _Int64 | UnsetType = UNSET  # int64 is a string in OTLP JSON, a number elsewhere
    boolValue: bool | UnsetType = UNSET
    doubleValue: float | UnsetType = UNSET
    bytesValue: str | UnsetType = UNSET
    arrayValue: Raw = Raw(b"")  # present (non-empty): left to the generic decoder
    kvlistValue: Raw = Raw(b"")


class _KeyValue(Struct, gc=False):
    key: str
    value: _Value = msgspec.field(default_factory=_Value)  # absent: None, as the generic decoder says


class _Status(Struct, gc=False):
    code: _Int64 | str = 0
    message: str = ""


class _Link(Struct, gc=False):
    traceId: str
    spanId: str
    attributes: list[_KeyValue] | None = None


class _Span(Struct, gc=False):
    traceId: str
    spanId: str
    parentSpanId: str = ""
    name: str = ""
    kind: Literal[0, 1, 2, 3, 4, 5] = 0
    startTimeUnixNano: str | _Int64 | UnsetType = UNSET
    endTimeUnixNano: str | _Int64 | UnsetType = UNSET
    attributes: Raw = Raw(b"")  # decoded only for spans wanted whole, once per distinct text
    status: _Status | None = None
    links: list[_Link] | None = None


class _ScopeSpans(Struct, gc=False):
    spans: list[_Span] | None = None


class _Resource(Struct, gc=False):
    attributes: list[_KeyValue] | None = None


class _ResourceSpans(Struct, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans] | None = None
    instrumentationLibrarySpans: list[_ScopeSpans] | None = None


class _Payload(Struct, gc=False):
    resourceSpans: list[_ResourceSpans] | None = None
    batches: list[_ResourceSpans] | None = None


_payload = msgspec.json.Decoder(_Payload).decode
_key_values = msgspec.json.Decoder(list[_KeyValue]).decode
_DecodeError = msgspec.DecodeError  # ValidationError is a DecodeError
_NO_ATTRIBUTES: dict[str, Any] = {}
#: Distinct span names remembered per kind with what ``wanted`` said of them (names are few in
#: practice; a writer that puts ids in span names stops adding here, and ``wanted`` is asked).
_MAX_DECISIONS = 4096
#: Attribute texts remembered with their decoded dict, and the longest remembered.
_MAX_ATTRIBUTE_TEXTS = 4096
_MAX_ATTRIBUTE_TEXT = 512
_new_span = tuple.__new__  # Span's own __new__ is a Python function: a frame per span
_HEX_DIGITS = b"0123456789abcdef"
_MAX_NS = 2**64 - 1  # as the scan: OTLP times are unsigned 64-bit nanoseconds


class _Unusual(Exception):
    """A shape this decoder leaves to the generic one."""


class LineDecoder:
    """Decodes OTLP JSON lines for one consumer (``wanted``), remembering its answer per span name."""

    def __init__(self, resources: ResourceCache, wanted: Wanted | None) -> None:
        self.resources = resources
        self.wanted = wanted
        self._decisions: list[dict[str, object]] = [{} for _ in range(6)]
        self._attributes: dict[bytes, dict[str, Any]] = {}

    def decode(self, line: bytes) -> CheckedSpans | None:
        """The wanted spans of one line, as the generic decoder would give them; None: ask it.

        Spans it gives are also as the scan wants them (times in range, ids lower-case hex): a line
        with one that is not goes to the generic decoder too, and the scan says which it rejects.
        """
        try:
            payload = _payload(line)
            entries = payload.resourceSpans
            if entries is None:
                entries = payload.batches
                if entries is None:
                    return None
            out = CheckedSpans()
            ids: list[str] = []
            for entry in entries:
                self._entry(entry, out, ids)
            # Lengths were checked span by span; the characters here, all at once.
            if "".join(ids).encode("ascii").translate(None, _HEX_DIGITS):
                return None
            return out
        except (
            _DecodeError,
            _Unusual,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            OverflowError,
            RecursionError,
        ):  # UnicodeEncodeError is a ValueError
            return None

    def _entry(self, entry: _ResourceSpans, out: list[Span], ids: list[str]) -> None:
        resource: Resource | None = None
        decisions = self._decisions
        known = self._attributes
        append = out.append
        for scope in entry.scopeSpans or entry.instrumentationLibrarySpans or ():
            for raw in scope.spans or ():
                kind = raw.kind
                name = raw.name
                want = decisions[kind].get(name)
                if want is None:
                    want = self._decide(name, kind)
                if not want:
                    continue
                if resource is None:
                    attributes = entry.resource.attributes if entry.resource is not None else None
                    resource = self.resources.get(_attributes(attributes) if attributes else _NO_ATTRIBUTES)
                trace_id = raw.traceId
                span_id = raw.spanId
                parent = raw.parentSpanId
                start = int(raw.startTimeUnixNano)  # type: ignore[arg-type]  # UNSET (absent): TypeError
                end = int(raw.endTimeUnixNano)  # type: ignore[arg-type]
                if (
                    len(trace_id) != 32
                    or len(span_id) != 16
                    or (parent and len(parent) != 16)
                    or not 0 < start <= end <= _MAX_NS
                ):
                    raise _Unusual  # base64 or shortened ids, a time the scan would reject
                ids += (trace_id, span_id, parent)  # lower-case hex, checked once per line: no .lower()
                if want is BARE:
                    append(
                        _new_span(
                            Span,
                            (trace_id, span_id, parent, name, kind, start, end, 0, "", _NO_ATTRIBUTES, resource, ()),
                        )
                    )
                    continue
                status = raw.status
                if status is None:
                    code: Any = 0
                    message = ""
                else:
                    code = status.code
                    if code.__class__ is not int:
                        code = _enum(code, _STATUS)
                    message = status.message
                encoded = raw.attributes
                if encoded:
                    # Spans of one kind often carry the same attributes (a database client's
                    # system and operation): one dict for each text, shared (a Mapping: read only).
                    text = bytes(encoded)
                    decoded = known.get(text)
                    if decoded is None:
                        decoded = _attributes(_key_values(text))
                        if len(known) < _MAX_ATTRIBUTE_TEXTS and len(text) <= _MAX_ATTRIBUTE_TEXT:
                            known[text] = decoded
                else:
                    decoded = _NO_ATTRIBUTES
                links = raw.links
                append(
                    _new_span(
                        Span,
                        (
                            trace_id,
                            span_id,
                            parent,
                            name,
                            kind,
                            start,
                            end,
                            code,
                            message,
                            decoded,
                            resource,
                            _links(links) if links else (),
                        ),
                    )
                )

    def _decide(self, name: str, kind: int) -> object:
        want = True if self.wanted is None else self.wanted(name, kind)
        known = self._decisions[kind]
        if len(known) < _MAX_DECISIONS:
            known[name] = want
        return want


def _attributes(items: list[_KeyValue]) -> dict[str, Any]:
    # Most values are strings: taken here; the others go through _other.
    return {item.key: text if (text := item.value.stringValue) is not UNSET else _other(item.value) for item in items}


def _other(value: _Value) -> Any:
    """A value that is not a string, as the generic decoder's ``any_value``."""
    if value.arrayValue or value.kvlistValue:
        raise _Unusual  # nested values: the generic decoder's
    if value.intValue is not UNSET:
        return int(value.intValue)
    if value.boolValue is not UNSET:
        return value.boolValue
    if value.doubleValue is not UNSET:
        return value.doubleValue
    if value.bytesValue is not UNSET:
        return value.bytesValue
    return None


def _links(links: list[_Link]) -> tuple[Link, ...]:
    return tuple(
        Link(
            decode_id(link.traceId, 32),
            decode_id(link.spanId, 16),
            _attributes(link.attributes) if link.attributes else {},
        )
        for link in links
    )
