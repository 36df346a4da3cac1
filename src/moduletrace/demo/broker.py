"""The demo's message bus between the creation and its cache update, when ``demo --broker URL`` asks.

    redis://[:password@]host:port/db     a Redis stream, read by a consumer group (Redis >= 5)
    amqp://user:password@host:port/vhost a RabbitMQ queue (also amqps://, rediss://)

Each run gets a stream or queue of its own (``moduletrace-demo-<hex>``), removed at the end; it
expires within an hour should the run die before that. The clients (redis-py, pika) are imported
only here, so the broker-free demo needs neither: ``pip install 'moduletrace[demo-broker]'``.
Every failure to reach or use the broker while setting up is one :class:`InputError`, with no
credentials in it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from moduletrace.errors import InputError
from moduletrace.instrumentation.integrations import messaging
from moduletrace.redaction import redact

#: URL scheme -> messaging.system (the OpenTelemetry value)
SYSTEMS = {"redis": "redis", "rediss": "redis", "amqp": "rabbitmq", "amqps": "rabbitmq"}
#: The indexer's consumer group (Redis) and its name as a consumer.
GROUP, CONSUMER = "indexer", "indexer-1"
#: A stream or queue the run could not remove goes away by itself after this long.
EXPIRES_S = 3600
_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Broker:
    """Where the demo's events go: the broker's URL and the stream or queue of this run."""

    url: str
    destination: str

    @property
    def system(self) -> str:
        return SYSTEMS[urlsplit(self.url).scheme.lower()]

    @property
    def shown(self) -> str:
        """The URL without its credentials."""
        return _shown(self.url)


def broker_for(url: str) -> Broker:
    """The broker ``--broker URL`` names, with a new stream or queue name; InputError for a URL we cannot use."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise InputError(f"--broker {_shown(url)}: not a URL") from None
    if parts.scheme.lower() not in SYSTEMS or not parts.hostname:
        raise InputError(
            f"--broker {_shown(url)}: expected redis://host:port/db or amqp://user:password@host:port/ "
            "(also rediss://, amqps://)"
        )
    return Broker(url, f"moduletrace-demo-{secrets.token_hex(4)}")


@dataclass(frozen=True)
class Delivery:
    """One message as the consumer took it: its fields or headers, and what the broker says of it."""

    fields: Mapping[str, str]
    message_id: object
    received_ns: int  # taken as soon as the read returned
    broker_published_ns: int | None  # the broker's own time of the message, when it has one
    tag: object  # what acknowledging it needs


class Bus(Protocol):
    """What the demo's services do with the broker: the same for Redis Streams and RabbitMQ."""

    broker: Broker

    def create(self) -> None:
        """Create this run's stream (with the indexer's group) or queue."""

    def remove(self) -> None:
        """Delete this run's stream or queue."""

    def publish(self, messages: Sequence[Mapping[str, str]]) -> None:
        """Publish ``messages`` in this order, none interleaved with another thread's."""

    def take(self, timeout_s: float) -> Delivery | None:
        """The next message for the indexer, or None after ``timeout_s``."""

    def depth(self) -> int | None:
        """The messages still waiting for the indexer, sampled from the broker."""

    def ack(self, delivery: Delivery) -> None: ...

    def close(self) -> None: ...


