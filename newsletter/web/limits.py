"""Rate limits: a sliding window of request times per key, kept in memory.

Owns: `RateLimiter`. Imports nothing of ours. One limiter serves one process; behind
several worker processes each counts alone, so the effective limit is the limit times the
number of workers (the README says so). Keys are client IPs or hashes of addresses, never
addresses themselves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most `limit` hits per key in any `window` seconds."""

    #: Above this many keys the oldest are dropped, so a flood of distinct keys cannot
    #: exhaust memory (it can only make the limiter forget, never block anyone wrongly).
    MAX_KEYS = 100_000

    def __init__(self, *, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> int:
        """Count one request for `key`. Returns 0 when it is allowed, else the seconds to
        wait before the next one would be."""
        now = self.clock()
        with self._lock:
            times = self._hits.pop(key, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            # Re-inserting keeps the dict ordered by last use, oldest first.
            self._hits[key] = times
            if len(times) >= self.limit:
                return max(1, int(times[0] + self.window - now + 0.999))
            times.append(now)
            while len(self._hits) > self.MAX_KEYS:
                del self._hits[next(iter(self._hits))]
            return 0
