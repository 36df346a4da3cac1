"""Every shipped collector file is proven with the real binary built from our manifest."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.peers import BACKEND_CONFIGS, METRICS_CONFIGS, binary, start_collector
from tests.support.pipeline import collector_env
from tests.support.processes import ROOT, free_port, python_env, wait_until

pytestmark = pytest.mark.peers
CONFIGS = sorted((ROOT / "collector").glob("otelcol*.yaml"))
BACKENDS = sorted((ROOT / "collector" / "backends").glob("*.yaml"))
LAUNCHER = ROOT / "collector" / "otelcol.sh"
#: Every set of backends a deployment can switch on, by their endpoint variables.
BACKEND_SETS = [c for n in range(len(BACKEND_CONFIGS) + 1) for c in itertools.combinations(sorted(BACKEND_CONFIGS), n)]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("collector"), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_passes_validate(config: Path) -> None:
    result = validate(config)
    assert result.returncode == 0, result.stderr


def launch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """collector/otelcol.sh, as a user runs it, on our collector build."""
    clean = {k: v for k, v in os.environ.items() if k not in BACKEND_CONFIGS}
    return subprocess.run(
        [str(LAUNCHER), *args],
        env={**clean, "OTELCOL": binary("collector"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_shipped_files_are_the_ones_the_launcher_and_the_tests_merge() -> None:
    assert BACKENDS == sorted(BACKEND_CONFIGS.values())
    text = LAUNCHER.read_text()
    for variable, file in BACKEND_CONFIGS.items():
        assert f'"${{{variable}:-}}"' in text and f"$here/backends/{file.name}" in text


def test_the_launcher_adds_a_scrape_file_only_when_its_targets_are_given() -> None:
    text = LAUNCHER.read_text()
    for variable, file in METRICS_CONFIGS.items():
        assert f'"${{{variable}:-}}"' in text and f"$here/metrics/{file.name}" in text
        result = launch("validate", env={variable: f"[127.0.0.1:{free_port()}, 127.0.0.1:{free_port()}]"})
        assert result.returncode == 0, result.stderr
        with_targets = launch(env={variable: "[127.0.0.1:9187]", "OTELCOL": "echo"}).stdout
        without = launch(env={variable: "", "OTELCOL": "echo"}).stdout
        assert str(file) in with_targets.split() and str(file) not in without.split()


@pytest.mark.parametrize("backends", BACKEND_SETS, ids=lambda b: "+".join(b) or "archive-only")
def test_the_launcher_validates_each_set_of_backends(backends: tuple[str, ...]) -> None:
    result = launch("validate", env={name: f"127.0.0.1:{free_port()}" for name in backends})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda p: p.name)
def test_a_backend_file_without_its_endpoint_variable_fails_validate(backend: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in BACKEND_CONFIGS}
    result = subprocess.run(
        [
            binary("collector"),
            "validate",
            "--config",
            str(ROOT / "collector" / "otelcol.yaml"),
            "--config",
            str(backend),
        ],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert 'requires a non-empty "endpoint"' in result.stderr


def test_the_shipped_jaeger_config_passes_jaegers_validate() -> None:
    result = subprocess.run(
        [binary("jaeger"), "validate", "--config", str(ROOT / "collector" / "jaeger.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_a_deliberately_broken_copy_fails_validate(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    # The file exporter cannot rotate a file it appends to; validate must say so.
    broken.write_text(
        (ROOT / "collector" / "otelcol.yaml")
        .read_text()
        .replace("    append: true\n", "    append: true\n    rotation:\n      max_megabytes: 10\n")
    )
    result = validate(broken)
    assert result.returncode != 0
    assert "append and rotation enabled at the same time is not supported" in result.stderr


def backend_env(directory: Path, backends: tuple[str, ...]) -> dict[str, int | str]:
    env = collector_env(directory, None)
    for name in BACKEND_CONFIGS:
        env.pop(name, None)
    return {**env, **{name: f"127.0.0.1:{free_port()}" for name in backends}}


@pytest.mark.parametrize("backends", BACKEND_SETS, ids=lambda b: "+".join(b) or "archive-only")
def test_the_shipped_config_starts_and_is_healthy_with_each_set_of_backends(
    tmp_path: Path, backends: tuple[str, ...]
) -> None:
    # validate does not build tail-sampling policies (a misspelt policy or OTTL condition passes
    # it and fails at start), so start the config too.
    collector = start_collector(
        tmp_path, (ROOT / "collector" / "otelcol.yaml").read_text(), backend_env(tmp_path, backends)
    )
    collector.process.stop()
    log = collector.process.log.read_text()
    assert "Everything is ready" in log
    for name, file in BACKEND_CONFIGS.items():
        exporter = f"otlp_grpc/{file.stem}"
        assert (exporter in log) == (name in backends), (exporter, backends)


def _send_lifecycle_spans(endpoint: str, count: int) -> None:
    emit = (
        "import moduletrace\n"
        "moduletrace.configure(service_name='quiet-service', instrument_httpx=False)\n"
        f"for n in range({count}):\n"
        "    with moduletrace.create_start(f'quiet-{n}'):\n"
        "        pass\n"
        "moduletrace.shutdown(10)\n"
    )
    subprocess.run(
        [sys.executable, "-c", emit], env=python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}), check=True, timeout=60
    )


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def test_with_no_backend_configured_nothing_retries_or_queues_and_the_checkout_stays_clean(tmp_path: Path) -> None:
    # As a user runs it from the checkout: no backend variable, no archive or queue path given.
    home, checkout = tmp_path / "home", tmp_path / "checkout"
    checkout.mkdir()
    env = {
        k: v for k, v in backend_env(tmp_path, ()).items() if k not in ("MODULETRACE_ARCHIVE", "COLLECTOR_QUEUE_DIR")
    }
    collector = start_collector(checkout, (ROOT / "collector" / "otelcol.yaml").read_text(), {**env, "HOME": str(home)})
    try:
        _send_lifecycle_spans(collector.otlp_http, 5)
        archive = home / ".local" / "state" / "moduletrace" / "spans.jsonl"
        assert wait_until(lambda: _lines(archive) > 0, timeout=20), "the archive never received the spans"
        time.sleep(2)  # past the tail-sampling wait and a first retry, had there been a backend
    finally:
        collector.process.stop()
    log = collector.process.log.read_text()
    assert "retry" not in log.lower() and "otlp_grpc" not in log, log[-2000:]
    assert sorted(p.name for p in checkout.iterdir()) == ["collector.log", "collector.yaml"]
    assert not (home / ".local" / "state" / "moduletrace" / "queue").exists()


def test_with_jaeger_only_nothing_is_sent_or_queued_for_tempo(tmp_path: Path) -> None:
    from tests.support.peers import start_jaeger

    jaeger = start_jaeger(tmp_path)
    collector = None
    try:
        env = {**backend_env(tmp_path, ()), "JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc}
        collector = start_collector(tmp_path, (ROOT / "collector" / "otelcol.yaml").read_text(), env)
        _send_lifecycle_spans(collector.otlp_http, 5)

        def in_jaeger() -> int:
            response = httpx.get(f"{jaeger.query_url}/api/traces", params={"service": "quiet-service", "limit": 20})
            return len(response.json().get("data") or [])

        assert wait_until(lambda: in_jaeger() == 5, timeout=30)
    finally:
        if collector is not None:
            collector.process.stop()
        jaeger.process.stop()
    log = collector.process.log.read_text()
    assert "tempo" not in log.lower() and "retry" not in log.lower(), log[-2000:]
    assert all("tempo" not in p.name for p in (tmp_path / "queue").iterdir())


def _components(config: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    used = set()
    for kind in ("receivers", "processors", "exporters", "extensions", "connectors"):
        for name in config.get(kind) or {}:
            used.add((kind, name.split("/")[0]))
    return used


def test_the_builder_manifest_lists_exactly_the_components_the_configs_use() -> None:
    listed = subprocess.run([binary("collector"), "components"], capture_output=True, text=True, check=True).stdout
    kinds = ("receivers", "processors", "exporters", "extensions", "connectors")
    built = {
        (kind, entry["name"])
        for kind, entries in yaml.safe_load(listed).items()
        if kind in kinds
        for entry in entries or []
    }
    shipped = CONFIGS + BACKENDS + sorted(METRICS_CONFIGS.values())
    used = set().union(*(_components(yaml.safe_load(p.read_text())) for p in shipped))
    # The debug exporter is built in for troubleshooting (`exporters: [debug]` during an incident).
    assert built - used == {("exporters", "debug")}
    assert used <= built


def test_the_manifest_pins_one_collector_release_for_every_module() -> None:
    manifest = (ROOT / "collector" / "builder-config.yaml").read_text()
    versions = set(re.findall(r"gomod: \S+ (v\d+\.\d+)\.\d+", manifest))
    assert versions == {"v0.161", "v1.67"}  # beta modules v0.N pair with stable v1.(N-94)
