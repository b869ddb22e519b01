"""Worker processes for the migration process tests: migrators run one migration while
others consume and change plans of the same owners (spawned: importable, top-level)."""

from __future__ import annotations

from typing import Any

from entitlements import Entitlements, Owner
from entitlements.adapters.sql import SqlStore
from entitlements.errors import EntitlementsError


def owner(n: int) -> Owner:
    return Owner("organization", f"m{n:05d}")


def migrate(url: str, migration_id: str, barrier: Any, results: Any) -> None:
    """Run the migration in batches until nothing is pending; report items handled."""
    ents = Entitlements(SqlStore.from_url(url))
    barrier.wait()
    handled = 0
    for _ in range(10_000):
        progress = ents.migrations.run(migration_id, batch=50)
        handled += progress.handled
        if progress.done:
            break
    results.put(("migrated", handled, 0))
    ents.close()


def consume(url: str, worker: int, owners: int, barrier: Any, results: Any) -> None:
    """Consume 1 call per owner of the first ``owners``, a few rounds, under idempotency
    keys; every 7th owner of this worker's share also gets a seat change, every 11th a
    plan change (staff), so the migration meets owners changed under it."""
    ents = Entitlements(SqlStore.from_url(url))
    barrier.wait()
    for round_ in range(3):
        for n in range(owners):
            try:
                ents.usage.consume(owner(n), "calls", 1, key=f"w{worker}-r{round_}-{n}")
                results.put(("consumed", n, 1))
            except EntitlementsError as error:
                results.put(("refused", n, type(error).__name__))
            if round_ == 0 and n % 4 == worker:
                try:
                    if n % 11 == 0:
                        ents.subscriptions.change_plan(owner(n), "team", actor="staff")
                    elif n % 7 == 0:
                        ents.subscriptions.change_seats(owner(n), 3, actor="staff")
                except EntitlementsError as error:
                    results.put(("change_failed", n, type(error).__name__))
    ents.close()


def migrate_until_killed(url: str, migration_id: str) -> None:
    """Run the migration one item at a time until terminated."""
    ents = Entitlements(SqlStore.from_url(url))
    while not ents.migrations.run(migration_id, batch=1).done:
        pass
