"""Many modules at once: no span attached to another module's trace, no context bleeding."""

from __future__ import annotations

import asyncio
import random
import threading

from opentelemetry import trace

import moduletrace
from tests.conftest import Recorded


def _assert_each_module_is_one_consistent_trace(spans: Recorded, count: int) -> None:
    by_module: dict[str, list] = {}  # type: ignore[type-arg]
    for span in spans.all():
        by_module.setdefault(span.attributes["module.id"], []).append(span)
    assert len(by_module) == count
    for module_id, module_spans in by_module.items():
        assert len(module_spans) == 4, module_id
        assert len({s.context.trace_id for s in module_spans}) == 1, module_id
        ids = {s.context.span_id: s for s in module_spans}
        create = next(s for s in module_spans if s.name == "module_create_start")
        assert create.parent is None
        for span in module_spans:
            if span is not create:
                assert span.parent.span_id in ids, (module_id, span.name)


async def _create_and_load(module_id: str) -> None:
    async with moduletrace.create_start(module_id):
        await asyncio.sleep(random.random() / 1000)
        with moduletrace.db_commit(module_id):
            await asyncio.sleep(random.random() / 1000)
        carrier = moduletrace.carrier()
    await asyncio.sleep(random.random() / 1000)
    async with moduletrace.load_request(module_id, parent=carrier):
        await _query(module_id)


@moduletrace.load_db_query
async def _query(module_id: str) -> None:
    await asyncio.sleep(random.random() / 1000)


def test_a_hundred_asyncio_tasks_keep_their_own_context(spans: Recorded) -> None:
    async def run() -> None:
        await asyncio.gather(*(_create_and_load(f"m-{n}") for n in range(100)))
        assert not trace.get_current_span().is_recording()

    asyncio.run(run())
    _assert_each_module_is_one_consistent_trace(spans, 100)


def test_threads_keep_their_own_context(spans: Recorded) -> None:
    @moduletrace.db_commit
    def commit(module_id: str) -> None:
        barrier.wait()

    def worker(n: int) -> None:
        module_id = f"t-{n}"
        with moduletrace.create_start(module_id):
            commit(module_id)
            carrier = moduletrace.carrier()
        with moduletrace.load_request(module_id, parent=carrier):
            with moduletrace.load_db_query(module_id):
                pass

    barrier = threading.Barrier(8)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_each_module_is_one_consistent_trace(spans, 8)
