"""Rate limits, counted where every web worker sees them.

Owns: `Counters` (where the counts live) and `RateLimiter` (one limit). Imports nothing
of ours; the counting is the `limits` library's moving window.

With `web.rate_limit_storage` set to a Redis URL, every worker process and every server
behind the same Redis shares one count, so `serve --workers 4` does not quadruple a
limit. Without it, counts are kept in this process's memory. Should Redis stop answering,
the limiters count in memory instead (one warning; Redis is tried again every
`Counters.RETRY_SECONDS`), so a visitor gets an answer rather than a 500. Keys are client
IPs or hashes of addresses, never addresses themselves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from limits import RateLimitItemPerSecond
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger("newsletter.web.limits")


def where(uri: str) -> str:
    """The storage's scheme, host and port, fit for a log line: never its password."""
    parts = urlsplit(uri)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


class Counters:
    """Where the limiters count: the storage named by `uri` (a Redis URL), or memory when
    `uri` is empty; memory too, for a while, whenever that storage fails.

    `namespace` keeps the keys of one newsletter apart from another's on a shared Redis;
    `timer` paces the retries of a failed storage. `ValueError` for a URL that cannot be
    used. Nothing is connected here: Redis may come up after the app.
    """

    RETRY_SECONDS = 30.0

    def __init__(self, uri: str = "", *, namespace: str = "newsletter", timer: Callable[[], float] = time.monotonic) -> None:
        self.uri = uri
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if uri:
            prefix = "newsletter-" + hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:12]
            try:
                storage = storage_from_string(
                    uri, key_prefix=prefix, wrap_exceptions=True, socket_timeout=1.0, socket_connect_timeout=1.0
                )
            except (ValueError, ConfigurationError) as exc:
                raise ValueError(f"{where(uri)} cannot be used: {exc}") from None
            self._shared = MovingWindowRateLimiter(storage)
        self._timer = timer
        self._down = False
        self._down_until = 0.0
        self._lock = threading.Lock()

    def hit(self, item: RateLimitItemPerSecond, key: str) -> float | None:
        """Count one request for `key` under `item`. Returns None when it is allowed,
        else the seconds until the next one would be."""
        shared = self._shared
        if shared is not None and self._timer() >= self._down_until:
            try:
                wait = self._count(shared, item, key)
            except StorageError as exc:
                self._fall_back(exc)
            else:
                self._back()
                return wait
        return self._count(self._memory, item, key)

    @staticmethod
    def _count(strategy: MovingWindowRateLimiter, item: RateLimitItemPerSecond, key: str) -> float | None:
        if strategy.hit(item, key):
            return None
        reset, _ = strategy.get_window_stats(item, key)
        return max(0.0, reset - time.time())

    def _fall_back(self, exc: StorageError) -> None:
        with self._lock:
            first, self._down = not self._down, True
            self._down_until = self._timer() + self.RETRY_SECONDS
        if first:
            # One warning per outage: a line per request would flood the log.
            log.warning(
                "rate limits: %s does not answer (%s); counting in this process's memory until it does",
                where(self.uri), type(exc.storage_error).__name__,
            )

    def _back(self) -> None:
        if self._down:
            with self._lock:
                self._down = False
            log.warning("rate limits: %s answers again; counting there", where(self.uri))


class RateLimiter:
    """At most `limit` hits per key in any `window` seconds, counted in `counters`."""

    def __init__(self, *, limit: int, window: int, name: str, counters: Counters) -> None:
        self.limit = limit
        self.window = window
        self.item = RateLimitItemPerSecond(limit, window, namespace=name)
        self.counters = counters

    def hit(self, key: str) -> int:
        """Count one request for `key`. Returns 0 when it is allowed, else the whole
        seconds to wait before the next one would be (at least 1)."""
        wait = self.counters.hit(self.item, key)
        return 0 if wait is None else max(1, int(wait + 0.999))
