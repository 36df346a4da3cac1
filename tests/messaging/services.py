"""The three parties of the incident, around a real broker: a creating service that commits a module
and publishes its event, an indexer that consumes the event and fills the cache, a loader that reads
the cache. Each runs as its own thread with its own connections; the module's trace crosses from
the creation to the indexer only through the message (threads share no context)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import redis

import moduletrace
from moduletrace.conventions import (
    CACHE_UPDATE,
    MESSAGING_LAG_MS,
    MESSAGING_QUEUE_DEPTH,
    MESSAGING_SYSTEM,
    SPAN_NAMES,
)
from moduletrace.instrumentation.integrations import messaging

Publish = Callable[[str, dict[str, str]], None]


class ModuleNotLoadable(Exception):
    """The loader's error when the module is not in the cache yet."""


def cache_key(module_id: str) -> str:
    return f"module:{module_id}"


class Creator:
    """The creating service: commit the row, then publish the module's event (inside the creation)."""

    def __init__(self, publish: Publish) -> None:
        self.publish = publish
        self.rows: dict[str, int] = {}

    def create(self, module_id: str) -> dict[str, str]:
        with moduletrace.create_start(module_id):
            with moduletrace.db_commit(module_id) as commit:
                self.rows[module_id] = 1
                commit.wrote(1)
            self.publish(module_id, messaging.published({"module_id": module_id}))
            return moduletrace.carrier()  # what the create response hands the client

    def backlog(self, prefix: str, count: int) -> None:
        """Events of other modules (published outside any creation span): the queue the indexer works through."""
        for i in range(count):
            self.publish(f"{prefix}-{i}", messaging.published({"module_id": f"{prefix}-{i}"}))


def index(cache: redis.Redis, module_id: str, event: messaging.Received, delay_s: float, as_link: bool) -> None:
    """The indexer's work for one event: the cache update, continuing (or linking) the module's trace."""
    with moduletrace.cache_update(
        module_id, parent=event.carrier, as_link=as_link, attributes=event.attributes
    ) as update:
        time.sleep(delay_s)  # a slow consumer
        cache.set(cache_key(module_id), "1")
        update.wrote(1)


def stream_indexer(
    consumer: redis.Redis, stream: str, group: str, cache: redis.Redis, delay_s: float, as_link: bool = False
) -> Callable[[], None]:
    """One step of an indexer reading ``stream`` as ``group`` (XREADGROUP, one entry): the event's cache
    update with its lag and the group's backlog, then XACK."""

    def consume() -> None:
        got: Any = consumer.xreadgroup(group, "indexer-1", {stream: ">"}, count=1, block=50)
        received_ns = time.time_ns()  # as soon as the read returns
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                event = messaging.received(
                    fields,
                    system="redis",
                    destination=stream,
                    message_id=entry_id,
                    consumer_group=group,
                    queue_depth=messaging.stream_backlog(consumer, stream, group),
                    broker_published_ns=messaging.stream_entry_ns(entry_id),
                    received_ns=received_ns,
                )
                index(cache, fields[b"module_id"].decode(), event, delay_s, as_link)
                consumer.xack(stream, group, entry_id)

    return consume


def queue_indexer(
    connection: pika.BlockingConnection,
    queue: str,
    cache: redis.Redis,
    delay_s: float,
    counts: dict[str, int] | None = None,
) -> Callable[[], None]:
    """One step of an indexer taking ``queue``'s messages one at a time (basic.get; the body is the
    module id): the cache update with its lag and the queue's depth, then the ack. ``counts`` gets the
    broker's own count in each basic.get-ok, by module."""
    channel, sampling = connection.channel(), connection.channel()  # a passive declare gets its own channel

    def consume() -> None:
        method, properties, body = channel.basic_get(queue)
        if method is None:
            connection.sleep(0.01)
            return
        received_ns = time.time_ns()
        module_id = body.decode()
        if counts is not None:
            counts[module_id] = method.message_count
        event = messaging.received(
            properties.headers,
            system="rabbitmq",
            destination=queue,
            message_id=properties.message_id,
            queue_depth=messaging.amqp_queue_depth(sampling, queue),
            received_ns=received_ns,
        )
        index(cache, module_id, event, delay_s, as_link=False)
        channel.basic_ack(method.delivery_tag)

    return consume


