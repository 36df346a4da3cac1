"""From a creation to a later load: the W3C carrier, parent mode (default) and link mode."""

from __future__ import annotations

import http.client
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import BaseModel, Field

import moduletrace
from moduletrace.instrumentation.propagation import continuing
from tests.conftest import Recorded

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class CarrierModel(BaseModel):
    """A carrier kept in a Pydantic model (a create response, a module's metadata)."""

    traceparent: str
    tracestate: str = ""


class AliasedCarrierModel(BaseModel):
    """Fields under other names, the W3C keys as aliases: read through the model's dump."""

    parent: str = Field(alias="traceparent")


@dataclass
class CarrierRow:
    traceparent: str | None
    tracestate: str | None = None


class DetachedRow:
    """An ORM row whose columns cannot be read any more (its session is closed)."""

    @property
    def traceparent(self) -> str:
        raise RuntimeError("instance is not bound to a session")


def headers(**fields: str) -> http.client.HTTPMessage:
    """Response headers as urllib gives them: they have ``items()`` but are no Mapping."""
    message = http.client.HTTPMessage()
    for name, value in fields.items():
        message[name.title()] = value
    return message


class HeaderBag(Mapping[str, str]):
    """A Mapping that is not a dict (as HTTP header classes are)."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_carrier_holds_the_current_traceparent_and_tracestate(spans: Recorded) -> None:
    with moduletrace.create_start("m-1") as span:
        carrier = moduletrace.carrier()
    ctx = span.get_span_context()
    assert carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert set(carrier) <= {"traceparent", "tracestate"}


def test_carrier_is_empty_without_a_span(spans: Recorded) -> None:
    assert moduletrace.carrier() == {}


def test_carrier_of_a_given_context_holds_that_context_not_the_current_one(spans: Recorded) -> None:
    creation = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(1)
    )
    with trace.get_tracer("http.server").start_as_current_span("POST /modules"):
        carrier = moduletrace.carrier(trace.set_span_in_context(NonRecordingSpan(creation)))
    assert carrier == {"traceparent": TRACEPARENT}


def test_a_context_the_propagator_cannot_read_gives_an_empty_carrier_and_a_logged_internal_error(
    spans: Recorded, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert moduletrace.carrier(object()) == {}  # type: ignore[arg-type]
    (record,) = caplog.records
    assert record.getMessage().startswith("moduletrace: internal error in carrier (AttributeError: ")


def test_load_with_the_carrier_continues_the_creation_trace_and_links_the_current_request(spans: Recorded) -> None:
    with moduletrace.create_start("m-2"):
        carrier = moduletrace.carrier()
    request_tracer = trace.get_tracer("http.server")
    with request_tracer.start_as_current_span("GET /modules/{id}") as request_span:
        with moduletrace.load_request("m-2", parent=carrier):
            with moduletrace.load_db_query("m-2"):
                pass
    create = spans.one("module_create_start")
    load = spans.one("module_load_request")
    assert load.context.trace_id == create.context.trace_id
    assert load.parent.span_id == create.context.span_id
    (link,) = load.links
    assert link.context.span_id == request_span.get_span_context().span_id
    assert link.attributes == {"module.link.type": "request"}
    query = spans.one("module_load_db_query")
    assert query.context.trace_id == create.context.trace_id
    assert query.parent.span_id == load.context.span_id


def test_link_mode_keeps_the_load_in_the_current_trace_and_links_the_creation(spans: Recorded) -> None:
    with moduletrace.create_start("m-3"):
        carrier = moduletrace.carrier()
    with trace.get_tracer("http.server").start_as_current_span("GET") as request_span:
        with moduletrace.load_request("m-3", parent=carrier, as_link=True):
            pass
    create = spans.one("module_create_start")
    load = spans.one("module_load_request")
    assert load.context.trace_id == request_span.get_span_context().trace_id != create.context.trace_id
    (link,) = load.links
    assert (link.context.trace_id, link.context.span_id) == (create.context.trace_id, create.context.span_id)
    assert link.attributes == {"module.link.type": "creation"}


@pytest.mark.parametrize(
    "as_parent",
    [
        lambda sc: TRACEPARENT,
        lambda sc: {"Traceparent": TRACEPARENT},
        lambda sc: trace.set_span_in_context(NonRecordingSpan(sc)),
        lambda sc: sc,
        lambda sc: NonRecordingSpan(sc),
        lambda sc: CarrierModel(traceparent=TRACEPARENT),
        lambda sc: AliasedCarrierModel(traceparent=TRACEPARENT),
        lambda sc: CarrierRow(TRACEPARENT),
        lambda sc: types.SimpleNamespace(traceparent=TRACEPARENT, tracestate="vendor=1"),
        lambda sc: types.SimpleNamespace(traceparent=TRACEPARENT),
        lambda sc: headers(traceparent=TRACEPARENT),
        lambda sc: HeaderBag({"traceparent": TRACEPARENT}),
        lambda sc: types.MappingProxyType({"traceparent": TRACEPARENT}),
    ],
    ids=[
        "traceparent-string",
        "header-case-mapping",
        "context",
        "span-context",
        "span",
        "pydantic-model",
        "pydantic-aliases",
        "dataclass",
        "attributes",
        "traceparent-attribute-only",
        "items-but-no-mapping",
        "mapping-class",
        "mapping-proxy",
    ],
)
def test_parent_accepts_strings_mappings_contexts_span_contexts_and_spans(spans: Recorded, as_parent) -> None:  # type: ignore[no-untyped-def]
    span_context = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(1)
    )
    with moduletrace.load_request("m-4", parent=as_parent(span_context)):
        pass
    load = spans.one("module_load_request")
    assert load.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert load.parent.span_id == 0xB7AD6B7169203331
    assert load.links == ()  # no request was current: nothing to link


def test_decorator_reads_the_parent_from_a_parameter(spans: Recorded) -> None:
    @moduletrace.load_request(parent_param="carrier")
    def load(module_id: str, carrier: dict[str, str]) -> str:
        return "loaded"

    assert load("m-5", {"traceparent": TRACEPARENT}) == "loaded"
    assert spans.one("module_load_request").context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_a_pydantic_carrier_keeps_its_tracestate(spans: Recorded) -> None:
    with moduletrace.load_request("m-7", parent=CarrierModel(traceparent=TRACEPARENT, tracestate="vendor=1")):
        pass
    load = spans.one("module_load_request")
    assert load.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert load.parent is not None
    assert dict(load.context.trace_state) == {"vendor": "1"}


def test_continuing_makes_the_creation_current_for_code_that_propagates_itself(spans: Recorded) -> None:
    with continuing(CarrierModel(traceparent=TRACEPARENT)):
        injected = moduletrace.carrier()  # what a Celery publish or an httpx request would send
        with moduletrace.load_request("m-8"):
            pass
    assert injected["traceparent"] == TRACEPARENT
    assert spans.one("module_load_request").context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert not trace.get_current_span().get_span_context().is_valid  # detached after the block


def test_an_unusable_carrier_is_logged_once_per_type_and_the_load_starts_from_the_current_context(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    unusable: list[object] = [{}, {"traceparent": "garbage"}, "00-000-000-00", 42, CarrierRow(None)]
    for bad in unusable * 2:
        with moduletrace.load_request("m-6", parent=bad):  # type: ignore[arg-type]
            pass
    loads = spans.named("module_load_request")
    assert len(loads) == 10 and all(load.parent is None for load in loads)
    assert [r.getMessage() for r in caplog.records] == [
        f"moduletrace: parent={kind} holds no valid trace context; the span starts from the current context "
        "instead (the detector still matches it by module.id)"
        for kind in ("dict", "str", "int", "CarrierRow")
    ]


def test_an_empty_carrier_starts_the_load_from_the_current_context_without_a_warning(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    # What carrier() returns with tracing off, and a FastAPI ModuleCarrier of a request without headers.
    with moduletrace.load_request("m-12", parent={}):
        pass
    with moduletrace.load_request("m-12", parent={"x-other": "1"}):
        pass
    assert [load.parent for load in spans.named("module_load_request")] == [None, None]
    assert caplog.records == []


def test_a_carrier_object_whose_attributes_raise_is_logged_and_the_load_still_runs(
    spans: Recorded, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    with moduletrace.load_request("m-11", parent=DetachedRow()):  # type: ignore[arg-type]
        pass
    assert spans.one("module_load_request").parent is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (
        "moduletrace: internal error in read carrier (RuntimeError: instance is not bound to a session); "
        "your code still runs, with less telemetry"
    )
    assert messages[1].startswith("moduletrace: parent=DetachedRow holds no valid trace context")
