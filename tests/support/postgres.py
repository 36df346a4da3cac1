"""A real PostgreSQL server for a test session, from the Debian package, on 127.0.0.1 with a free port.

    with running_postgres() as server:
        engine = create_async_engine(server.url("postgresql+asyncpg"))

``initdb`` into a fresh folder, ``pg_ctl start -w``, a login role and a database of its own for the
test (password auth over TCP; the superuser only over a Unix socket in that folder), and at the end
``pg_ctl stop -m fast``, then the postmaster's PID is checked and killed if it is still there.
As root the server runs as the ``postgres`` OS user (PostgreSQL refuses to run as root): the
folder is made outside pytest's root-only temp tree and given to that user.

Binaries: $MODULETRACE_PG_BIN (only there when set), else the newest /usr/lib/postgresql/*/bin, else ``pg_ctl`` on PATH.
Without them the test is skipped, or fails when MODULETRACE_REQUIRE_PEERS=1 (scripts/test, CI).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port

DATABASE = "moduletrace"
ROLE = "moduletrace"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    database: str
    user: str
    password: str
    pid: int
    log: Path
    socket_dir: Path  # the superuser's way in (trust over the Unix socket), for set-up only

    def url(self, driver: str = "postgresql") -> str:
        """A SQLAlchemy URL with the password: pass it through the environment, never into a span."""
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def superuser(self, sql: str, timeout: float = 30) -> str:
        """Run ``sql`` as the superuser through the socket; return psql's unaligned output."""
        bin_dir = postgres_bin()
        assert bin_dir is not None
        done = subprocess.run(
            [*_as_postgres(), str(bin_dir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port)]
            + ["-U", "postgres", "-d", self.database, "-v", "ON_ERROR_STOP=1", "-qAt"],
            input=sql,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.stdout


def missing_peer(message: str) -> None:
    """Fail in CI (a missing server is a broken set-up there), skip on a developer's machine."""
    if os.environ.get("MODULETRACE_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def postgres_bin() -> Path | None:
    """The folder with initdb, pg_ctl and psql; $MODULETRACE_PG_BIN, when set, is the only one tried."""
    configured = os.environ.get("MODULETRACE_PG_BIN")
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name))[::-1]
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return directory
    return None


def _version(name: str) -> int:
    return int(name) if name.isdigit() else -1


