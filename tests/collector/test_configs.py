"""Every shipped collector file is proven with the real binary built from our manifest."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.peers import binary, start_collector
from tests.support.pipeline import collector_env
from tests.support.processes import ROOT

pytestmark = pytest.mark.peers
CONFIGS = sorted((ROOT / "collector").glob("otelcol*.yaml"))


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("collector"), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_passes_validate(config: Path) -> None:
    result = validate(config)
    assert result.returncode == 0, result.stderr


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


def test_the_shipped_config_starts_and_is_healthy(tmp_path: Path) -> None:
    # validate does not build tail-sampling policies (a misspelt policy or OTTL condition passes
    # it and fails at start), so start the config too.
    collector = start_collector(
        tmp_path, (ROOT / "collector" / "otelcol.yaml").read_text(), collector_env(tmp_path, None)
    )
    collector.process.stop()
    assert "Everything is ready" in collector.process.log.read_text()


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
    used = set().union(*(_components(yaml.safe_load(p.read_text())) for p in CONFIGS))
    # The debug exporter is built in for troubleshooting (`exporters: [debug]` during an incident).
    assert built - used == {("exporters", "debug")}
    assert used <= built


def test_the_manifest_pins_one_collector_release_for_every_module() -> None:
    manifest = (ROOT / "collector" / "builder-config.yaml").read_text()
    versions = set(re.findall(r"gomod: \S+ (v\d+\.\d+)\.\d+", manifest))
    assert versions == {"v0.161", "v1.67"}  # beta modules v0.N pair with stable v1.(N-94)
