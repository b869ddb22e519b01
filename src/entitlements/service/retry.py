"""Retrying a write that lost a race it did not ask to be told about.

A use case reads, decides and writes under optimistic concurrency: when another writer
committed in between, the store refuses with `StaleWrite`. A caller that passed
``expected_revision`` asked for exactly that answer and gets it. Everyone else asked for
the change to be made on the latest state, so the use case runs again — a few times,
after a short random pause that keeps racing writers from colliding in step. `Busy` (a
deadlock or serialization failure the database resolved against us) is retried the same
way, except inside ``Entitlements.atomic()``, where the host's transaction still holds
its locks and the host decides, and except a lock wait that timed out: the database
already waited as long as it was told to, and waiting that long again is the host's call.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from entitlements.errors import Busy, StaleWrite

__all__ = ["ATTEMPTS", "retries_lost_races"]

ATTEMPTS = 6
_PAUSE = 0.005  # seconds; doubled after each attempt, with full jitter

F = TypeVar("F", bound=Callable[..., Any])
_LOCK_WAIT_TIMEOUTS = {"55P03", 1205}  # PostgreSQL lock_timeout; MariaDB/MySQL lock wait


def _waited(busy: Busy) -> bool:
    """Whether the database gave up waiting for a lock (rather than breaking a deadlock)."""
    orig = getattr(busy.__cause__, "orig", None)
    codes = {getattr(orig, "sqlstate", None), *tuple(getattr(orig, "args", ()))[:1]}
    return bool(codes & _LOCK_WAIT_TIMEOUTS)


def retries_lost_races(method: F) -> F:
    """Run ``method`` again on `StaleWrite` (and `Busy` outside an atomic block), at most
    `ATTEMPTS` times in all, unless it was called with an ``expected_revision``. The
    method must be one unit of work, so a failed attempt left nothing behind."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("expected_revision") is not None:
            return method(self, *args, **kwargs)
        for attempt in range(ATTEMPTS):
            try:
                return method(self, *args, **kwargs)
            except StaleWrite:
                if attempt == ATTEMPTS - 1:
                    raise
            except Busy as busy:
                if attempt == ATTEMPTS - 1 or self._rt.in_atomic_block or _waited(busy):
                    raise
            time.sleep(random.uniform(0, _PAUSE * 2**attempt))
        raise AssertionError("unreachable")

    return cast(F, wrapper)
