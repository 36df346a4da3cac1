"""Redis Streams between the creation and its cache update: a real Redis server, a creating service
publishing with XADD, an indexer reading with XREADGROUP behind a backlog, loads racing the update."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.trace import format_trace_id
from redis.backoff import NoBackoff
from redis.retry import Retry

from moduletrace.conventions import (
    CACHE_UPDATE,
    LIFECYCLE_SPAN_NAMES,
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_LAG_CLOCK,
    MESSAGING_LAG_MS,
    MESSAGING_MESSAGE_ID,
    MESSAGING_QUEUE_DEPTH,
    MODULE_ID,
    MODULE_LINK_TYPE,
    PUBLISHED_NS_HEADER,
    SPAN_NAMES,
)
from moduletrace.instrumentation.integrations import messaging
from tests.messaging.conftest import Traced
from tests.messaging.services import (
    Creator,
    Loader,
    Worker,
    assert_reports_name_the_lag,
    consumer_updates,
    stream_indexer,
    wait_for_cache,
)
from tests.support.redis_server import RedisServer

GROUP = "indexer"
DELAY_S = 0.004  # the indexer's time per event
AHEAD = BEHIND = 150  # events of other modules queued before and after the racing modules


@pytest.fixture
def instrumented_redis(traced: Traced) -> Iterator[None]:
    """opentelemetry-instrumentation-redis: the XADD, XREADGROUP, GET client spans."""
    instrumentor = RedisInstrumentor()
    instrumentor.instrument(tracer_provider=traced.provider)
    yield
    instrumentor.uninstrument()


def run_bus(
    server: RedisServer, stream: str, as_link: bool, racing: list[str], clean: list[str]
) -> tuple[dict[str, dict[str, str]], dict[str, bool]]:
    """Create and load modules through a backlogged stream; returns the carriers and the first loads' results."""
    publisher, consumer, cache = (redis.Redis.from_url(server.url) for _ in range(3))
    consumer.xgroup_create(stream, GROUP, id="0", mkstream=True)

    consume = stream_indexer(consumer, stream, GROUP, cache, DELAY_S, as_link)

    creator = Creator(lambda module_id, fields: publisher.xadd(stream, fields))  # type: ignore[arg-type]
    loader = Loader(cache)
    indexer = Worker(consume)
    indexer.start()
    carriers: dict[str, dict[str, str]] = {}
    first: dict[str, bool] = {}
    try:
        creator.backlog("ahead", AHEAD)
        for module_id in racing:  # loaded as soon as the create returns: the indexer is far behind
            carriers[module_id] = creator.create(module_id)
            first[module_id] = loader.load(module_id, carriers[module_id])
        creator.backlog("behind", BEHIND)
        for module_id in clean:  # loaded once the cache has it
            carriers[module_id] = creator.create(module_id)
            wait_for_cache(cache, [module_id])
            first[module_id] = loader.load(module_id, carriers[module_id])
        wait_for_cache(cache, racing)
        for module_id in racing:  # loaded again, now that the indexer caught up
            assert loader.load(module_id, carriers[module_id])
    finally:
        indexer.stop()
        for client in (publisher, consumer, cache):
            client.close()
    return carriers, first


def test_a_backlogged_indexer_is_named_with_its_lag_in_races_and_diagnose(
    redis_server: RedisServer, traced: Traced, instrumented_redis: None, capsys: pytest.CaptureFixture[str]
) -> None:
    racing, clean = ["slow-1", "slow-2", "slow-3"], ["ok-1"]
    carriers, first = run_bus(redis_server, "modules-continue", False, racing, clean)
    assert first == {"slow-1": False, "slow-2": False, "slow-3": False, "ok-1": True}

    spans = traced.all()
    for module_id in racing + clean:
        # One trace from the creation to the consumer's cache update and the loads, and the XADD in it.
        lifecycle = [s for s in spans if s.name in LIFECYCLE_SPAN_NAMES and s.attributes.get(MODULE_ID) == module_id]
        assert sorted({s.name for s in lifecycle}) == sorted(LIFECYCLE_SPAN_NAMES)
        trace_ids = {format_trace_id(s.context.trace_id) for s in lifecycle}
        assert trace_ids == {carriers[module_id]["traceparent"].split("-")[1]}
        (create,) = [s for s in lifecycle if s.name == "module_create_start"]
        xadds = [s for s in spans if s.name == "XADD" and s.parent and s.parent.span_id == create.context.span_id]
        assert len(xadds) == 1 and xadds[0].context.trace_id == create.context.trace_id

    # The figures the consumer recorded, checked against what else is known of the run.
    for module_id in racing:
        (update,) = consumer_updates(spans, module_id)
        (commit,) = [s for s in spans if s.name == "module_create_db_commit" and s.attributes[MODULE_ID] == module_id]
        lag = update.attributes[MESSAGING_LAG_MS]
        # Published after the commit ended, received before the cache update began.
        assert 0 < lag <= (update.start_time - commit.end_time) / 1e6
        # Every event behind it was queued when it was received (all published long before).
        assert BEHIND <= update.attributes[MESSAGING_QUEUE_DEPTH] <= BEHIND + len(racing) + len(clean)
        assert update.attributes[MESSAGING_LAG_CLOCK] == "publisher"
        assert update.attributes[MESSAGING_DESTINATION_NAME] == "modules-continue"
        assert update.attributes[MESSAGING_CONSUMER_GROUP_NAME] == GROUP
        assert "-" in update.attributes[MESSAGING_MESSAGE_ID]  # the stream entry id

    figures = assert_reports_name_the_lag(
        traced, capsys, racing, clean, "redis", min_lag_ms=(AHEAD - 50) * DELAY_S * 1000
    )
    print("redis streams, continue mode: (lag ms, queue depth) =", figures)