def connect(broker: Broker) -> Bus:
    """A connection to the broker; InputError (one line, no credentials) when it cannot be had."""
    try:
        return _RedisBus(broker) if broker.system == "redis" else _AmqpBus(broker)
    except ImportError as exc:
        raise InputError(
            f"--broker {broker.shown}: the {exc.name or 'client'} package is needed "
            "(pip install 'moduletrace[demo-broker]')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any client's failure to connect is the user's broker
        raise InputError(f"--broker {broker.shown}: cannot reach {broker.system} ({_reason(exc)})") from None


def prepare(broker: Broker) -> None:
    """Check the broker answers and create this run's stream (with the indexer's group) or queue."""
    bus = connect(broker)
    try:
        bus.create()
    except Exception as exc:  # noqa: BLE001 - as in connect()
        raise InputError(f"--broker {broker.shown}: cannot create {broker.destination} ({_reason(exc)})") from None
    finally:
        bus.close()


def remove(broker: Broker) -> None:
    """Delete this run's stream or queue; best effort (it expires anyway)."""
    try:
        bus = connect(broker)
    except InputError:
        return
    try:
        bus.remove()
    except Exception:  # noqa: BLE001, S110 - best effort: the destination expires by itself
        pass
    finally:
        bus.close()


class _RedisBus:
    """A Redis stream read by the ``indexer`` consumer group (XADD, XREADGROUP, XACK)."""

    def __init__(self, broker: Broker) -> None:
        import redis

        self.broker = broker
        self._client = redis.Redis.from_url(broker.url, socket_connect_timeout=_TIMEOUT_S, socket_timeout=10)
        self._client.ping()

    def create(self) -> None:
        self._client.xgroup_create(self.broker.destination, GROUP, id="0", mkstream=True)
        self._client.expire(self.broker.destination, EXPIRES_S)

    def remove(self) -> None:
        self._client.delete(self.broker.destination)

    def publish(self, messages: Sequence[Mapping[str, str]]) -> None:
        for message in messages:
            self._client.xadd(self.broker.destination, dict(message))  # type: ignore[arg-type]

    def take(self, timeout_s: float) -> Delivery | None:
        got: Any = self._client.xreadgroup(
            GROUP, CONSUMER, {self.broker.destination: ">"}, count=1, block=int(timeout_s * 1000)
        )
        received_ns = time.time_ns()
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                return Delivery(_strings(fields), entry_id, received_ns, messaging.stream_entry_ns(entry_id), entry_id)
        return None

    def depth(self) -> int | None:
        return messaging.stream_backlog(self._client, self.broker.destination, GROUP)

    def ack(self, delivery: Delivery) -> None:
        self._client.xack(self.broker.destination, GROUP, delivery.tag)  # type: ignore[arg-type]

    def close(self) -> None:
        self._client.close()


class _AmqpBus:
    """A RabbitMQ queue on the default exchange; the indexer takes one message at a time (prefetch 1)."""

    def __init__(self, broker: Broker) -> None:
        import pika

        self.broker = broker
        parameters = pika.URLParameters(broker.url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = _TIMEOUT_S
        parameters.stack_timeout = _TIMEOUT_S * 2
        self._pika = pika
        self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()  # a publish returns once the queue holds the message
        self._lock = threading.Lock()  # pika's connection is not thread-safe; the services' threads share it
        self._consuming: Iterator[Any] | None = None
        self._sampling: Any = None  # a channel of its own for the passive declares

    def create(self) -> None:
        self._channel.queue_declare(self.broker.destination, arguments={"x-expires": EXPIRES_S * 1000})

    def remove(self) -> None:
        self._channel.queue_delete(self.broker.destination)

    def publish(self, messages: Sequence[Mapping[str, str]]) -> None:
        with self._lock:
            for message in messages:
                properties = self._pika.BasicProperties(headers=dict(message), message_id=secrets.token_hex(8))
                self._channel.basic_publish("", self.broker.destination, b"", properties)

    def take(self, timeout_s: float) -> Delivery | None:
        if self._consuming is None:
            self._channel.basic_qos(prefetch_count=1)
            self._consuming = self._channel.consume(self.broker.destination, inactivity_timeout=timeout_s)
            self._sampling = self._connection.channel()
        method, properties, _body = next(self._consuming)
        if method is None:
            return None
        received_ns = time.time_ns()
        return Delivery(
            _strings(properties.headers or {}), properties.message_id, received_ns, None, method.delivery_tag
        )

    def depth(self) -> int | None:
        return messaging.amqp_queue_depth(self._sampling, self.broker.destination)

    def ack(self, delivery: Delivery) -> None:
        self._channel.basic_ack(delivery.tag)

    def close(self) -> None:
        try:
            if self._connection.is_open:
                self._connection.close()
        except Exception:  # noqa: BLE001, S110 - closing a connection the broker already dropped
            pass


def _strings(fields: Mapping[Any, Any]) -> dict[str, str]:
    """Stream fields (bytes from redis-py) or AMQP headers as text."""
    return {_text(k): _text(v) for k, v in fields.items()}


def _text(value: object) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _shown(url: str) -> str:
    """``url`` without user, password and query (and never more than 200 characters of it)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return redact(url, limit=200)
    authority, slash, path = rest.partition("/")
    return redact(f"{scheme}://{authority.rpartition('@')[2]}{slash}{path.partition('?')[0]}", limit=200)


def _reason(exc: BaseException) -> str:
    return redact(str(exc) or repr(exc), limit=200) or type(exc).__name__
