"""The service of tests/messaging/test_diagnose_brokers.py: modules created while the indexers of a Redis
stream and of a RabbitMQ queue are stalled behind a backlog, and loads that race them.

    REDIS_URL=... AMQP_URL=... STREAM=... QUEUE=... python -m tests.messaging.backlog_service

Both indexers take one event each (so the stream group has delivered something), then stall (a slow
dependency, say) while BACKLOG events of other modules pile up in front of them; HOLD_S later one
module is created through each broker and loaded at once (the load misses the cache: a race), and
HOLD_S after that the indexers resume and catch up. The collector scrapes the broker meanwhile.
Spans go to OTEL_EXPORTER_OTLP_ENDPOINT; the last line printed is JSON: the phases' times, the
first loads' results.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

import pika
import redis

import moduletrace
from moduletrace.instrumentation.integrations import messaging
from tests.messaging.services import Creator, Loader, Worker, index, wait_for_cache

GROUP = "indexer"
BACKLOG = 300
HOLD_S = 2.5  # the backlog stands this long before the loads and after them: several scrapes see it


def stream_indexer(url: str, stream: str, cache: redis.Redis, running: threading.Event) -> Callable[[], None]:
    consumer = redis.Redis.from_url(url)

    def consume() -> None:
        if not running.wait(0.05):
            return
        got = consumer.xreadgroup(GROUP, "indexer-1", {stream: ">"}, count=1, block=50)
        received_ns = time.time_ns()
        for _stream, entries in got or []:  # type: ignore[union-attr]
            for entry_id, fields in entries:
                event = messaging.received(
                    fields,
                    system="redis",
                    destination=stream,
                    message_id=entry_id,
                    consumer_group=GROUP,
                    queue_depth=messaging.stream_backlog(consumer, stream, GROUP),
                    received_ns=received_ns,
                )
                index(cache, fields[b"module_id"].decode(), event, 0.0, as_link=False)
                consumer.xack(stream, GROUP, entry_id)

    return consume


def queue_indexer(url: str, queue: str, cache: redis.Redis, running: threading.Event) -> Callable[[], None]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel, sampling = connection.channel(), connection.channel()

    def consume() -> None:
        if not running.wait(0.05):
            connection.process_data_events(0)  # heartbeats while stalled
            return
        method, properties, body = channel.basic_get(queue)
        if method is None:
            connection.sleep(0.01)
            return
        received_ns = time.time_ns()
        event = messaging.received(
            properties.headers,
            system="rabbitmq",
            destination=queue,
            message_id=properties.message_id,
            queue_depth=messaging.amqp_queue_depth(sampling, queue),
            received_ns=received_ns,
        )
        index(cache, body.decode(), event, 0.0, as_link=False)
        channel.basic_ack(method.delivery_tag)

    return consume


def main() -> None:
    moduletrace.configure(service_name="modules", instrument_httpx=False)
    redis_url, amqp_url = os.environ["REDIS_URL"], os.environ["AMQP_URL"]
    stream, queue = os.environ["STREAM"], os.environ["QUEUE"]
    cache, publisher = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    publishing = pika.BlockingConnection(pika.URLParameters(amqp_url)).channel()

    def to_queue(module_id: str, headers: dict[str, str]) -> None:
        publishing.basic_publish("", queue, module_id.encode(), pika.BasicProperties(headers=headers))

    creators = {
        "redis": Creator(lambda module_id, fields: publisher.xadd(stream, fields)),  # type: ignore[arg-type]
        "amqp": Creator(to_queue),
    }
    running = threading.Event()
    running.set()
    workers = [
        Worker(stream_indexer(redis_url, stream, cache, running)),
        Worker(queue_indexer(amqp_url, queue, cache, running)),
    ]
    for worker in workers:
        worker.start()
    loader, phases, first = Loader(cache), {}, {}
    try:
        for name, creator in creators.items():
            creator.backlog(f"{name}-warm", 1)
        wait_for_cache(cache, ["redis-warm-0", "amqp-warm-0"])
        running.clear()  # the indexers stall
        phases["stalled_ns"] = time.time_ns()
        for name, creator in creators.items():
            creator.backlog(f"{name}-ahead", BACKLOG)
        time.sleep(HOLD_S)
        phases["loads_ns"] = time.time_ns()
        for name, creator in creators.items():
            module_id = f"{name}-late-1"
            first[module_id] = loader.load(module_id, creator.create(module_id))
        time.sleep(HOLD_S)
        phases["resumed_ns"] = time.time_ns()
        running.set()
        wait_for_cache(cache, list(first), timeout=60)
        phases["caught_up_ns"] = time.time_ns()
    finally:
        running.set()
        for worker in workers:
            worker.stop()
    moduletrace.shutdown()
    print(json.dumps({"phases": phases, "first": first}), flush=True)


if __name__ == "__main__":
    main()
