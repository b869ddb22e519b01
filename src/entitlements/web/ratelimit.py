"""Slow down anyone guessing signing tokens.

Each client address may present a limited number of links that open nothing within a
window; past that, every signing request from it — good token or bad — gets the same
"try again later" page, so the limit itself tells nothing about which tokens exist.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["BadTokenLimiter"]


class BadTokenLimiter:
    """At most ``attempts`` links that open nothing per client address within ``window``
    seconds; per process (each process of a host keeps its own count)."""

    def __init__(
        self,
        attempts: int = 20,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, self._clock())) >= self.attempts

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            failures = self._recent(client, now)
            if client not in self._failures:
                if len(self._failures) >= self._max_clients:
                    self._failures.pop(next(iter(self._failures)))
                self._failures[client] = failures
            failures.append(now)

    def retry_after(self) -> int:
        return int(self.window)
