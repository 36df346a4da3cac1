"""The vocabulary: standard keys spelled as OpenTelemetry spells them, the contract's names unchanged."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import db_attributes, host_attributes, process_attributes
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
