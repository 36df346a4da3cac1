"""A message bus between the creation and its cache update: Redis Streams, RabbitMQ (any client).

The creating service publishes an event; an indexer consumes it and makes the module loadable.
The module's trace goes with the event, in the message itself (stream fields, AMQP headers), so
the indexer's ``cache_update`` continues it; and the consumer records how late it took the event
(publish-to-receive lag, queue depth), which ``races`` and ``diagnose`` name when a load raced it.

Publisher, inside the creation (after its commit)::

    from moduletrace.instrumentation.integrations import messaging

    redis.xadd("modules", messaging.published({"module_id": module.id}))          # Redis Streams
    channel.basic_publish("", "modules", body,                                       # RabbitMQ (pika)
                          pika.BasicProperties(headers=messaging.published({})))

Consumer, as soon as the read returns::

    event = messaging.received(fields, system="redis", destination="modules", message_id=entry_id,
                               queue_depth=messaging.stream_backlog(redis, "modules", "indexer"))
    with moduletrace.cache_update(module_id, parent=event.carrier, attributes=event.attributes):
        ...

``parent=event.carrier, as_link=True`` links the creation instead of continuing its trace.
Asynchronous clients (redis.asyncio, aio-pika) sample the depth with the ``*_async`` twins.
The W3C keys are the ones ``carrier()`` writes (``traceparent``, ``tracestate``); the publish time
travels as ``moduletrace-published-ns``. Client spans of the bus itself (XADD, XREADGROUP) come
from the contrib instrumentations (opentelemetry-instrumentation-redis); these helpers add what
they lack: the carrier in the message and the lag. Nothing here raises into the host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from moduletrace.conventions import (
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_LAG_CLOCK,
    MESSAGING_LAG_MS,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_QUEUE_DEPTH,
    MESSAGING_SYSTEM,
    PUBLISHED_NS_HEADER,
)
from moduletrace.instrumentation._guard import internal_error
from moduletrace.instrumentation.propagation import carrier

__all__ = [
    "Received",
    "amqp_queue_depth",
    "amqp_queue_depth_async",
    "published",
    "received",
    "stream_backlog",
    "stream_backlog_async",
    "stream_entry_ns",
]

M = TypeVar("M", bound=MutableMapping[Any, Any])

_CARRIER_KEYS = ("traceparent", "tracestate")
_W3C = TraceContextTextMapPropagator()


def published(message: M) -> M:
    """Put the current trace's W3C carrier and the publish time into ``message`` and return it.

    ``message`` is what the client sends as fields or headers: a stream entry's fields, an AMQP
    headers table. Values are strings, which every client sends as they are. With no span open
    (or tracing off) only the publish time is added.
    """
    try:
        message.update(carrier())
        message[PUBLISHED_NS_HEADER] = str(time.time_ns())
    except Exception as exc:  # noqa: BLE001 - telemetry never raises into the host
        internal_error("messaging.published", exc)
    return message


@dataclass(frozen=True, slots=True)
class Received:
    """What a consumer took from one message: the creation's carrier and the lag attributes."""

    carrier: dict[str, str] | None  # None: the message carried no trace context
    attributes: dict[str, Any] = field(default_factory=dict)
    lag_ms: float | None = None


