"""SIGTERM to the real hosts after traffic: every span is exported, and each host ends as it always did.

The batch processor is told to wait 10 minutes before exporting, so nothing leaves before the
signal: what the receiver has afterwards went out on the way out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.deployments.hosts import host_env, lifecycle_spans, redis_server, running
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import free_port, python_env, wait_until

REQUESTS = 10  # each creates a module: 3 lifecycle spans
PY = sys.executable

ASGI = "tests.deployments.apps.asgi:app"
WSGI = "tests.deployments.apps.wsgi:app"

#: host -> (argv with {port}, exit status the host itself gives on SIGTERM: -15 = killed by it)
HOSTS = {
    "uvicorn": ([PY, "-m", "uvicorn", ASGI, "--host", "127.0.0.1", "--port", "{port}"], -15),
    # configure() before uvicorn installs its handlers: uvicorn restores ours before re-raising SIGTERM
    "uvicorn.run() in a script": ([PY, "-m", "tests.deployments.apps.asgi", "{port}"], -15),
    "uvicorn --workers 2": (
        [PY, "-m", "uvicorn", ASGI, "--host", "127.0.0.1", "--port", "{port}", "--workers", "2"],
        0,
    ),
    "gunicorn UvicornWorker": (
        [PY, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "2", "-b", "127.0.0.1:{port}", ASGI],
        0,
    ),
    # --preload: configure() runs in the arbiter; the worker hooks of gunicorn.conf.py chain SIGTERM in each worker
    "gunicorn UvicornWorker --preload": (
        [PY, "-m", "gunicorn", "-c", "tests/deployments/apps/gunicorn_conf.py", "--preload"]
        + ["-k", "uvicorn_worker.UvicornWorker", "-w", "2", "-b", "127.0.0.1:{port}", ASGI],
        0,
    ),
    "gunicorn sync": ([PY, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", WSGI], 0),
    "gunicorn gthread": (
        [PY, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "1", "-b", "127.0.0.1:{port}", WSGI],
        0,
    ),
    "flask run": ([PY, "-m", "flask", "--app", WSGI, "run", "--port", "{port}"], -15),
}


def _serve_and_terminate(argv: list[str], env: dict[str, str], tmp_path: Path, name: str) -> tuple[int, str]:
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    base = f"http://127.0.0.1:{port}"
    with running(argv, env, tmp_path, name.replace(" ", "_")) as host:
        host.wait_http(f"{base}/health")
        with httpx.Client(base_url=base, timeout=10) as client:
            for n in range(REQUESTS):
                response = client.post(f"/modules/m-{n}")
                assert response.status_code == 200, response.text
                assert response.json()["traceparent"]
        status = host.terminate()
        return status, host.stderr()


@pytest.mark.parametrize("name", list(HOSTS))
def test_sigterm_after_traffic_loses_no_span(name: str, tmp_path: Path) -> None:
    argv, expected_status = HOSTS[name]
    with OTLPReceiver() as receiver:
        status, err = _serve_and_terminate(argv, host_env(receiver), tmp_path, name)
        spans = lifecycle_spans(receiver, "module-service")
    assert len(spans) == 3 * REQUESTS, f"{name}: {len(spans)}/{3 * REQUESTS} spans exported\n{err[-3000:]}"
    assert status == expected_status, f"{name} ended {status}, as itself it ends {expected_status}\n{err[-3000:]}"
    assert "Traceback" not in err, err


def test_plain_script_flushes_on_sigterm_and_still_dies_of_it(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        with running([PY, "-m", "tests.deployments.apps.script", "30"], host_env(receiver), tmp_path, "script") as host:
            host.wait_output("ready")
            status = host.terminate()
        spans = lifecycle_spans(receiver, "module-script")
    assert len(spans) == 30
    assert status == -15  # killed by SIGTERM, as without moduletrace


def test_sigterm_with_a_collector_that_never_answers_ends_within_exit_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers: each export waits 10 s
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        env["APP_EXIT_TIMEOUT"] = "1"
        with running([PY, "-m", "tests.deployments.apps.script", "30"], env, tmp_path, "silent") as host:
            host.wait_output("ready")
            started = time.monotonic()
            status = host.terminate()
            elapsed = time.monotonic() - started
            err = host.stderr()
    assert status == -15
    assert elapsed < 3, f"SIGTERM to exit took {elapsed:.1f}s"
    assert "not flushed within 1.0 s" in err


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_celery_worker_sigterm_loses_no_span_and_tasks_continue_the_creation_trace(pool: str, tmp_path: Path) -> None:
    with OTLPReceiver() as receiver, redis_server(tmp_path) as broker:
        env = host_env(receiver, {"APP_BROKER": broker})
        worker_argv = [PY, "-m", "celery", "-A", "tests.deployments.apps.tasks", "worker", "--pool", pool]
        worker_argv += ["--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        worker_argv += ["--loglevel", "INFO"]
        publisher = [PY, "-m", "tests.deployments.apps.publish", str(REQUESTS)]
        # Both start at once: the tasks wait in Redis until the worker is up.
        with (
            running(worker_argv, env, tmp_path, f"celery_{pool}") as worker,
            running(publisher, env, tmp_path, "publish") as pub,
        ):
            pub.wait_output("done")
            created = [json.loads(line) for line in pub.stdout().splitlines() if line.startswith("{")]
            status = worker.terminate()
            err = worker.stderr()
        loads = lifecycle_spans(receiver, "module-worker")
        creations = lifecycle_spans(receiver, "module-service")
    assert len(loads) == 2 * REQUESTS, f"{len(loads)}/{2 * REQUESTS} task spans exported\n{err[-3000:]}"
    assert status == 0, err[-3000:]
    assert len(creations) == 2 * REQUESTS
    # One trace ID from the creation to the task's load, with no carrier argument to the task.
    trace_of = {c["module_id"]: c["trace_id"] for c in created}
    assert len(trace_of) == REQUESTS
    for span in loads:
        module_id = span["attributes"]["module.id"]  # type: ignore[index]
        assert span["trace_id"] == trace_of[module_id], span


def test_as_a_containers_pid_1_the_spans_are_flushed_and_the_process_goes_on_as_before(tmp_path: Path) -> None:
    # PID 1 of a PID namespace (a container without an init) never dies of a signal it has no handler
    # for: SIGTERM did nothing before moduletrace. It still does nothing, except flushing; the
    # pipeline keeps working and the next SIGTERM flushes again.
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("cannot create a PID namespace here (unshare --pid needs root and util-linux)")
    argv = [unshare, "--pid", "--fork", "--kill-child", PY, "-m", "tests.deployments.apps.script", "30", "tick"]
    with OTLPReceiver() as receiver:
        with running(argv, host_env(receiver), tmp_path, "pid1") as host:
            host.wait_output("ready")
            children = Path(f"/proc/{host.process.pid}/task/{host.process.pid}/children").read_text().split()
            (pid_1,) = [int(pid) for pid in children]
            os.kill(pid_1, signal.SIGTERM)
            assert wait_until(lambda: len(lifecycle_spans(receiver)) >= 30, timeout=10)
            first = len(lifecycle_spans(receiver))
            time.sleep(0.5)
            assert host.process.poll() is None  # still running, as without moduletrace
            os.kill(pid_1, signal.SIGTERM)
            assert wait_until(lambda: len(lifecycle_spans(receiver)) > first, timeout=10)
            assert host.process.poll() is None
