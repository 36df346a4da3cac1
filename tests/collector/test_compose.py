"""compose.yaml cannot run here (no Docker engine), so it is checked against the files the tests do run.

Every environment variable compose sets must be one the mounted config reads; every endpoint a
service points at must be where the target service listens; the images must be the versions
our manifest and peers script pin; Grafana's data sources and dashboard must point at the
services and the span names of the contract.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from moduletrace.conventions import LIFECYCLE_SPAN_NAMES
from tests.support.processes import ROOT

COLLECTOR = ROOT / "collector"
COMPOSE = yaml.safe_load((COLLECTOR / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def env_names(path: Path) -> set[str]:
    """Variables a config reads: ${env:NAME...} (collector, Jaeger) or ${NAME...} (Tempo -config.expand-env)."""
    text = path.read_text()
    return set(re.findall(r"\$\{env:([A-Z0-9_]+)", text)) | set(re.findall(r"\$\{([A-Z0-9_]+)(?::-[^}]*)?\}", text))


def mounted_config(service: str) -> Path:
    for volume in SERVICES[service]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.endswith(".yaml") and target.startswith("/etc/moduletrace/"):
            return COLLECTOR / source
    raise AssertionError(f"{service} mounts no config")


def command_configs(service: str) -> list[Path]:
    """The files a service's command line loads (--config=...), as shipped in collector/."""
    out = []
    for part in SERVICES[service]["command"]:
        match = re.match(r"-(?:-config|config\.file)=/etc/moduletrace/(.+)", part)
        if match:
            out.append(COLLECTOR / match.group(1))
    return out


def port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]


def test_each_service_mounts_the_shipped_config_it_is_given_on_its_command_line() -> None:
    for service, name in (("collector", "otelcol.yaml"), ("jaeger", "jaeger.yaml"), ("tempo", "tempo.yaml")):
        assert mounted_config(service).name == name
        assert any(f"/etc/moduletrace/{name}" in part for part in SERVICES[service]["command"])


def test_compose_sets_only_variables_the_configs_read() -> None:
    for service in ("collector", "jaeger", "tempo"):
        read = set().union(*(env_names(p) for p in command_configs(service)))
        unknown = set(SERVICES[service]["environment"]) - read
        assert not unknown, f"{service} sets variables its config never reads: {unknown}"


def test_the_collector_loads_the_backend_file_of_each_endpoint_compose_sets() -> None:
    from tests.support.peers import BACKEND_CONFIGS

    configs = command_configs("collector")
    assert all(p.is_file() for p in configs) and configs[0].name == "otelcol.yaml"
    environment = SERVICES["collector"]["environment"]
    assert set(configs[1:]) == {file for name, file in BACKEND_CONFIGS.items() if name in environment}


LISTEN_ADDRESSES = {
    "collector": ("OTLP_GRPC_ENDPOINT", "OTLP_HTTP_ENDPOINT", "HEALTH_ENDPOINT"),
    "jaeger": (
        "JAEGER_QUERY_HTTP_ENDPOINT",
        "JAEGER_QUERY_GRPC_ENDPOINT",
        "JAEGER_HEALTH_ENDPOINT",
        "JAEGER_OTLP_GRPC_ENDPOINT",
        "JAEGER_OTLP_HTTP_ENDPOINT",
    ),
    "tempo": ("TEMPO_OTLP_GRPC_ENDPOINT", "TEMPO_OTLP_HTTP_ENDPOINT"),
}


def test_containers_listen_on_all_interfaces_while_the_files_default_to_loopback() -> None:
    for service, names in LISTEN_ADDRESSES.items():
        for name in names:
            assert SERVICES[service]["environment"][name].startswith("0.0.0.0:"), (service, name)
            default = re.search(rf"{name}:-([^}}]+)}}", mounted_config(service).read_text())
            assert default and default.group(1).startswith("127.0.0.1:"), (service, name)


def test_the_collector_exports_where_jaeger_and_tempo_listen() -> None:
    collector = SERVICES["collector"]["environment"]
    assert collector["JAEGER_OTLP_ENDPOINT"] == "jaeger:" + port(
        SERVICES["jaeger"]["environment"]["JAEGER_OTLP_GRPC_ENDPOINT"]
    )
    assert collector["TEMPO_OTLP_ENDPOINT"] == "tempo:" + port(
        SERVICES["tempo"]["environment"]["TEMPO_OTLP_GRPC_ENDPOINT"]
    )
    published = {p.split(":")[0] for p in SERVICES["collector"]["ports"]}
    assert published == {port(collector["OTLP_GRPC_ENDPOINT"]), port(collector["OTLP_HTTP_ENDPOINT"])}


def test_images_are_the_versions_the_tests_build() -> None:
    manifest = yaml.safe_load((COLLECTOR / "builder-config.yaml").read_text())
    assert SERVICES["collector"]["image"] == f"otel/opentelemetry-collector-contrib:{manifest['dist']['version']}"
    peers = (ROOT / "scripts" / "peers.sh").read_text()
    # Jaeger's module v1.76.0 is the same commit as its v2.13.0 release (the image tag).
    assert "jaeger_version=v1.76.0" in peers and SERVICES["jaeger"]["image"] == "jaegertracing/jaeger:2.13.0"
    for service in SERVICES.values():
        assert ":" in service["image"] and not service["image"].endswith(":latest")


def test_grafana_data_sources_point_at_the_services() -> None:
    datasources = {
        d["type"]: d for d in yaml.safe_load((COLLECTOR / "grafana" / "datasources.yaml").read_text())["datasources"]
    }
    tempo_port = str(yaml.safe_load((COLLECTOR / "tempo.yaml").read_text())["server"]["http_listen_port"])
    assert datasources["tempo"]["url"] == f"http://tempo:{tempo_port}"
    assert datasources["jaeger"]["url"] == "http://jaeger:" + port(
        SERVICES["jaeger"]["environment"]["JAEGER_QUERY_HTTP_ENDPOINT"]
    )
    mounts = [v.split(":")[0] for v in SERVICES["grafana"]["volumes"]]
    assert all((COLLECTOR / m).exists() for m in mounts)


def test_the_dashboard_queries_use_the_contract_span_names_and_the_provisioned_source() -> None:
    dashboard = json.loads((COLLECTOR / "grafana" / "moduletrace.json").read_text())
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    traceql = [t["query"] for t in targets if t["datasource"]["type"] == "tempo"]
    searches = [t for t in targets if t["datasource"]["type"] == "jaeger"]
    assert traceql and searches and len(traceql) + len(searches) == len(targets)
    for query in traceql:
        names = set(re.findall(r'span:name = "([a-z_]+)"', query))
        assert names <= LIFECYCLE_SPAN_NAMES
        assert "module." in query
    for search in searches:
        # Jaeger's search: a service, a span name of the contract and/or a tag; run for real in tests/viewing.
        assert search["queryType"] == "search" and search["service"].startswith("$")
        assert search.get("operation", "module_create_start") in LIFECYCLE_SPAN_NAMES
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = set(re.findall(r"\$([a-z_]+)", json.dumps(searches)))
    assert used == variables
    sources = {t["datasource"]["uid"] for t in targets}
    provisioned = {
        d["uid"] for d in yaml.safe_load((COLLECTOR / "grafana" / "datasources.yaml").read_text())["datasources"]
    }
    assert sources <= provisioned
