"""Clocks: the system clock for production, a manual one for tests and simulations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from entitlements.domain.instant import utc
from entitlements.errors import InvalidInput
from entitlements.ports import TimestampClock

__all__ = ["ManualClock", "SystemClock", "timestamp_of"]


class SystemClock:
    """The real clock, the default."""

    def now(self) -> datetime:
        """The current time, UTC."""
        return datetime.now(UTC)

    def timestamp(self) -> float:
        """Seconds since the epoch: what the warm path compares validity with (a float
        comparison costs a fraction of building a datetime)."""
        return time.time()


class ManualClock:
    """A clock that only moves when told to: trials end when the test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = utc(start, "start") if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._ts = self._now.timestamp()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The time the test set."""
        return self._now

    def timestamp(self) -> float:
        """The same instant as epoch seconds, for the warm path's validity check."""
        return self._ts

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)`` (``days=91``)."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise InvalidInput(
                "delta", "a clock does not go backwards; use set() deliberately", step
            )
        with self._lock:
            self._now = self._now + step
            self._ts = self._now.timestamp()
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (backwards too, deliberately)."""
        with self._lock:
            self._now = utc(when, "when")
            self._ts = self._now.timestamp()


def timestamp_of(clock: object) -> Callable[[], float]:
    """The fastest way to read ``clock`` as epoch seconds: its own ``timestamp()`` when it
    offers that fast path (`entitlements.ports.TimestampClock`), else through ``now()``."""
    if type(clock) is SystemClock:
        return time.time
    if isinstance(clock, TimestampClock):
        return clock.timestamp
    now: Callable[[], datetime] = clock.now  # type: ignore[attr-defined]
    return lambda: now().timestamp()
