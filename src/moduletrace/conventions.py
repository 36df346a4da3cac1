"""The vocabulary: every span name, metric name and attribute key that instrumentation writes and analysis reads.

Fixed by the product contract (docs/design.md): users' saved Jaeger/TraceQL queries and dashboards
depend on these strings. Nothing else in the package spells them; instrumentation, analysis and the
backend queries all import them from here.

Standard OpenTelemetry keys are spelled here too, as plain strings equal to the
``opentelemetry.semconv`` constants (a test holds them equal): importing semconv costs the CLI
~0.1 s of start-up for a handful of strings.
"""

from __future__ import annotations

from typing import Final, Literal

# --- lifecycle stages and span names -----------------------------------------------------------

StageName = Literal["create_start", "db_commit", "cache_update", "load_request", "load_db_query"]

CREATE_START: Final = "create_start"
DB_COMMIT: Final = "db_commit"
CACHE_UPDATE: Final = "cache_update"
LOAD_REQUEST: Final = "load_request"
LOAD_DB_QUERY: Final = "load_db_query"

#: stage -> span name, in lifecycle order.
SPAN_NAMES: Final[dict[str, str]] = {
    CREATE_START: "module_create_start",
    DB_COMMIT: "module_create_db_commit",
    CACHE_UPDATE: "module_create_cache_update",
    LOAD_REQUEST: "module_load_request",
    LOAD_DB_QUERY: "module_load_db_query",
}
#: span name -> stage.
STAGES: Final[dict[str, str]] = {name: stage for stage, name in SPAN_NAMES.items()}
LIFECYCLE_SPAN_NAMES: Final[frozenset[str]] = frozenset(SPAN_NAMES.values())
#: The creation stages a load is judged against, in order.
CREATION_STAGES: Final = (DB_COMMIT, CACHE_UPDATE)
CREATION_SPAN_NAMES: Final = tuple(SPAN_NAMES[s] for s in (CREATE_START, DB_COMMIT, CACHE_UPDATE))

# --- attributes on every lifecycle span --------------------------------------------------------

MODULE_ID: Final = "module.id"
MODULE_STAGE: Final = "module.stage"
#: True on a span whose task was cancelled (asyncio.CancelledError) before the stage finished.
MODULE_CANCELLED: Final = "module.cancelled"
#: On span links: "creation" (the link points at the module's creation) or "request"
#: (the link points at the span that was current when the load began).
MODULE_LINK_TYPE: Final = "module.link.type"
LINK_CREATION: Final = "creation"
LINK_REQUEST: Final = "request"

#: Module ids longer than this are truncated (a span attribute is not a blob store).
MAX_MODULE_ID_LENGTH: Final = 256

# --- evidence: what the data looked like (decides races without clocks) ------------------------

DATA_PREFIX: Final = "module.data."
#: On a commit: the version written (row version, LSN, log position).
DATA_VERSION: Final = "module.data.version"
#: On a read: the version the read saw.
DATA_OBSERVED_VERSION: Final = "module.data.observed_version"
#: On a read: whether the read found the module's row.
DATA_FOUND: Final = "module.data.found"
CACHE_PREFIX: Final = "module.cache."
#: On a cache read: hit (True) or miss (False).
CACHE_HIT: Final = "module.cache.hit"
#: On a cache update: the version written.
CACHE_VERSION: Final = "module.cache.version"

# --- evidence: the token at the load ------------------------------------------------------------

AUTH_PREFIX: Final = "module.auth."
AUTH_TOKEN_EXPIRES_IN_S: Final = "module.auth.token_expires_in_s"
AUTH_TOKEN_EXPIRED: Final = "module.auth.token_expired"
AUTH_TOKEN_AGE_S: Final = "module.auth.token_age_s"
AUTH_TOKEN_TTL_S: Final = "module.auth.token_ttl_s"
AUTH_TOKEN_NOT_YET_VALID: Final = "module.auth.token_not_yet_valid"
#: A keyed hash of the token (never the token).
AUTH_TOKEN_ID: Final = "module.auth.token_id"
AUTH_STATUS: Final = "module.auth.status"
#: The ``error`` code of a ``WWW-Authenticate`` challenge (RFC 6750), e.g. invalid_token.
AUTH_ERROR: Final = "module.auth.error"

# --- evidence: the wait for a pooled connection --------------------------------------------------

POOL_PREFIX: Final = "module.pool."
POOL_NAME: Final = "module.pool.name"
POOL_WAIT_MS: Final = "module.pool.wait_ms"
POOL_TIMED_OUT: Final = "module.pool.timed_out"
POOL_SIZE: Final = "module.pool.size"
POOL_TIMEOUT_S: Final = "module.pool.timeout_s"
POOL_IN_USE: Final = "module.pool.in_use"
#: Span event added when the wait for a connection timed out.
POOL_TIMEOUT_EVENT: Final = "pool.timeout"

