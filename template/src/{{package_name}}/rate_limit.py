"""A small in-process sliding-window rate limiter (per web worker process)."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimiter:
    """Allow at most `limit` events per `window` seconds; thread-safe."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> float:
        """Record an event and return 0, or return the seconds to wait when over the limit."""
        now = time.monotonic()
        with self._lock:
            while self._events and now - self._events[0] >= self.window:
                self._events.popleft()
            if len(self._events) >= self.limit:
                return self.window - (now - self._events[0])
            self._events.append(now)
            return 0.0