def received(
    message: Mapping[Any, Any] | None,
    *,
    system: str,
    destination: str,
    message_id: object = None,
    consumer_group: str | None = None,
    queue_depth: int | None = None,
    broker_published_ns: int | None = None,
    received_ns: int | None = None,
) -> Received:
    """Read the carrier and the publish time back from a consumed message's fields or headers.

    Call it as soon as the read returns (``received_ns`` defaults to now). The lag is measured from
    the publish time the message carries (the publisher's clock), else from ``broker_published_ns``
    (the broker's clock: :func:`stream_entry_ns` of a stream entry id; an AMQP ``timestamp``
    property, in whole seconds). Keys and values may be bytes (redis-py without
    ``decode_responses``); anything unreadable is left out.
    """
    now = time.time_ns() if received_ns is None else received_ns
    try:
        fields = _strings(message or {})
        found: dict[str, str] | None = {k: fields[k] for k in _CARRIER_KEYS if k in fields}
        if not _valid(found):
            found = None
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: system,
            MESSAGING_DESTINATION_NAME: destination,
            MESSAGING_OPERATION_TYPE: "process",
        }
        if message_id is not None:
            attributes[MESSAGING_MESSAGE_ID] = _text(message_id)
        if consumer_group:
            attributes[MESSAGING_CONSUMER_GROUP_NAME] = consumer_group
        if isinstance(queue_depth, int) and not isinstance(queue_depth, bool) and queue_depth >= 0:
            attributes[MESSAGING_QUEUE_DEPTH] = queue_depth
        published_ns, clock = _int(fields.get(PUBLISHED_NS_HEADER)), "publisher"
        if published_ns is None and broker_published_ns is not None:
            published_ns, clock = broker_published_ns, "broker"
        lag_ms = None
        if published_ns is not None and published_ns > 0:
            lag_ms = round((now - published_ns) / 1e6, 3)
            attributes[MESSAGING_LAG_MS] = lag_ms
            attributes[MESSAGING_LAG_CLOCK] = clock
        return Received(found, attributes, lag_ms)
    except Exception as exc:  # noqa: BLE001 - telemetry never raises into the host
        internal_error("messaging.received", exc)
        return Received(None)


def stream_entry_ns(entry_id: object) -> int | None:
    """The Redis server's time (Unix ns, ms resolution) in a stream entry id ``"<ms>-<seq>"``."""
    millis = _int(_text(entry_id).partition("-")[0])
    return None if millis is None else millis * 1_000_000


def stream_backlog(client: Any, stream: str, group: str) -> int | None:
    """Entries of ``stream`` not yet delivered to consumer ``group`` (XINFO GROUPS ``lag``,
    Redis 7), else the stream's length (XLEN). For a synchronous redis-py client; None on any error.
    """
    try:
        lag = _group_lag(client.xinfo_groups(stream), group)
        return lag if lag is not None else int(client.xlen(stream))
    except Exception:  # noqa: BLE001 - a sample the broker could not give is just missing
        return None


async def stream_backlog_async(client: Any, stream: str, group: str) -> int | None:
    """:func:`stream_backlog` for redis.asyncio."""
    try:
        lag = _group_lag(await client.xinfo_groups(stream), group)
        return lag if lag is not None else int(await client.xlen(stream))
    except Exception:  # noqa: BLE001 - a sample the broker could not give is just missing
        return None


def _group_lag(groups: Any, group: str) -> int | None:
    for info in groups:
        row = _strings(info)
        if row.get("name") == group:
            return _int(row.get("lag"))  # None before Redis 7, or when Redis cannot tell
    return None


def amqp_queue_depth(channel: Any, queue: str) -> int | None:
    """A RabbitMQ queue's ready messages, by a passive declare on a pika ``BlockingChannel``.

    A passive declare of a missing queue closes the channel (AMQP 404): use a channel of its own.
    """
    try:
        return int(channel.queue_declare(queue=queue, passive=True).method.message_count)
    except Exception:  # noqa: BLE001 - a sample the broker could not give is just missing
        return None


async def amqp_queue_depth_async(channel: Any, queue: str) -> int | None:
    """:func:`amqp_queue_depth` on an aio-pika channel (a channel of its own, as there)."""
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count)
    except Exception:  # noqa: BLE001 - a sample the broker could not give is just missing
        return None


def _valid(found: Mapping[str, str] | None) -> bool:
    """The carrier holds a valid W3C traceparent (not, say, a field that happens to share its name)."""
    if not found or "traceparent" not in found:
        return False
    return trace.get_current_span(_W3C.extract(found)).get_span_context().is_valid


def _text(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _strings(message: Mapping[Any, Any]) -> dict[str, str]:
    """Fields or headers as lower-case str keys and str values (bytes decoded)."""
    out: dict[str, str] = {}
    for key, value in message.items():
        if isinstance(value, (str, bytes, bytearray, int)) and not isinstance(value, bool):
            out[_text(key).lower()] = _text(value)
    return out


def _int(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(_text(value))
    except ValueError:
        return None
