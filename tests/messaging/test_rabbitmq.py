"""RabbitMQ between the creation and its cache update: a real node started by the test on loopback,
a creating service publishing with pika (the carrier in the AMQP headers), an indexer taking the
events one at a time behind a backlog, loads racing the update."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pika
import pytest
import redis
from opentelemetry.trace import format_trace_id

import moduletrace
from moduletrace.conventions import (
    LIFECYCLE_SPAN_NAMES,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_LAG_MS,
    MESSAGING_MESSAGE_ID,
    MESSAGING_QUEUE_DEPTH,
    MODULE_ID,
)
from moduletrace.instrumentation.integrations import messaging
from tests.messaging.conftest import Traced
from tests.messaging.rabbitmq import RabbitMQ
from tests.messaging.services import (
    Creator,
    Loader,
    Worker,
    assert_reports_name_the_lag,
    consumer_updates,
    queue_indexer,
    wait_for_cache,
)
from tests.support.redis_server import RedisServer

QUEUE = "modules"
DELAY_S = 0.004
AHEAD = BEHIND = 150


@pytest.fixture
def connection(rabbitmq: RabbitMQ) -> Iterator[pika.BlockingConnection]:
    opened = pika.BlockingConnection(pika.ConnectionParameters(rabbitmq.host, rabbitmq.port))
    yield opened
    if opened.is_open:
        opened.close()


def test_a_backlogged_queue_consumer_is_named_with_its_lag_in_races_and_diagnose(
    rabbitmq: RabbitMQ,
    redis_server: RedisServer,
    connection: pika.BlockingConnection,
    traced: Traced,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publishing = connection.channel()
    publishing.queue_declare(QUEUE)
    consuming = pika.BlockingConnection(pika.ConnectionParameters(rabbitmq.host, rabbitmq.port))
    cache = redis.Redis.from_url(redis_server.url)
    counts: dict[str, int] = {}  # the broker's own count in basic.get-ok, to compare with the passive declare

    def publish(module_id: str, headers: dict[str, str]) -> None:
        properties = pika.BasicProperties(headers=headers, message_id=f"event-{module_id}")
        publishing.basic_publish("", QUEUE, module_id.encode(), properties)

    consume = queue_indexer(consuming, QUEUE, cache, DELAY_S, counts)

    creator, loader, indexer = Creator(publish), Loader(cache), Worker(consume)
    racing, clean = ["amqp-slow-1", "amqp-slow-2"], ["amqp-ok"]
    carriers, first = {}, {}
    indexer.start()
    try:
        creator.backlog("ahead", AHEAD)
        for module_id in racing:
            carriers[module_id] = creator.create(module_id)
            first[module_id] = loader.load(module_id, carriers[module_id])
        creator.backlog("behind", BEHIND)
        for module_id in clean:
            carriers[module_id] = creator.create(module_id)
            wait_for_cache(cache, [module_id])
            first[module_id] = loader.load(module_id, carriers[module_id])
        wait_for_cache(cache, racing)
    finally:
        indexer.stop()
        consuming.close()
        cache.close()
    assert first == {"amqp-slow-1": False, "amqp-slow-2": False, "amqp-ok": True}

    spans = traced.all()
    for module_id in racing + clean:
        lifecycle = [s for s in spans if s.name in LIFECYCLE_SPAN_NAMES and s.attributes.get(MODULE_ID) == module_id]
        assert sorted({s.name for s in lifecycle}) == sorted(LIFECYCLE_SPAN_NAMES)
        assert {format_trace_id(s.context.trace_id) for s in lifecycle} == {
            carriers[module_id]["traceparent"].split("-")[1]
        }
    for module_id in racing:
        (update,) = consumer_updates(spans, module_id)
        (commit,) = [s for s in spans if s.name == "module_create_db_commit" and s.attributes[MODULE_ID] == module_id]
        assert 0 < update.attributes[MESSAGING_LAG_MS] <= (update.start_time - commit.end_time) / 1e6
        depth = update.attributes[MESSAGING_QUEUE_DEPTH]
        assert BEHIND <= depth <= BEHIND + len(racing) + len(clean)
        assert abs(depth - counts[module_id]) <= 1  # the passive declare agrees with basic.get-ok
        assert update.attributes[MESSAGING_DESTINATION_NAME] == QUEUE
        assert update.attributes[MESSAGING_MESSAGE_ID] == f"event-{module_id}"

    figures = assert_reports_name_the_lag(
        traced, capsys, racing, clean, "rabbitmq", min_lag_ms=(AHEAD - 50) * DELAY_S * 1000
    )
    print("rabbitmq, continue mode: (lag ms, queue depth) =", figures)


def test_a_passive_declare_of_a_missing_queue_is_no_depth_and_no_error(
    connection: pika.BlockingConnection, traced: Traced
) -> None:
    assert messaging.amqp_queue_depth(connection.channel(), "no-such-queue") is None
    channel = connection.channel()
    channel.queue_declare("depth-probe")
    for _ in range(3):
        channel.basic_publish("", "depth-probe", b"x")
    deadline = time.monotonic() + 5
    while messaging.amqp_queue_depth(channel, "depth-probe") != 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with moduletrace.create_start("m-headers"):
        headers = messaging.published({})
    channel.basic_publish("", "depth-probe", b"m", pika.BasicProperties(headers=headers))
    for _ in range(4):
        method, properties, body = channel.basic_get("depth-probe", auto_ack=True)
    assert body == b"m"
    event = messaging.received(properties.headers, system="rabbitmq", destination="depth-probe")
    assert event.carrier == {"traceparent": headers["traceparent"]}


async def test_an_asyncio_consumer_continues_the_trace_with_aio_pika(rabbitmq: RabbitMQ, traced: Traced) -> None:
    """The same helpers with another client: aio-pika on both sides, the depth by an async passive declare."""
    import aio_pika

    connection = await aio_pika.connect(rabbitmq.url)
    try:
        channel, sampling = await connection.channel(), await connection.channel()
        queue = await channel.declare_queue("modules-async")
        with moduletrace.create_start("m-async"):
            headers = messaging.published({})
            for body in (b"m-async", b"behind-1", b"behind-2"):
                await channel.default_exchange.publish(
                    aio_pika.Message(body, headers=headers, message_id=body.decode()), routing_key="modules-async"
                )
        message = await queue.get(timeout=5)
        assert message is not None
        event = messaging.received(
            message.headers,
            system="rabbitmq",
            destination="modules-async",
            message_id=message.message_id,
            queue_depth=await messaging.amqp_queue_depth_async(sampling, "modules-async"),
        )
        async with moduletrace.cache_update("m-async", parent=event.carrier, attributes=event.attributes):
            await message.ack()
        assert await messaging.amqp_queue_depth_async(sampling, "no-such-queue") is None
    finally:
        await connection.close()
    (create,) = traced.named("module_create_start")
    (update,) = traced.named("module_create_cache_update")
    assert update.context.trace_id == create.context.trace_id
    assert update.parent is not None
    assert update.attributes[MESSAGING_QUEUE_DEPTH] == 2
    assert 0 < update.attributes[MESSAGING_LAG_MS] < 5_000
