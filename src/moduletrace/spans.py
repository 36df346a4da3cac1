"""The normalised span every source produces and the analysis consumes, whatever the wire format.

Sources (file, Jaeger, Tempo) turn their formats into :class:`Span`; the analysis never sees a
wire format. IDs are lower-case hex (32 and 16 characters), times are Unix nanoseconds, ``kind``
and ``status_code`` use OTLP's integer enums.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from moduletrace.conventions import HOST_ID, HOST_NAME, PROCESS_PID, SERVICE_INSTANCE_ID, SERVICE_NAME

KIND_UNSPECIFIED: Final = 0
KIND_INTERNAL: Final = 1
KIND_SERVER: Final = 2
KIND_CLIENT: Final = 3
KIND_PRODUCER: Final = 4
KIND_CONSUMER: Final = 5

#: Which spans a consumer wants a source to decode, given (name, kind): falsy to skip the span
#: (early, for speed), BARE for its ids, times, kind and resource only (no attributes, links or
#: status message), anything else truthy for all of it.
Wanted = Callable[[str, int], object]
BARE: Final = "bare"

STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2


@dataclass(frozen=True)
class Resource:
    """Where a span was recorded: which service, which process, which host (its clock)."""

    service_name: str = ""
    instance_id: str = ""  # service.instance.id: one process
    host: str = ""  # host.id, else host.name: one clock
    #: A key naming this resource's clock: its host, else its process, else its service. Computed
    #: once, a plain attribute: the analysis reads it for every client and server span.
    clock: str = field(init=False, repr=False, compare=False)

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> Resource:
        host = str(attributes.get(HOST_ID) or attributes.get(HOST_NAME) or "")
        instance = str(attributes.get(SERVICE_INSTANCE_ID) or "")
        pid = attributes.get(PROCESS_PID)
        if not instance and host and pid:
            instance = f"{host}/pid {pid}"  # what an agent's resource carries: a process on a host
        return cls(service_name=str(attributes.get(SERVICE_NAME) or ""), instance_id=instance, host=host)

    def __post_init__(self) -> None:
        if self.host:
            clock = f"host:{self.host}"
        elif self.instance_id:
            clock = f"process:{self.instance_id}"
        else:
            clock = f"service:{self.service_name}"
        object.__setattr__(self, "clock", clock)

    def shares_clock_with(self, other: Resource) -> str | None:
        """``"same process"`` or ``"same host"`` when timestamps compare exactly, else None."""
        if self.instance_id and self.instance_id == other.instance_id:
            return "same process"
        if self.host and self.host == other.host:
            return "same host"
        return None


@dataclass(frozen=True, slots=True)
class Link:
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


class Span(NamedTuple):
    """One span. A named tuple: sources make millions of these, and tuples are the cheapest to build."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: Mapping[str, Any]  # read only: spans may share one (the typed decoder's)
    resource: Resource
    links: tuple[Link, ...] = ()


class CheckedSpans(list[Span]):
    """Spans a source has already checked as the scan checks every span (times in 1..2**64-1, start
    before end, ids lower-case hex of 32/16 characters): the scan takes them as they come."""

    __slots__ = ()


def normalise_trace_id(value: str) -> str:
    """Lower-case 32-character hex: Tempo strips leading zeros, Jaeger prints 16 when the top half is 0."""
    return value.strip().lower().zfill(32)


def normalise_span_id(value: str) -> str:
    return value.strip().lower().zfill(16)


class ResourceCache:
    """Interns Resource objects: thousands of spans share a handful of resources."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], Resource] = {}

    def get(self, attributes: Mapping[str, Any]) -> Resource:
        resource = Resource.from_attributes(attributes)
        key = (resource.service_name, resource.instance_id, resource.host)
        cached = self._by_key.get(key)
        if cached is None:
            self._by_key[key] = cached = resource
        return cached