# --- evidence: the replica a read went to ---------------------------------------------------------

DB_PREFIX: Final = "module.db."
#: On a read: whether the database it went to was a replica in recovery (a hot standby).
DB_REPLICA: Final = "module.db.replica"
#: On a read from a replica: how far its data was behind, in ms, measured right after the read
#: (0 when it had applied all the WAL it had received).
DB_REPLICA_LAG_MS: Final = "module.db.replica.lag_ms"
#: On a read from a replica: the time its data was as of (Unix ns): the commit time, on the
#: primary's clock, of the last transaction it had applied; the read's own time when caught up.
DB_REPLICA_AS_OF_NS: Final = "module.db.replica.as_of_ns"
#: On a read from a replica: WAL received but not yet applied, in bytes.
DB_REPLICA_PENDING_BYTES: Final = "module.db.replica.pending_bytes"

# --- metrics: the database client connection pool (OpenTelemetry semantic conventions) --------

#: Metric names and their units, equal to ``opentelemetry.semconv._incubating.metrics.db_metrics``.
#: Connections open now, by ``DB_CLIENT_CONNECTION_STATE`` (idle, used).
DB_CLIENT_CONNECTION_COUNT: Final = "db.client.connection.count"
#: The most connections the pool may open.
DB_CLIENT_CONNECTION_MAX: Final = "db.client.connection.max"
#: Checkouts waiting for a connection now.
DB_CLIENT_CONNECTION_PENDING_REQUESTS: Final = "db.client.connection.pending_requests"
#: Checkouts that gave up waiting (the pool's timeout).
DB_CLIENT_CONNECTION_TIMEOUTS: Final = "db.client.connection.timeouts"
#: How long each checkout waited for a connection, in seconds.
DB_CLIENT_CONNECTION_WAIT_TIME: Final = "db.client.connection.wait_time"
UNIT_CONNECTION: Final = "{connection}"
UNIT_REQUEST: Final = "{request}"
UNIT_TIMEOUT: Final = "{timeout}"
UNIT_SECONDS: Final = "s"
#: Metric attributes (equal to ``opentelemetry.semconv`` db attributes).
DB_CLIENT_CONNECTION_POOL_NAME: Final = "db.client.connection.pool.name"
DB_CLIENT_CONNECTION_STATE: Final = "db.client.connection.state"
CONNECTION_STATE_IDLE: Final = "idle"
CONNECTION_STATE_USED: Final = "used"

# --- the loader's attempts -----------------------------------------------------------------------

LOAD_PREFIX: Final = "module.load."
LOAD_ATTEMPT: Final = "module.load.attempt"
LOAD_ATTEMPTS_MAX: Final = "module.load.attempts_max"

#: Every prefix of moduletrace's evidence attributes.
EVIDENCE_PREFIXES: Final = (AUTH_PREFIX, POOL_PREFIX, DATA_PREFIX, CACHE_PREFIX, LOAD_PREFIX, DB_PREFIX)

# --- standard OpenTelemetry keys read or written (equal to opentelemetry.semconv) --------------

ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
DB_SYSTEM: Final = "db.system"  # the older key, still written by many instrumentations
DB_SYSTEM_NAME: Final = "db.system.name"
DB_COLLECTION_NAME: Final = "db.collection.name"
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
HOST_ID: Final = "host.id"
HOST_NAME: Final = "host.name"
PROCESS_PID: Final = "process.pid"

# --- messaging: the event that carries a module to its indexer (Redis Streams, RabbitMQ) ------

#: Standard keys (equal to opentelemetry.semconv messaging attributes), on the consumer's cache update.
MESSAGING_SYSTEM: Final = "messaging.system"  # "redis", "rabbitmq"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"  # the stream, or the queue
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"  # a stream entry id, an AMQP message-id
MESSAGING_CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"  # "process"
MESSAGING_PREFIX: Final = "module.messaging."
#: On a consumer's cache update: from the event's publication to its receipt by the consumer, in ms.
MESSAGING_LAG_MS: Final = "module.messaging.lag_ms"
#: Whose clock stamped the publication: "publisher" (the publish time carried in the message) or
#: "broker" (the broker's own timestamp, e.g. a stream entry id).
MESSAGING_LAG_CLOCK: Final = "module.messaging.lag_clock"
#: Messages still waiting behind it when it was received (undelivered stream entries of the group;
#: a queue's ready messages), sampled from the broker.
MESSAGING_QUEUE_DEPTH: Final = "module.messaging.queue_depth"
#: The message header / stream field that carries the publish time (Unix ns, decimal string).
PUBLISHED_NS_HEADER: Final = "moduletrace-published-ns"
