"""A small HTTP server on 127.0.0.1 (a free port) running in a thread, for the fakes tests need."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up: the CLI closes connections on purpose (body limits,
    deadlines), and socketserver's default traceback on stderr would read as the CLI's own."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class LocalServer:
    """Serves ``handler`` until :meth:`close`; ``url`` is its base URL."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
