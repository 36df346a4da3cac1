"""Under the opentelemetry-instrument agent: its provider flushed on SIGTERM, what configure() could not apply said."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.deployments.hosts import host_env, lifecycle_spans, running
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import free_port

AGENT = str(Path(sys.executable).parent / "opentelemetry-instrument")
AGENT_ENV = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",  # the distro's default is grpc
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def test_uvicorn_under_the_agent_loses_no_span_on_sigterm_and_names_what_configure_ignored(tmp_path: Path) -> None:
    port = free_port()
    argv = [AGENT, sys.executable, "-m", "uvicorn", "tests.deployments.apps.asgi:app", "--port", str(port)]
    with OTLPReceiver() as receiver:
        with running(argv, host_env(receiver, AGENT_ENV), tmp_path, "agent") as host:
            host.wait_http(f"http://127.0.0.1:{port}/health")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for n in range(30):
                    assert client.post(f"/modules/m-{n}").status_code == 200
            status = host.terminate()
            err = host.stderr()
        spans = lifecycle_spans(receiver)
    assert len(spans) == 90, f"{len(spans)}/90 spans exported\n{err[-3000:]}"
    assert status == -15, err[-3000:]
    # configure(service_name=...) could not rename the agent's resource: said once, with the fix.
    said = "ignored: service_name='module-service' (the provider's service.name is "
    assert err.count(said) == 1 and "it comes from OTEL_SERVICE_NAME)" in err, err[-3000:]
    resource = spans[0]["resource"]
    assert resource["service.name"] != "module-service"  # type: ignore[index]
    # What the race rule needs to tell one process / one host, added where the agent left it out.
    assert resource["host.name"] and resource["process.pid"] and resource["service.instance.id"]  # type: ignore[index]
    assert "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=otel,host,process" in err
