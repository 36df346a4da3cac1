"""The real Chromium (Debian's /usr/bin/chromium), headless, as a user's browser opening a page.

One run per page: Chromium loads the URL, lets the page's scripts and their API calls finish
(virtual time runs only while no fetch is pending), saves a screenshot and prints the DOM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


def chromium() -> str:
    path = os.environ.get("MODULETRACE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        message = "no chromium on PATH (scripts/test installs Debian's package when run as root)"
        if os.environ.get("MODULETRACE_REQUIRE_PEERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Page:
    url: str
    dom: str
    screenshot: Path


def open_page(url: str, screenshot: Path, budget_ms: int = 15000, timeout: float = 60) -> Page:
    """Render ``url`` in headless Chromium; the screenshot is kept at ``screenshot``."""
    args = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={screenshot.parent / (screenshot.stem + '-profile')}",
        "--window-size=1400,1000",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    if os.geteuid() == 0:
        args.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    # Its own session, so that a hung browser and every child it forked are stopped together.
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        dom, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, err[-2000:]
    assert screenshot.is_file(), f"no screenshot of {url}: {err[-2000:]}"
    print(f"screenshot of {url}: {screenshot}")
    return Page(url, dom, screenshot)
