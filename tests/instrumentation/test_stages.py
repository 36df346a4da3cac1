"""The stage helpers: span names, attributes, parentage, status and every callable shape."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode

import moduletrace
from moduletrace.conventions import MAX_MODULE_ID_LENGTH, SPAN_NAMES
from tests.conftest import Recorded

STAGES = list(SPAN_NAMES)


class ModuleNotReady(Exception):
    pass


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_as_context_manager_emits_its_named_span_with_id_and_stage(spans: Recorded, stage: str) -> None:
    with getattr(moduletrace, stage)("m-17") as span:
        assert span.is_recording()
    recorded = spans.one(SPAN_NAMES[stage])
    assert recorded.attributes == {"module.id": "m-17", "module.stage": stage}
    assert recorded.kind is SpanKind.INTERNAL
    assert recorded.status.status_code is StatusCode.UNSET


def test_nested_stages_share_the_trace_and_nest_like_start_as_current_span(spans: Recorded) -> None:
    with moduletrace.create_start("m-1"):
        with moduletrace.db_commit("m-1"):
            pass
        with moduletrace.cache_update("m-1"):
            pass
    create = spans.one("module_create_start")
    for name in ("module_create_db_commit", "module_create_cache_update"):
        child = spans.one(name)
        assert child.context.trace_id == create.context.trace_id
        assert child.parent is not None and child.parent.span_id == create.context.span_id


def test_context_manager_works_with_async_with_and_inside_coroutines(spans: Recorded) -> None:
    async def create() -> None:
        async with moduletrace.create_start("m-2"):
            with moduletrace.db_commit("m-2"):
                await asyncio.sleep(0)

    asyncio.run(create())
    assert spans.one("module_create_db_commit").parent.span_id == spans.one("module_create_start").context.span_id


def test_failure_sets_error_status_event_and_error_type_and_reraises_the_same_object(spans: Recorded) -> None:
    raised = ModuleNotReady("module m-3 not found")
    with pytest.raises(ModuleNotReady) as caught:
        with moduletrace.load_db_query("m-3"):
            raise raised
    assert caught.value is raised
    span = spans.one("module_load_db_query")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "module m-3 not found"
    assert span.attributes[ERROR_TYPE] == f"{__name__}.ModuleNotReady"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == f"{__name__}.ModuleNotReady"
    assert "raise raised" in event.attributes["exception.stacktrace"]


def test_builtin_exceptions_get_their_bare_name_as_error_type(spans: Recorded) -> None:
    with pytest.raises(KeyError):
        with moduletrace.load_db_query("m"):
            raise KeyError("m")
    assert spans.one("module_load_db_query").attributes[ERROR_TYPE] == "KeyError"


def test_secrets_in_exception_messages_are_redacted(spans: Recorded) -> None:
    with pytest.raises(ConnectionError):
        with moduletrace.db_commit("m"):
            raise ConnectionError("cannot reach postgresql://app:hunter2@db:5432/modules (password=hunter2)")
    span = spans.one("module_create_db_commit")
    texts = [span.status.description, *(str(v) for v in span.events[0].attributes.values())]
    assert all("hunter2" not in text for text in texts)
    assert "postgresql://app:***@db:5432/modules" in span.status.description


# --- decorators -------------------------------------------------------------------------------


def test_bare_decorator_takes_the_id_from_the_module_id_parameter(spans: Recorded) -> None:
    @moduletrace.db_commit
    def save(module_id: str, payload: dict[str, Any]) -> str:
        return "saved"

    assert save("m-4", {"secret": "do-not-record"}) == "saved"
    assert save(module_id="m-5", payload={}) == "saved"
    recorded = spans.named("module_create_db_commit")
    assert [s.attributes["module.id"] for s in recorded] == ["m-4", "m-5"]
    assert all("do-not-record" not in str(s.attributes) for s in recorded)


def test_decorator_id_param_names_another_parameter_and_uses_its_default(spans: Recorded) -> None:
    @moduletrace.cache_update(id_param="mid")
    def index(row: object, mid: str = "m-default") -> None:
        return None

    index(object(), "m-6")
    index(object())
    assert [s.attributes["module.id"] for s in spans.named("module_create_cache_update")] == ["m-6", "m-default"]


def test_decorator_id_from_extracts_the_id_from_any_argument(spans: Recorded) -> None:
    class Module:
        def __init__(self, ident: int) -> None:
            self.ident = ident

    @moduletrace.create_start(id_from=lambda module: module.ident)
    def create(module: Module) -> Module:
        return module

    create(Module(7))
    assert spans.one("module_create_start").attributes["module.id"] == "7"


def test_attributes_from_adds_only_what_the_user_asks_for(spans: Recorded) -> None:
    @moduletrace.load_request(attributes_from=lambda module_id, user: {"module.requested_by": user["role"]})
    def load(module_id: str, user: dict[str, str]) -> None:
        return None

    load("m-8", {"role": "editor", "token": "secret-token"})
    attributes = spans.one("module_load_request").attributes
    assert attributes["module.requested_by"] == "editor"
    assert "secret-token" not in str(attributes)


def test_decorated_sync_function_keeps_signature_wrapped_and_return_value(spans: Recorded) -> None:
    def save(module_id: str, *, retries: int = 3) -> int:
        """Save it."""
        return retries

    decorated = moduletrace.db_commit(save)
    assert decorated.__wrapped__ is save
    assert inspect.signature(decorated) == inspect.signature(save)
    assert decorated.__doc__ == "Save it." and decorated.__name__ == "save"
    assert decorated("m", retries=5) == 5


def test_decorated_coroutine_stays_a_coroutine_function_and_its_span_covers_the_await(spans: Recorded) -> None:
    @moduletrace.load_db_query
    async def read(module_id: str) -> str:
        await asyncio.sleep(0.02)
        return "row"

    assert inspect.iscoroutinefunction(read)
    assert asyncio.run(read("m-9")) == "row"
    span = spans.one("module_load_db_query")
    assert span.end_time - span.start_time >= 15_000_000


def test_decorated_coroutine_failure_is_recorded_and_reraised(spans: Recorded) -> None:
    error = ModuleNotReady("later")

    @moduletrace.load_db_query
    async def read(module_id: str) -> str:
        raise error

    with pytest.raises(ModuleNotReady) as caught:
        asyncio.run(read("m"))
    assert caught.value is error
    assert spans.one("module_load_db_query").status.status_code is StatusCode.ERROR


def test_generator_span_covers_the_whole_iteration_and_is_current_only_inside_the_body(spans: Recorded) -> None:
    inside: list[bool] = []

    @moduletrace.load_db_query
    def rows(module_id: str):  # type: ignore[no-untyped-def]
        for n in range(3):
            inside.append(trace.get_current_span().is_recording())
            yield n

    assert inspect.isgeneratorfunction(rows)
    outside: list[bool] = []
    collected = []
    for row in rows("m-10"):
        outside.append(trace.get_current_span().is_recording())
        collected.append(row)
        assert spans.named("module_load_db_query") == []  # not ended while iterating
    assert collected == [0, 1, 2]
    assert inside == [True, True, True] and outside == [False, False, False]
    assert spans.one("module_load_db_query").status.status_code is StatusCode.UNSET


def test_generator_closed_early_ends_its_span_without_error(spans: Recorded) -> None:
    closed: list[bool] = []

    @moduletrace.load_db_query
    def rows(module_id: str):  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    for _ in rows("m"):
        break
    assert closed == [True]
    assert spans.one("module_load_db_query").status.status_code is StatusCode.UNSET


def test_generator_send_throw_and_return_value_pass_through(spans: Recorded) -> None:
    @moduletrace.load_db_query
    def echo(module_id: str):  # type: ignore[no-untyped-def]
        received = yield "ready"
        try:
            yield received
        except ValueError:
            yield "handled"
        return "done"

    generator = echo("m")
    assert next(generator) == "ready"
    assert generator.send("hello") == "hello"
    assert generator.throw(ValueError("x")) == "handled"
    with pytest.raises(StopIteration) as stop:
        next(generator)
    assert stop.value.value == "done"
    assert spans.one("module_load_db_query").status.status_code is StatusCode.UNSET


def test_generator_failure_mid_iteration_marks_the_span_failed(spans: Recorded) -> None:
    @moduletrace.load_db_query
    def rows(module_id: str):  # type: ignore[no-untyped-def]
        yield 1
        raise ModuleNotReady("gone")

    with pytest.raises(ModuleNotReady):
        list(rows("m"))
    assert spans.one("module_load_db_query").status.status_code is StatusCode.ERROR


def test_async_generator_span_covers_the_whole_iteration(spans: Recorded) -> None:
    inside: list[bool] = []

    @moduletrace.load_db_query
    async def rows(module_id: str):  # type: ignore[no-untyped-def]
        for n in range(3):
            await asyncio.sleep(0.005)
            inside.append(trace.get_current_span().is_recording())
            yield n

    assert inspect.isasyncgenfunction(rows)

    async def consume() -> list[int]:
        out = []
        async for row in rows("m-11"):
            assert not trace.get_current_span().is_recording()
            out.append(row)
        return out

    assert asyncio.run(consume()) == [0, 1, 2]
    span = spans.one("module_load_db_query")
    assert inside == [True, True, True]
    assert span.end_time - span.start_time >= 10_000_000


def test_async_generator_asend_athrow_and_early_aclose(spans: Recorded) -> None:
    finalised: list[bool] = []

    @moduletrace.load_db_query
    async def echo(module_id: str):  # type: ignore[no-untyped-def]
        try:
            received = yield "ready"
            try:
                yield received
            except ValueError:
                yield "handled"
            yield "never consumed"
        finally:
            finalised.append(True)

    async def drive() -> None:
        generator = echo("m")
        assert await generator.__anext__() == "ready"
        assert await generator.asend("hello") == "hello"
        assert await generator.athrow(ValueError("x")) == "handled"
        await generator.aclose()

    asyncio.run(drive())
    assert finalised == [True]
    assert spans.one("module_load_db_query").status.status_code is StatusCode.UNSET


def test_methods_classmethods_and_staticmethods(spans: Recorded) -> None:
    class Store:
        prefix = "m-"

        @moduletrace.db_commit
        def save(self, module_id: str) -> str:
            return f"{self.prefix}{module_id}"

        @moduletrace.cache_update
        @classmethod
        def index(cls, module_id: str) -> str:
            return cls.prefix + module_id

        @classmethod
        @moduletrace.cache_update
        def reindex(cls, module_id: str) -> str:
            return cls.prefix + module_id

        @moduletrace.load_db_query
        @staticmethod
        def read(module_id: str) -> str:
            return module_id

        @moduletrace.load_request
        async def load(self, module_id: str) -> str:
            return module_id

    store = Store()
    assert store.save("1") == "m-1"
    assert Store.index("2") == "m-2"
    assert Store.reindex("3") == "m-3"
    assert Store.read("4") == "4" and store.read("5") == "5"
    assert asyncio.run(store.load("6")) == "6"
    ids = sorted(s.attributes["module.id"] for s in spans.all())
    assert ids == ["1", "2", "3", "4", "5", "6"]


# --- cancellation -----------------------------------------------------------------------------


def test_cancelled_task_ends_its_span_detaches_its_context_and_says_cancelled(spans: Recorded) -> None:
    @moduletrace.load_request
    async def load(module_id: str) -> None:
        await asyncio.sleep(10)

    async def run() -> None:
        task = asyncio.create_task(load("m-12"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not trace.get_current_span().is_recording()

    asyncio.run(run())
    span = spans.one("module_load_request")
    assert span.attributes["module.cancelled"] is True
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time is not None


def test_cancelled_context_manager_block_ends_its_span(spans: Recorded) -> None:
    async def load() -> None:
        with moduletrace.load_db_query("m-13"):
            await asyncio.sleep(10)

    async def run() -> None:
        task = asyncio.create_task(load())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert spans.one("module_load_db_query").attributes["module.cancelled"] is True


# --- ids --------------------------------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (17, "17"),
        (None, "None"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (b"m-bytes", "m-bytes"),
        (Unprintable(), "<unprintable Unprintable>"),
        ("x" * 10_000, "x" * MAX_MODULE_ID_LENGTH),
    ],
    ids=["int", "none", "uuid", "bytes", "unprintable", "huge"],
)
def test_non_string_and_huge_ids_become_bounded_strings(spans: Recorded, given: object, expected: str) -> None:
    with moduletrace.load_request(given):
        pass
    assert spans.one("module_load_request").attributes["module.id"] == expected


def test_missing_id_parameter_is_logged_once_and_the_call_still_runs(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    @moduletrace.db_commit
    def save(row: object) -> str:
        return "ok"

    assert save(1) == "ok" and save(2) == "ok"
    assert sum("has no parameter 'module_id'" in r.message for r in caplog.records) == 1
    assert all("module.id" not in s.attributes for s in spans.named("module_create_db_commit"))


# --- never raising into the host --------------------------------------------------------------


def test_a_raising_user_extractor_is_logged_and_the_call_is_unchanged(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise LookupError("extractor bug")

    @moduletrace.load_request(id_from=broken, attributes_from=broken)
    def load(module_id: str) -> str:
        return "loaded"

    assert load("m") == "loaded"
    assert spans.one("module_load_request").attributes == {"module.stage": "load_request"}
    assert any("extractor bug" in r.getMessage() for r in caplog.records)


def test_a_broken_tracer_never_reaches_the_caller(
    spans: Recorded, lenient: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from moduletrace.instrumentation import _tracing

    class BrokenTracer:
        def start_span(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("tracer bug")

    monkeypatch.setattr(_tracing.STATE, "cache", (trace.get_tracer_provider(), BrokenTracer()))

    @moduletrace.db_commit
    def save(module_id: str) -> str:
        return "saved"

    with moduletrace.create_start("m") as span:
        assert not span.is_recording()
    assert save("m") == "saved"
    assert sum("tracer bug" in r.getMessage() for r in caplog.records) == 1


def test_decorated_calls_run_unchanged_when_no_sdk_is_installed() -> None:
    from tests.conftest import reset_trace_globals

    reset_trace_globals()

    @moduletrace.load_db_query
    def read(module_id: str) -> str:
        assert not trace.get_current_span().is_recording()
        return "row"

    assert read("m") == "row"
    with moduletrace.load_request("m") as span:
        assert not span.is_recording()


# --- user options and hooks: whatever they do, the body runs and the context is detached ------


def test_attributes_from_returning_a_list_still_runs_the_body_and_detaches(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @moduletrace.load_request(attributes_from=lambda module_id: [("module.requested_by", "editor")])
    def load(module_id: str) -> str:
        ran.append(module_id)
        return "loaded"

    assert load("m-20") == "loaded"
    assert ran == ["m-20"]
    assert not trace.get_current_span().is_recording()  # the span's context did not stay current
    span = spans.one("module_load_request")
    assert span.end_time is not None
    assert span.attributes == {"module.id": "m-20", "module.stage": "load_request"}
    assert any("attributes_from" in r.getMessage() and "not a mapping" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "returned",
    ["module.requested_by=editor", 17, object(), {"module.ok": object()}],
    ids=["str", "int", "object", "bad-value"],
)
def test_attributes_from_returning_anything_leaves_the_call_and_the_context_alone(
    spans: Recorded, returned: object
) -> None:
    @moduletrace.load_request(attributes_from=lambda module_id: returned)
    async def load(module_id: str) -> str:
        return "loaded"

    assert asyncio.run(load("m-21")) == "loaded"
    assert not trace.get_current_span().is_recording()
    assert spans.one("module_load_request").end_time is not None


@pytest.mark.parametrize("hook", ["id_from", "parent_from", "attributes_from"])
def test_a_hook_that_is_not_callable_is_logged_and_the_call_is_unchanged(spans: Recorded, hook: str) -> None:
    @moduletrace.load_request(**{hook: "not a function"})  # type: ignore[call-overload]
    def load(module_id: str) -> str:
        return "loaded"

    assert load("m-22") == "loaded"
    assert not trace.get_current_span().is_recording()
    assert spans.one("module_load_request").end_time is not None


@pytest.mark.parametrize(
    "options",
    [{"attributes": ["module.x", 1]}, {"attributes": 5}, {"kind": "server"}, {"id_param": ["mid"]}],
    ids=["attributes-list", "attributes-int", "kind-str", "id_param-list"],
)
def test_bad_decorator_options_are_logged_and_neither_decoration_nor_call_raises(
    spans: Recorded, options: dict[str, Any]
) -> None:
    @moduletrace.db_commit(**options)
    def save(module_id: str) -> str:
        return "saved"

    assert save("m-23") == "saved"
    span = spans.one("module_create_db_commit")
    assert span.attributes["module.stage"] == "db_commit" and span.kind is SpanKind.INTERNAL


@pytest.mark.parametrize(
    "options", [{"attributes": ["module.x", 1]}, {"kind": "server"}], ids=["attributes-list", "kind-str"]
)
def test_bad_context_manager_options_are_logged_and_the_block_runs(spans: Recorded, options: dict[str, Any]) -> None:
    with moduletrace.db_commit("m-24", **options) as span:
        assert span.is_recording()
    assert not trace.get_current_span().is_recording()
    assert spans.one("module_create_db_commit").attributes["module.id"] == "m-24"


# --- exceptions that fight back ----------------------------------------------------------------


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


def test_an_exception_whose_str_raises_reaches_the_caller_unchanged_and_the_span_still_fails(
    spans: Recorded,
) -> None:
    raised = UnprintableError("m-25")

    @moduletrace.load_db_query
    def read(module_id: str) -> None:
        raise raised

    with pytest.raises(UnprintableError) as caught:
        read("m-25")
    assert caught.value is raised
    span = spans.one("module_load_db_query")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"{__name__}.UnprintableError"
    assert span.attributes[ERROR_TYPE] == f"{__name__}.UnprintableError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == f"{__name__}.UnprintableError"
    assert event.attributes["exception.message"] == "<exception str() failed>"
    assert "raise raised" in event.attributes["exception.stacktrace"]


def test_an_exception_whose_str_raises_fails_the_context_manager_span_too(spans: Recorded) -> None:
    with pytest.raises(UnprintableError):
        with moduletrace.db_commit("m-26"):
            raise UnprintableError()
    span = spans.one("module_create_db_commit")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == f"{__name__}.UnprintableError"


def test_chained_exceptions_appear_in_the_stack_trace_like_python_prints_them(spans: Recorded) -> None:
    with pytest.raises(RuntimeError):
        with moduletrace.db_commit("m-27"):
            try:
                raise KeyError("row m-27")
            except KeyError as missing:
                raise RuntimeError("commit failed") from missing
    trace_text = spans.one("module_create_db_commit").events[0].attributes["exception.stacktrace"]
    assert "KeyError: 'row m-27'" in trace_text
    assert "The above exception was the direct cause of the following exception" in trace_text
    assert trace_text.rstrip().endswith("RuntimeError: commit failed")


# --- async generators when tracing is off --------------------------------------------------------


def test_async_generator_asend_and_athrow_reach_the_body_when_tracing_is_off() -> None:
    from tests.conftest import reset_trace_globals

    reset_trace_globals()

    @moduletrace.load_db_query
    async def echo(module_id: str):  # type: ignore[no-untyped-def]
        received = yield "ready"
        try:
            yield received
        except ValueError:
            yield "handled"

    async def drive() -> list[str]:
        generator = echo("m-28")
        seen = [await generator.__anext__(), await generator.asend("hello"), await generator.athrow(ValueError("x"))]
        await generator.aclose()
        return seen

    assert asyncio.run(drive()) == ["ready", "hello", "handled"]


# --- tracing configured late, or disabled --------------------------------------------------------


def test_a_provider_installed_after_decoration_starts_tracing() -> None:
    from tests.conftest import install_provider, reset_trace_globals

    reset_trace_globals()

    @moduletrace.db_commit
    def save(module_id: str) -> str:
        return "saved"

    assert save("m-29") == "saved"  # no provider yet: nothing recorded, nothing cached for good
    recorded = install_provider()
    try:
        assert save("m-30") == "saved"
        with moduletrace.cache_update("m-30"):
            pass
        assert [s.attributes["module.id"] for s in recorded.all()] == ["m-30", "m-30"]
    finally:
        recorded.provider.shutdown()
        reset_trace_globals()


def test_otel_sdk_disabled_yields_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.conftest import reset_trace_globals

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:

        @moduletrace.db_commit
        def save(module_id: str) -> str:
            assert not trace.get_current_span().is_recording()
            return "saved"

        assert save("m-31") == "saved"
        with moduletrace.load_request("m-31") as span:
            assert not span.is_recording()
        assert exporter.get_finished_spans() == ()
    finally:
        provider.shutdown()
        reset_trace_globals()


def test_without_the_api_global_the_provider_is_asked_the_documented_way(
    spans: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moduletrace.instrumentation import _tracing

    # Should an API release drop the private global read on the hot path, tracing still works.
    monkeypatch.setattr(_tracing, "API", _tracing._Documented())
    monkeypatch.setattr(_tracing.STATE, "cache", (object(), None))
    import moduletrace.instrumentation._wrappers as wrappers

    monkeypatch.setattr(wrappers, "API", _tracing.API)

    @moduletrace.db_commit
    def save(module_id: str) -> str:
        return "saved"

    assert save("m-32") == "saved"
    assert spans.one("module_create_db_commit").attributes["module.id"] == "m-32"
