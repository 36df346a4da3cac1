"""A scan that takes more than a second shows its progress on stderr, when stderr is a terminal."""

from __future__ import annotations

import importlib.util
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT, python_env


def generate(path: Path, spans: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_races", ROOT / "benchmarks" / "bench_races.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(str(path), spans, spans_per_module=10)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated archive large enough for a scan of about two seconds (named .ndjson: the bytes decide
    the format, and the suite's secret scan of *.jsonl span files need not read 230 MB of generated data)."""
    path = tmp_path_factory.mktemp("progress") / "archive.ndjson"
    generate(path, 600_000)
    return path


def run_with_terminal_stderr(args: list[str], out_path: Path) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal (stdout to a file, so it can never block)."""
    controller, terminal = pty.openpty()
    with open(out_path, "w") as out_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moduletrace.cli.main", *args],
            stdout=out_file,
            stderr=terminal,
            env=python_env(),
            text=True,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the other side is closed, the command has exited
                break
            if not data:
                break
            chunks.append(data)
        process.wait(timeout=120)
    os.close(controller)
    return process.returncode, out_path.read_text(), b"".join(chunks).decode(errors="replace")


def test_a_long_scan_shows_progress_on_a_terminal_and_clears_it(archive: Path, tmp_path: Path) -> None:
    code, out, err = run_with_terminal_stderr(["races", "--file", str(archive), "--format", "json"], tmp_path / "out")
    assert code == 1
    assert "spans read" in err and "% of" in err and " MB" in err
    assert err.endswith("\r\x1b[K")  # the line is cleared before the report
    assert out.startswith("{")  # the report itself is untouched


def test_no_progress_when_stderr_is_not_a_terminal(archive: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moduletrace.cli.main", "races", "--file", str(archive), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(),
    )
    assert done.returncode == 1 and done.stderr == ""
