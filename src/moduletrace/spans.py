"""The normalised span every source produces and the analysis consumes, whatever the wire format.

Sources (file, Jaeger, Tempo) turn their formats into :class:`Span`; the analysis never sees a
wire format. IDs are lower-case hex (32 and 16 characters), times are Unix nanoseconds, ``kind``
and ``status_code`` use OTLP's integer enums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

KIND_UNSPECIFIED: Final = 0
KIND_INTERNAL: Final = 1
KIND_SERVER: Final = 2
KIND_CLIENT: Final = 3
KIND_PRODUCER: Final = 4
KIND_CONSUMER: Final = 5

STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a span was recorded: which service, which process, which host (its clock)."""

    service_name: str = ""
    instance_id: str = ""  # service.instance.id: one process
    host: str = ""  # host.id, else host.name: one clock

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> Resource:
        return cls(
            service_name=str(attributes.get("service.name") or ""),
            instance_id=str(attributes.get("service.instance.id") or ""),
            host=str(attributes.get("host.id") or attributes.get("host.name") or ""),
        )

    @property
    def clock(self) -> str:
        """A key naming this resource's clock: its host, else its process, else its service."""
        if self.host:
            return f"host:{self.host}"
        if self.instance_id:
            return f"process:{self.instance_id}"
        return f"service:{self.service_name}"

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


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: Mapping[str, Any]
    resource: Resource
    links: tuple[Link, ...] = ()


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
