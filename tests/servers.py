"""Real local HTTP servers for tests: feeds, WordPress, SendGrid are played by these.

`LocalServer` runs a `ThreadingHTTPServer` on 127.0.0.1 (or another loopback address
given) with a free port in a thread.
Routes map a path to a `Route` (status, headers, body) or to a callable that takes the
`Request` and returns a `Route`. Every request is recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Send only this many bytes of the body then close the connection (None: all).
    truncate: int | None = None


Handler = Route | Callable[[Request], Route]


class LocalServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}, body)
                server.requests.append(request)
                handler = server.routes.get(parts.path)
                route = Route(404, b"not found") if handler is None else handler if isinstance(handler, Route) else handler(request)
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                headers = {"content-type": "text/plain", **{k.lower(): v for k, v in route.headers.items()}}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(route.body)))
                self.end_headers()
                if self.command != "HEAD":
                    if route.truncate is not None:
                        self.wfile.write(route.body[: route.truncate])
                        self.close_connection = True
                        return
                    self.wfile.write(route.body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer((host, 0), _Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
