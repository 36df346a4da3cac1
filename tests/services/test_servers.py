"""The real servers the service tests stand on: reachable as configured, stopped by PID whatever happens."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, alive, postgres_bin, running_postgres
from tests.support.redis_server import RedisServer, running_redis


def test_postgres_serves_the_test_database_to_its_own_role_with_a_password(postgres: PostgresServer) -> None:
    bin_dir = postgres_bin()
    assert bin_dir is not None
    query = ["-At", "-c", "SELECT current_user || ' ' || current_setting('server_version_num')"]
    address = [str(bin_dir / "psql"), "-h", postgres.host, "-p", str(postgres.port), "-U", postgres.user]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    done = subprocess.run(
        [*address, "-d", postgres.database, *query],
        env={**env, "PGPASSWORD": postgres.password},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    user, version = done.stdout.split()
    assert user == postgres.user and int(version) >= 120000
    refused = subprocess.run(
        [*address, "-d", postgres.database, "-w", *query],
        env={**env, "PGPASSWORD": "wrong"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


def test_redis_answers_on_loopback(redis_server: RedisServer) -> None:
    with socket.create_connection((redis_server.host, redis_server.port), timeout=5) as sock:
        sock.sendall(b"SET probe 1\r\nGET probe\r\n")
        reply = b""
        while not reply.endswith(b"1\r\n"):
            reply += sock.recv(64)
    assert reply == b"+OK\r\n$1\r\n1\r\n"


def test_postgres_is_stopped_by_pid_when_the_test_inside_fails() -> None:
    with pytest.raises(RuntimeError, match="the test failed"), running_postgres() as server:
        assert alive(server.pid)
        pid = server.pid
        raise RuntimeError("the test failed")
    assert not alive(pid)


@pytest.mark.parametrize("variable", ["MODULETRACE_PG_BIN", "MODULETRACE_REDIS_SERVER"])
def test_a_missing_server_skips_on_a_developer_machine_and_fails_in_ci(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "absent"))

    def start() -> None:
        server = running_postgres() if variable == "MODULETRACE_PG_BIN" else running_redis(tmp_path)
        with server:
            raise AssertionError("started without a binary")

    monkeypatch.delenv("MODULETRACE_REQUIRE_PEERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        start()
    monkeypatch.setenv("MODULETRACE_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match="not found"):
        start()
