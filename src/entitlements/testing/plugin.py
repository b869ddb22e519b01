"""The pytest plugin, registered through the ``pytest11`` entry point: installing the
package gives every test suite these fixtures.

- ``entitlements_clock``: a `ManualClock` at 2026-01-01 UTC; ``advance(days=91)``.
- ``entitlements_memory_store``: a fresh `MemoryStore`.
- ``entitlements_sqlite_store``: a fresh `SqlStore` on a SQLite file in ``tmp_path``.
- ``entitlements_payment_provider``: a `FakePaymentProvider` on the manual clock.
- ``entitlements_app``: an `Entitlements` over the memory store, the clock and the fake
  provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from entitlements.adapters.memory import MemoryStore
from entitlements.adapters.sql import SqlStore
from entitlements.clock import ManualClock
from entitlements.service.entitlements import Entitlements
from entitlements.testing.fakes import FakePaymentProvider

__all__ = [
    "entitlements_app",
    "entitlements_clock",
    "entitlements_memory_store",
    "entitlements_payment_provider",
    "entitlements_sqlite_store",
]


@pytest.fixture
def entitlements_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def entitlements_memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def entitlements_sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'entitlements.db'}")
    store.create_schema()
    yield store
    store.engine.dispose()


@pytest.fixture
def entitlements_payment_provider(entitlements_clock: ManualClock) -> FakePaymentProvider:
    return FakePaymentProvider(entitlements_clock)


@pytest.fixture
def entitlements_app(
    entitlements_memory_store: MemoryStore,
    entitlements_clock: ManualClock,
    entitlements_payment_provider: FakePaymentProvider,
) -> Entitlements:
    return Entitlements(
        entitlements_memory_store,
        clock=entitlements_clock,
        payment_provider=entitlements_payment_provider,
    )