def _as_postgres() -> list[str]:
    """The command prefix that runs a PostgreSQL tool as the ``postgres`` OS user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        runuser = None
    if runuser is None:
        missing_peer("running as root needs the postgres OS user and runuser to start PostgreSQL")
        raise AssertionError("unreachable")
    return [runuser, "-u", "postgres", "--"]


def _binaries() -> Path:
    bin_dir = postgres_bin()
    if bin_dir is None:
        missing_peer("PostgreSQL binaries not found (apt-get install postgresql, or set MODULETRACE_PG_BIN)")
        raise AssertionError("unreachable")
    return bin_dir


def _base_folder(prefix: str) -> Path:
    # Not under pytest's temp tree: as root that is mode 0700, which the postgres user cannot enter.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    return base


@contextlib.contextmanager
def running_postgres(timeout: float = 60, settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """Start a server, yield it, and stop it (by PID as the last resort) whatever happened.

    ``settings`` are extra server settings (``-c name=value``), e.g. ``{"max_connections": "5"}``.
    """
    bin_dir = _binaries()
    as_user = _as_postgres()
    base = _base_folder("moduletrace-pg-")
    data, log = base / "data", base / "postgres.log"
    pid: int | None = None
    try:
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data),
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        port = free_port()
        pid = _start(bin_dir, as_user, base, port, {"max_connections": "60", **(settings or {})}, timeout)
        password = secrets.token_hex(16)
        # The password goes in on stdin, not in a command line that `ps` shows.
        subprocess.run(
            [*as_user, str(bin_dir / "psql"), "-h", str(base), "-p", str(port), "-U", "postgres"]
            + ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"],
            input=(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}';\nCREATE DATABASE {DATABASE} OWNER {ROLE};\n"),
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        yield PostgresServer("127.0.0.1", port, DATABASE, ROLE, password, pid, log, base)
    finally:
        _stop(bin_dir, as_user, base, pid)


@contextlib.contextmanager
def running_replica(
    primary: PostgresServer, apply_delay_ms: int = 0, timeout: float = 60, settings: dict[str, str] | None = None
) -> Iterator[PostgresServer]:
    """A streaming hot standby of ``primary`` (``pg_basebackup -R``) on a port of its own.

    ``settings`` as for :func:`running_postgres` (a standby needs max_connections >= its primary's).
    ``apply_delay_ms`` sets ``recovery_min_apply_delay``: every commit becomes visible on the
    replica that long after the primary committed it, a lag the test decides instead of waiting
    for one. The same role, password and database as the primary (they are replicated).
    """
    bin_dir = _binaries()
    as_user = _as_postgres()
    base = _base_folder("moduletrace-pg-replica-")
    pid: int | None = None
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_basebackup"), "-h", str(primary.socket_dir), "-p", str(primary.port)]
            + ["-U", "postgres", "-D", str(base / "data"), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        port = free_port()
        standby = {"hot_standby": "on", "recovery_min_apply_delay": f"{apply_delay_ms}ms", **(settings or {})}
        pid = _start(bin_dir, as_user, base, port, standby, timeout)
        yield PostgresServer(
            "127.0.0.1", port, primary.database, primary.user, primary.password, pid, base / "postgres.log", base
        )
    finally:
        _stop(bin_dir, as_user, base, pid)


def _start(bin_dir: Path, as_user: list[str], base: Path, port: int, settings: dict[str, str], timeout: float) -> int:
    """``pg_ctl start -w`` the cluster in ``base/data``; its postmaster's PID."""
    data, log = base / "data", base / "postgres.log"
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off"
    options += "".join(f" -c {name}={value}" for name, value in settings.items())  # throw-away: no fsync
    started = subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "start", "-w", "-t", str(int(timeout)), "-D", str(data)]
        + ["-l", str(log), "-o", options],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    pid = _postmaster_pid(data)
    if started.returncode != 0 or pid is None:
        if pid is not None:
            _kill_if_alive(pid, grace=0)
        raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{_tail(log)}")
    return pid


def _stop(bin_dir: Path, as_user: list[str], base: Path, pid: int | None) -> None:
    data = base / "data"
    try:
        if data.exists():
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "30", "-D", str(data)],
                capture_output=True,
                timeout=40,
            )
    except subprocess.SubprocessError:
        pass
    if pid is not None:
        _kill_if_alive(pid)
    shutil.rmtree(base, ignore_errors=True)


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _kill_if_alive(pid: int, grace: float = 5) -> None:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for an init that does not reap it."""
    try:
        os.kill(pid, 0)
        status = Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True
    return "\nState:\tZ" not in status


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


@contextlib.contextmanager
def running_postgres_exporter(server: PostgresServer, directory: Path, timeout: float = 30) -> Iterator[str]:
    """prometheus-community postgres_exporter (the Debian package) for ``server``, with the queries the
    collector's metrics/postgresql.yaml documents; yields its ``host:port`` for the collector to scrape.

    Binary: $MODULETRACE_PG_EXPORTER, else prometheus-postgres-exporter on PATH (skip or fail as above).
    """
    from tests.support.processes import ROOT, running_exporter

    exporter = os.environ.get("MODULETRACE_PG_EXPORTER") or shutil.which("prometheus-postgres-exporter")
    if not exporter or not Path(exporter).is_file():
        missing_peer("prometheus-postgres-exporter not found (apt-get install prometheus-postgres-exporter)")
        raise AssertionError("unreachable")
    port = free_port()
    dsn = f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{server.database}?sslmode=disable"
    args = [exporter, f"--web.listen-address=127.0.0.1:{port}"]
    args.append(f"--extend.query-path={ROOT / 'collector' / 'metrics' / 'postgres-queries.yaml'}")
    env = {"PATH": os.environ.get("PATH", ""), "DATA_SOURCE_NAME": dsn}  # the password: environment only
    with running_exporter(
        args, port, "pg_up 1", directory / f"postgres-exporter-{server.port}.log", env, timeout
    ) as at:
        yield at
