"""Clocks: the system clock for production, a manual one for tests and simulations."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from entitlements.domain.instant import utc
from entitlements.errors import InvalidInput

__all__ = ["ManualClock", "SystemClock"]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: trials end when the test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = utc(start, "start") if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)`` (``days=91``)."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise InvalidInput(
                "delta", "a clock does not go backwards; use set() deliberately", step
            )
        with self._lock:
            self._now = self._now + step
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = utc(when, "when")