class Loader:
    """The loading service: continues the creation's trace with the carrier from the create response."""

    def __init__(self, cache: redis.Redis) -> None:
        self.cache = cache

    def load(self, module_id: str, carrier: dict[str, str]) -> bool:
        try:
            with moduletrace.load_request(module_id, parent=carrier):
                with moduletrace.load_db_query(module_id) as query:
                    hit = self.cache.get(cache_key(module_id)) is not None
                    query.cache_hit(hit)
                    if not hit:
                        raise ModuleNotLoadable(module_id)
        except ModuleNotLoadable:
            return False
        return True


class Worker(threading.Thread):
    """Runs ``step`` until stopped; an exception in it is kept for the test to raise."""

    def __init__(self, step: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.step = step
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.step()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=20)
        assert not self.is_alive(), "the indexer did not stop"
        if self.error is not None:
            raise self.error


def wait_for_cache(cache: redis.Redis, module_ids: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(cache.exists(cache_key(m)) for m in module_ids):
        assert time.monotonic() < deadline, f"the indexer never updated the cache for {module_ids}"
        time.sleep(0.02)


def consumer_updates(spans: list[Any], module_id: str) -> list[Any]:
    return [s for s in spans if s.name == SPAN_NAMES[CACHE_UPDATE] and s.attributes.get("module.id") == module_id]


def assert_reports_name_the_lag(
    traced: Any, capsys: Any, raced: list[str], clean: list[str], system: str, min_lag_ms: float
) -> dict[str, Any]:
    """races and diagnose over the span file: the raced loads are races decided by the data, and their
    cache_update evidence names the consumer's lag and queue depth with the figures the consumer recorded.
    Returns {module id: (lag_ms, queue_depth)}."""
    status, report = traced.json(capsys, "races")
    assert status == 1
    races = {r["module_id"]: r for r in report["races"]}
    assert sorted(races) == sorted(raced), report["races"]
    spans = traced.all()
    figures: dict[str, Any] = {}
    for module_id in raced:
        race = races[module_id]
        assert race["preceded"] == ["cache_update"] and race["decided_by"] == "data" and race["load_failed"]
        assert race["same_trace"] is True and race["matched_by"] in ("trace", "link")
        (update,) = consumer_updates(spans, module_id)
        lag, depth = update.attributes[MESSAGING_LAG_MS], update.attributes[MESSAGING_QUEUE_DEPTH]
        assert update.attributes[MESSAGING_SYSTEM] == system
        assert lag >= min_lag_ms, f"{module_id}: lag {lag} ms, yet {min_lag_ms} ms of backlog was ahead of it"
        check = next(c for c in race["evidence"] if c["stage"] == "cache_update")
        assert check["consumer_lag_ms"] == lag and check["queue_depth"] == depth
        assert check["messaging_system"] == system and check["consumer_lag_clock"] == "publisher"
        assert f"took the event {lag:,.1f} ms after it was published" in check["explanation"]
        assert f"queue depth {depth:,} at receipt" in check["explanation"]
        commit = next(c for c in race["evidence"] if c["stage"] == "db_commit")
        assert "consumer_lag_ms" not in commit  # the commit was not a consumer's
        figures[module_id] = (lag, depth)
    assert report["summary"]["clean"] >= len(clean)
    listed = {r["module_id"] for key in ("races", "ambiguous", "stale_reads") for r in report[key]}
    assert not listed & set(clean)

    status, table = traced.run(capsys, "races", "--format", "table")
    assert status == 1
    for module_id in raced:
        lag, depth = figures[module_id]
        assert f"[cache_update: consumer lag {lag:,.1f} ms, depth {depth:,}]" in table, table

    status, diagnosis = traced.json(capsys, "diagnose")
    assert status == 1
    failed = {d["module_id"]: d for d in diagnosis["failed_loads"]}
    assert sorted(failed) == sorted(raced)
    for module_id in raced:
        lag, depth = figures[module_id]
        assert failed[module_id]["cause"] == "race" and failed[module_id]["strength"] == "data version"
        line = " ".join(failed[module_id]["evidence"])
        assert f"took the event {lag:,.1f} ms after it was published" in line and f"queue depth {depth:,}" in line
    return figures
