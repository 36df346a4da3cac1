"""TLS is verified by default; the shipped configs listen on loopback unless told otherwise."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from moduletrace.cli.main import main
from tests.support.processes import ROOT


@pytest.fixture
def https_jaeger(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server with a self-signed certificate for 127.0.0.1, answering like an empty Jaeger."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            payload = json.dumps({"services": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_an_unknown_certificate_is_refused_by_default(
    https_jaeger: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = https_jaeger
    code = main(["races", "--jaeger", url, "--since", "5m"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "unreachable (ConnectError)" in err


def test_the_certificate_is_accepted_with_its_ca_and_skipped_only_when_asked(
    https_jaeger: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, cert = https_jaeger
    # The empty Jaeger answers over TLS: the scan reads no lifecycle span (exit 3, said so), no TLS error.
    assert main(["races", "--jaeger", url, "--since", "5m", "--ca-cert", str(cert), "--format", "json"]) == 3
    err = capsys.readouterr().err
    assert "no lifecycle span found in Jaeger at" in err and "SSL" not in err and "certificate" not in err
    assert main(["races", "--jaeger", url, "--since", "5m", "--insecure", "--format", "json"]) == 3
    err = capsys.readouterr().err
    assert "TLS certificates are not verified (--insecure)" in err and "no lifecycle span found" in err


@pytest.mark.parametrize("config", sorted((ROOT / "collector").glob("*.yaml")), ids=lambda p: p.name)
def test_every_listening_endpoint_of_a_shipped_config_defaults_to_loopback(config: Path) -> None:
    text = config.read_text()
    listening = re.findall(r"(?:endpoint|http_listen_address): \$\{(?:env:)?([A-Z_]+):-([^}]+)\}", text)
    targets = {"JAEGER_OTLP_ENDPOINT", "TEMPO_OTLP_ENDPOINT"}  # where the collector sends, not listens
    for name, default in listening:
        if name not in targets:
            assert default.startswith("127.0.0.1"), (config.name, name, default)
    assert "0.0.0.0" not in re.sub(r"#.*", "", text) or config.name == "compose.yaml"
