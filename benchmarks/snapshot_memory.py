"""Memory of cached snapshots: what 100,000 owners on a handful of plans add to the
process, next to the least a cache could hold (a set of granted features and a dict of
limits per owner), both measured in this one run.

    python benchmarks/snapshot_memory.py                 # 100,000 owners, RSS
    python benchmarks/snapshot_memory.py --owners 20000 --tracemalloc

Owners are spread over the plans and over a month of sign-up instants (so their billing
periods differ, as they do in production); a tenth carry an override. Subscriptions are
stored before the first measurement: the figures are the cache alone. RSS is read from
``/proc/self/statm``; ``--tracemalloc`` reports Python allocations instead (slower).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs

from entitlements import Entitlements, Limit, LimitKind, MemoryStore, Owner, Plan
from entitlements.domain.override import Override, OverrideKind

START = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = 4
FEATURES = 40
MIB = 1024 * 1024


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(fill: Callable[[], object], traced: bool) -> tuple[int, object]:
    """Bytes ``fill`` adds (RSS, or traced allocations), keeping what it built alive."""
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss()
    kept = fill()
    gc.collect()
    if traced:
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = rss()
    return after - before, kept


def catalog() -> list[Plan]:
    return [
        Plan(
            f"plan-{p}",
            f"Plan {p}",
            limits={
                "seats": Limit(5 * (p + 1), kind=LimitKind.SEATS),
                "projects": Limit(10 * (p + 1)),
                "storage": Limit(10**9),
                "api_calls": Limit(10_000 * (p + 1), kind=LimitKind.METERED),
            },
            features={f"feature_{i}": i <= FEATURES - PLANS + p for i in range(FEATURES)},
            status="active",
        )
        for p in range(PLANS)
    ]


def provision(ents: Entitlements, owners: list[Owner]) -> None:
    template = ents.subscriptions.subscribe(Owner("organization", "template"), "plan-0", actor="b")
    with ents.store.unit_of_work(None) as uow:
        for i, owner in enumerate(owners):
            created = START + timedelta(minutes=43 * i)
            uow.subscriptions.add(
                attrs.evolve(
                    template,
                    id=f"sub-{i}",
                    owner=owner,
                    plan_key=f"plan-{i % PLANS}",
                    created_at=created,
                    updated_at=created,
                    cycle_anchor=created,
                    current_period=template.cycle.period_containing(created, created),
                )
            )
            if i % 10 == 0:
                uow.overrides.put(
                    Override(
                        owner,
                        OverrideKind.FEATURE,
                        "feature_0",
                        reason="trial",
                        actor="b",
                        created_at=created,
                        enabled=False,
                    )
                )
        uow.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=100_000)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()

    plans = catalog()
    ents = Entitlements(MemoryStore(), cache_size=args.owners + 10)
    for plan in plans:
        ents.plans.define(plan, actor="b")
    owners = [Owner("organization", f"org-{i:07d}") for i in range(args.owners)]
    provision(ents, owners)

    def plain() -> object:
        cache: dict[Owner, tuple[set[str], dict[str, int | None]]] = {}
        for i, owner in enumerate(owners):
            plan = plans[i % PLANS]
            granted = {k for k, f in plan.features.items() if f.enabled}
            if i % 10 == 0:
                granted.discard("feature_0")
            cache[owner] = (granted, {k: v.value for k, v in plan.limits.items()})
        return cache

    def snapshots() -> object:
        for owner in owners:
            ents.allows(owner, "feature_1")
        return len(ents.runtime.cache)

    baseline, _ = measured(plain, args.tracemalloc)
    started = time.perf_counter()
    used, cached = measured(snapshots, args.tracemalloc)
    seconds = time.perf_counter() - started
    assert cached == args.owners, cached

    what = "traced allocations" if args.tracemalloc else "RSS"
    n = args.owners
    print(f"{n:,} owners on {PLANS} plans of {FEATURES} features, {what}:")
    print(f"{'case':<34} {'MiB':>8} {'bytes/owner':>12} {'x baseline':>11}")
    for name, size in (("set + dict per owner (baseline)", baseline), ("cached snapshots", used)):
        print(f"{name:<34} {size / MIB:>8.1f} {size / n:>12.0f} {size / baseline:>11.2f}")
    print(f"\nfilling the cache took {seconds:.1f} s ({seconds / n * 1e6:.0f} us per owner)")


if __name__ == "__main__":
    main()