def test_in_link_mode_the_consumer_links_the_creation_and_its_lag_is_still_named(
    redis_server: RedisServer, traced: Traced, capsys: pytest.CaptureFixture[str]
) -> None:
    racing, clean = ["linked-1"], ["linked-ok"]
    carriers, first = run_bus(redis_server, "modules-link", True, racing, clean)
    assert first == {"linked-1": False, "linked-ok": True}
    spans = traced.all()
    for module_id in racing + clean:
        (update,) = consumer_updates(spans, module_id)
        creation_trace = carriers[module_id]["traceparent"].split("-")[1]
        assert format_trace_id(update.context.trace_id) != creation_trace  # its own trace
        (link,) = update.links
        assert format_trace_id(link.context.trace_id) == creation_trace
        assert link.attributes[MODULE_LINK_TYPE] == "creation"
    figures = assert_reports_name_the_lag(
        traced, capsys, racing, clean, "redis", min_lag_ms=(AHEAD - 50) * DELAY_S * 1000
    )
    print("redis streams, link mode: (lag ms, queue depth) =", figures)


def test_the_broker_clock_is_used_when_the_message_carries_no_publish_time(traced: Traced) -> None:
    event = messaging.received(
        {b"module_id": b"m-1"},
        system="redis",
        destination="modules",
        message_id=b"1700000000000-3",
        broker_published_ns=messaging.stream_entry_ns(b"1700000000000-3"),
        received_ns=1_700_000_000_840_000_000,
    )
    assert event.carrier is None
    assert event.lag_ms == 840.0
    assert event.attributes[MESSAGING_LAG_CLOCK] == "broker"
    assert event.attributes[MESSAGING_MESSAGE_ID] == "1700000000000-3"
    assert MESSAGING_QUEUE_DEPTH not in event.attributes


def test_the_carrier_and_publish_time_round_trip_through_a_stream_entry(
    redis_server: RedisServer, traced: Traced
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        import moduletrace

        with moduletrace.create_start("m-rt") as span:
            entry_id = client.xadd("round-trip", messaging.published({"module_id": "m-rt"}))  # type: ignore[arg-type]
            expected = moduletrace.carrier()
        ((_, [(read_id, fields)]),) = client.xread({"round-trip": "0"}, count=1)
        assert read_id == entry_id and PUBLISHED_NS_HEADER.encode() in fields
        event = messaging.received(fields, system="redis", destination="round-trip", message_id=read_id)
        assert event.carrier == expected and span is not None
        assert 0 <= (event.lag_ms or -1) < 5_000
        assert messaging.stream_backlog(client, "round-trip", "no-such-group") == 1  # XLEN, with no group
        assert messaging.stream_backlog(client, "no-such-stream", GROUP) is None
    finally:
        client.close()


def test_unreadable_messages_and_a_dead_broker_never_raise_into_the_consumer(lenient: None, traced: Traced) -> None:
    class Hostile(dict[Any, Any]):
        def items(self):  # type: ignore[no-untyped-def, override]
            raise RuntimeError("boom")

    event = messaging.received(Hostile({"traceparent": "x"}), system="redis", destination="modules")
    assert event.carrier is None and event.attributes == {}
    odd = messaging.received({"traceparent": 7, PUBLISHED_NS_HEADER: "soon"}, system="redis", destination="x")
    assert odd.carrier is None and odd.lag_ms is None
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    assert messaging.stream_backlog(dead, "modules", GROUP) is None
    assert messaging.amqp_queue_depth(object(), "modules") is None
    assert SPAN_NAMES[CACHE_UPDATE] == "module_create_cache_update"


async def test_an_asyncio_consumer_continues_the_trace_with_redis_asyncio(
    redis_server: RedisServer, traced: Traced
) -> None:
    import redis.asyncio

    import moduletrace

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.xgroup_create("modules-async", GROUP, id="0", mkstream=True)
        with moduletrace.create_start("m-async"):
            await client.xadd("modules-async", messaging.published({"module_id": "m-async"}))  # type: ignore[arg-type]
        for i in range(4):
            await client.xadd("modules-async", {"module_id": f"behind-{i}"})
        ((_, [(entry_id, fields)]),) = await client.xreadgroup(GROUP, "c", {"modules-async": ">"}, count=1)
        event = messaging.received(
            fields,
            system="redis",
            destination="modules-async",
            message_id=entry_id,
            queue_depth=await messaging.stream_backlog_async(client, "modules-async", GROUP),
        )
        async with moduletrace.cache_update("m-async", parent=event.carrier, attributes=event.attributes):
            await client.xack("modules-async", GROUP, entry_id)
        assert await messaging.stream_backlog_async(client, "no-such-stream", GROUP) is None
    finally:
        await client.aclose()
    (create,) = traced.named("module_create_start")
    (update,) = traced.named("module_create_cache_update")
    assert update.context.trace_id == create.context.trace_id
    assert update.attributes[MESSAGING_QUEUE_DEPTH] == 4
