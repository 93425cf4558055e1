"""The simulated hosts' HTTP servers on loopback: threaded, started in a thread of their own, quiet about a
terminal that goes away mid-answer."""

from __future__ import annotations

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP server that logs a dropped connection at debug level instead of printing a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a terminal that went away mid-answer
            log.debug("%s dropped the connection", client_address)
            return
        super().handle_error(request, client_address)


def serve(handler: type[BaseHTTPRequestHandler], name: str) -> tuple[ThreadingHTTPServer, str]:
    """`handler` served on a free loopback port by a thread named hwsim-`name`: the server and its base URL."""
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name=f"hwsim-{name}", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
