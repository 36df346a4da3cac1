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
from tests.messaging.services import Creator, Loader, Worker, queue_indexer, stream_indexer, wait_for_cache

GROUP = "indexer"
BACKLOG = 300
HOLD_S = 2.5  # the backlog stands this long before the loads and after them: several scrapes see it


class Gate:
    """Lets the indexers' steps through, or holds them: ``close()`` returns once no step is under way
    (a read already waiting on the broker would otherwise take the first event of the backlog)."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._locks: list[threading.Lock] = []

    def wrap(self, step: Callable[[], None]) -> Callable[[], None]:
        lock = threading.Lock()
        self._locks.append(lock)

        def gated() -> None:
            if self._open.wait(0.05):
                with lock:
                    if self._open.is_set():
                        step()

        return gated

    def close(self) -> None:
        self._open.clear()
        for lock in self._locks:
            with lock:
                pass

    def open(self) -> None:
        self._open.set()


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
    gate = Gate()
    consuming = pika.BlockingConnection(pika.URLParameters(amqp_url))
    workers = [
        Worker(gate.wrap(stream_indexer(redis.Redis.from_url(redis_url), stream, GROUP, cache, 0.0))),
        Worker(gate.wrap(queue_indexer(consuming, queue, cache, 0.0))),
    ]
    for worker in workers:
        worker.start()
    loader, phases, first = Loader(cache), {}, {}
    try:
        for name, creator in creators.items():
            creator.backlog(f"{name}-warm", 1)
        wait_for_cache(cache, ["redis-warm-0", "amqp-warm-0"])
        gate.close()  # the indexers stall
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
        gate.open()
        wait_for_cache(cache, list(first), timeout=60)
        phases["caught_up_ns"] = time.time_ns()
    finally:
        gate.open()
        for worker in workers:
            worker.stop()
    moduletrace.shutdown()
    print(json.dumps({"phases": phases, "first": first}), flush=True)


if __name__ == "__main__":
    main()
