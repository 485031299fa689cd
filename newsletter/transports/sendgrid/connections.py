"""Kept connections for the `sendgrid` client: one per sending thread, reused from one
request to the next.

Owns: `KeptConnections`. Imports the `sendgrid` package's HTTP client; nothing of ours.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from typing import Any

from python_http_client import exceptions as http_errors
from python_http_client.client import Client as HttpClient

class KeptConnections:
    """The `sendgrid` client's requests over connections kept open from one request to
    the next: one per sending thread, closed by `close`.

    The client (`python_http_client`) builds a new urllib opener for every request, and
    urllib closes the connection after each answer: every batch paid for a new TCP
    connection and, against SendGrid, a TLS handshake with the certificates loaded
    again: milliseconds of CPU and two round trips to SendGrid before the first byte of
    a 700 KB body. This replaces only the step that opens and reads (the client's
    `_make_request`, kept apart in the package "so we can mock it easily"); the client
    still builds the URL, the headers and the body, and turns an error status into its
    exception with its own `handle_error`, as urllib's opener would.

    A connection the server has closed while it was idle (it reads as ready, at end of
    file) is replaced before a request is written. One that fails or times out during a
    request is closed, never used again: an answer that is late must not be taken for
    the next request's. Behind a proxy (urllib's `*_proxy` environment variables) the
    client keeps its own urllib opener, which goes through the proxy.
    """

    def __init__(self, api_host: str) -> None:
        parts = urllib.parse.urlsplit(api_host)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self._context = ssl.create_default_context() if self.https else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    @staticmethod
    def usable(api_host: str) -> bool:
        """Whether requests to `api_host` may go straight to it (no proxy to go through)."""
        parts = urllib.parse.urlsplit(api_host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        return parts.scheme not in urllib.request.getproxies() or bool(urllib.request.proxy_bypass(parts.hostname))

    def install(self, endpoint: HttpClient) -> None:
        """Make `endpoint` (the client of one API path) send through these connections."""

        def make_request(opener: Any, request: urllib.request.Request, timeout: float | None = None) -> urllib.response.addinfourl:
            return self.open(request, timeout or endpoint.timeout)

        endpoint._make_request = make_request

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        """This thread's connection; not connected yet when the last one was closed (it
        connects as the request is written)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and _readable(conn.sock):
            conn.close()  # closed by the server while idle: the next request reconnects
        if conn is None:
            if self._context is not None:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._local.conn = conn
        if conn.sock is None:
            with self._lock:
                self._open.add(conn)  # to close, even if `close` has run since it was last used
        conn.timeout = timeout
        return conn

    def open(self, request: urllib.request.Request, timeout: float | None) -> urllib.response.addinfourl:
        """The answer read to its end, as urllib's opener returns it (what the client's
        `Response` reads); an error status raised as the client's exception."""
        conn = self._connection(timeout)
        try:
            conn.request(request.get_method(), request.selector, body=request.data, headers=dict(request.header_items()))
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        if not 200 <= response.status < 300:
            # What urllib's opener raises for such an answer, turned into the client's
            # exception by the client's own function, as its `_make_request` does.
            error = urllib.error.HTTPError(request.full_url, response.status, response.reason, response.headers, io.BytesIO(body))
            raise http_errors.handle_error(error) from None
        return urllib.response.addinfourl(io.BytesIO(body), response.headers, request.full_url, response.status)

    def close(self) -> None:
        with self._lock:
            kept, self._open = self._open, set()
        for conn in kept:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it (or broke
    the protocol); either way it cannot carry another request."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])
