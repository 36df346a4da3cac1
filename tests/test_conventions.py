"""The vocabulary: standard keys spelled as OpenTelemetry spells them, the contract's names unchanged."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.semconv._incubating.attributes import db_attributes, host_attributes, process_attributes
from opentelemetry.semconv._incubating.metrics import db_metrics
from opentelemetry.semconv.attributes import error_attributes, exception_attributes, http_attributes, service_attributes

from moduletrace import conventions as c


def test_standard_keys_equal_the_semantic_conventions() -> None:
    assert c.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert c.EXCEPTION_TYPE == exception_attributes.EXCEPTION_TYPE
    assert c.HTTP_RESPONSE_STATUS_CODE == http_attributes.HTTP_RESPONSE_STATUS_CODE
    assert c.DB_SYSTEM == db_attributes.DB_SYSTEM
    assert c.DB_SYSTEM_NAME == db_attributes.DB_SYSTEM_NAME
    assert c.DB_COLLECTION_NAME == db_attributes.DB_COLLECTION_NAME
    assert c.SERVICE_NAME == service_attributes.SERVICE_NAME
    assert c.SERVICE_INSTANCE_ID == "service.instance.id"
    assert c.HOST_ID == host_attributes.HOST_ID and c.HOST_NAME == host_attributes.HOST_NAME
    assert c.PROCESS_PID == process_attributes.PROCESS_PID


def test_the_contract_names_are_the_ones_saved_queries_use() -> None:
    assert list(c.SPAN_NAMES.values()) == [
        "module_create_start",
        "module_create_db_commit",
        "module_create_cache_update",
        "module_load_request",
        "module_load_db_query",
    ]
    assert (c.MODULE_ID, c.MODULE_STAGE) == ("module.id", "module.stage")
    assert c.STAGES == {name: stage for stage, name in c.SPAN_NAMES.items()}


def test_the_metric_names_units_and_keys_are_the_semantic_conventions() -> None:
    assert c.DB_CLIENT_CONNECTION_COUNT == db_metrics.DB_CLIENT_CONNECTION_COUNT
    assert c.DB_CLIENT_CONNECTION_MAX == db_metrics.DB_CLIENT_CONNECTION_MAX
    assert c.DB_CLIENT_CONNECTION_PENDING_REQUESTS == db_metrics.DB_CLIENT_CONNECTION_PENDING_REQUESTS
    assert c.DB_CLIENT_CONNECTION_TIMEOUTS == db_metrics.DB_CLIENT_CONNECTION_TIMEOUTS
    assert c.DB_CLIENT_CONNECTION_WAIT_TIME == db_metrics.DB_CLIENT_CONNECTION_WAIT_TIME
    assert c.DB_CLIENT_CONNECTION_POOL_NAME == db_attributes.DB_CLIENT_CONNECTION_POOL_NAME
    assert c.DB_CLIENT_CONNECTION_STATE == db_attributes.DB_CLIENT_CONNECTION_STATE
    assert (c.CONNECTION_STATE_IDLE, c.CONNECTION_STATE_USED) == tuple(
        v.value for v in db_attributes.DbClientConnectionStateValues
    )
    # The units the conventions give each instrument they define.
    meter = MeterProvider(shutdown_on_exit=False).get_meter("semconv")
    for name, unit in [
        ("db_client_connection_count", c.UNIT_CONNECTION),
        ("db_client_connection_max", c.UNIT_CONNECTION),
        ("db_client_connection_pending_requests", c.UNIT_REQUEST),
        ("db_client_connection_timeouts", c.UNIT_TIMEOUT),
        ("db_client_connection_wait_time", c.UNIT_SECONDS),
    ]:
        assert getattr(db_metrics, f"create_{name}")(meter).unit == unit, name
