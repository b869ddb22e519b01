"""The pytest plugin, registered through the ``pytest11`` entry point: installing the
package gives every test suite these fixtures.

- ``entitlements_clock``: a `ManualClock` at 2026-01-01 UTC; ``advance(days=91)``.
- ``entitlements_memory_store``: a fresh `MemoryStore`.
- ``entitlements_app``: an `Entitlements` over that store and clock.
"""

from __future__ import annotations

import pytest

from entitlements.adapters.memory import MemoryStore
from entitlements.clock import ManualClock
from entitlements.service.entitlements import Entitlements

__all__ = ["entitlements_app", "entitlements_clock", "entitlements_memory_store"]


@pytest.fixture
def entitlements_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def entitlements_memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def entitlements_app(
    entitlements_memory_store: MemoryStore, entitlements_clock: ManualClock
) -> Entitlements:
    return Entitlements(entitlements_memory_store, clock=entitlements_clock)
