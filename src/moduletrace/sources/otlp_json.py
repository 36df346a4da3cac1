"""OTLP JSON (``{"resourceSpans": [...]}``) to normalised spans, for every source that speaks it.

The collector's file exporter and Jaeger's api_v3 write the OTLP JSON mapping (hex ids, integer
enums); Tempo's trace endpoints write the plain proto3 JSON mapping (base64 ids, enum names).
One decoder takes both: an id of 32 (trace) or 16 (span) characters is hex, anything else base64;
an enum given as a name is looked up.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from moduletrace.spans import BARE, Link, Resource, ResourceCache, Span, Wanted

_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class FormatError(ValueError):
    """The payload is not OTLP JSON."""


def decode_id(value: Any, hex_length: int) -> str:
    """A trace (32) or span (16) id, from hex or base64, as lower-case hex; '' when absent."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise FormatError(f"id is not a string: {value!r}")
    if len(value) == hex_length:
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if len(value) < hex_length and all(c in "0123456789abcdefABCDEF" for c in value):
            return value.lower().zfill(hex_length)  # hex with leading zeros stripped
        raise FormatError(f"id is neither hex nor base64: {value!r}") from None
    return raw.hex().zfill(hex_length)


def any_value(value: Mapping[str, Any]) -> Any:
    """Decode an OTLP ``AnyValue`` object to a Python value."""
    if not isinstance(value, Mapping):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes(items: Any) -> dict[str, Any]:
    if not items:
        return {}
    out = {}
    for item in items:
        value = item.get("value") or {}
        # Most attribute values are strings: take them without the general decoder.
        text = value.get("stringValue")
        out[item["key"]] = text if text is not None else any_value(value)
    return out


def _enum(value: Any, names: Mapping[str, int]) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value in names:
            return names[value]
        if value.isdigit():
            return int(value)
    return 0


def decode(payload: Mapping[str, Any], resources: ResourceCache, wanted: Wanted | None = None) -> list[Span]:
    """The spans of one OTLP JSON traces payload (``resourceSpans`` or Tempo's ``batches``).

    A list, not a generator: a payload is decoded whole or not at all (a malformed one raises
    FormatError before any of its spans is used), and appending is cheaper than yielding.
    """
    if not isinstance(payload, Mapping):
        raise FormatError("not a JSON object")
    resource_spans = payload.get("resourceSpans")
    if resource_spans is None:
        resource_spans = payload.get("batches")
    if resource_spans is None:
        raise FormatError("no resourceSpans")
    out: list[Span] = []
    append = out.append
    try:
        for entry in resource_spans:
            resource: Resource | None = None
            for scope_spans in entry.get("scopeSpans") or entry.get("instrumentationLibrarySpans") or ():
                for raw in scope_spans.get("spans") or ():
                    # Subscripts, not .get(): this loop runs for every span of an archive. A field the
                    # encoder omitted (zero or empty values are left out) takes the slower path.
                    try:
                        name = raw["name"]
                        kind = raw["kind"]
                    except KeyError:
                        name = raw.get("name", "")
                        kind = raw.get("kind", 0)
                    if kind.__class__ is not int:
                        kind = _enum(kind, _KINDS)
                    want = True if wanted is None else wanted(name, kind)
                    if not want:
                        continue
                    if resource is None:
                        resource = resources.get(attributes((entry.get("resource") or {}).get("attributes")))
                    trace_id = raw["traceId"]
                    trace_id = trace_id.lower() if len(trace_id) == 32 else decode_id(trace_id, 32)
                    span_id = raw["spanId"]
                    span_id = span_id.lower() if len(span_id) == 16 else decode_id(span_id, 16)
                    try:
                        parent = raw["parentSpanId"]
                        parent = parent.lower() if len(parent) == 16 else decode_id(parent, 16)
                    except KeyError:
                        parent = ""
                    try:
                        start_ns = int(raw["startTimeUnixNano"])
                        end_ns = int(raw["endTimeUnixNano"])
                    except KeyError:
                        start_ns = int(raw.get("startTimeUnixNano") or 0)
                        end_ns = int(raw.get("endTimeUnixNano") or 0)
                    if want is BARE:
                        append(
                            Span(
                                trace_id, span_id, parent, name, kind, start_ns, end_ns, 0, "", _NO_ATTRIBUTES, resource
                            )
                        )
                        continue
                    status = raw.get("status") or _NO_STATUS
                    code = status.get("code", 0)
                    links = raw.get("links")
                    append(
                        Span(
                            trace_id,
                            span_id,
                            parent,
                            name,
                            kind,
                            start_ns,
                            end_ns,
                            code if code.__class__ is int else _enum(code, _STATUS),
                            status.get("message", ""),
                            attributes(raw.get("attributes")),
                            resource,
                            _links(links) if links else (),
                        )
                    )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise FormatError(f"malformed OTLP JSON: {type(exc).__name__}: {exc}") from exc
    return out


_NO_STATUS: dict[str, Any] = {}
_NO_ATTRIBUTES: Mapping[str, Any] = {}


def _links(links: Any) -> tuple[Link, ...]:
    return tuple(
        Link(decode_id(link["traceId"], 32), decode_id(link["spanId"], 16), attributes(link.get("attributes")))
        for link in links
    )
