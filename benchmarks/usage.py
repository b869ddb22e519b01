"""Usage writes next to the same work done lean, measured in one run on each store.

For every store it times, per second:

- ``consume(key=...)`` next to two statements + COMMIT with plain SQLAlchemy Core (insert
  a ledger row, add to its counter); on the memory store, next to a dict with a key check;
- ``consume_many`` of 1,000 keyed events next to 1,000 ledger rows inserted in one
  transaction (memory: 1,000 dict inserts);
- ``change_plan`` next to an UPDATE of the subscription row + an audit row;
- ``start_trial`` next to an INSERT of a subscription row + an audit row;

and a warm ``check`` next to a ``dict.get``. Ratios are what count (this hardware is
shared and noisy); targets: single ≥ 50 %, batched ≥ 30 %, plan changes and trials ≥ 40 %.

A second table times ``consume`` (single and batched) of a limit with alert thresholds
next to the same limit without, in the same run: thresholds configured but not crossed
should cost almost nothing (target ≥ 90 %).

    python benchmarks/usage.py [--postgres URL] [--mariadb URL] [--seconds 2]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from entitlements import (
    Entitlements,
    Limit,
    LimitKind,
    MemoryStore,
    Owner,
    Plan,
    UsageEvent,
)
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t
from entitlements.ports import Store

PLANS = [
    Plan(
        key,
        key.title(),
        limits={
            "api_calls": Limit(None, kind=LimitKind.METERED),
            "projects": Limit(size),
            "calls": Limit(10**12, kind=LimitKind.METERED),
            "alerted": Limit(10**12, kind=LimitKind.METERED, alerts=(80, 100)),
        },
        status="active",
    )
    for key, size in (("metered", 1000), ("bigger", 2000))
]
ACME = Owner("organization", "acme")
BATCH = 1000
TARGETS = {"single": 0.5, "batched": 0.3, "change_plan": 0.4, "start_trial": 0.4}
THRESHOLD_TARGET = 0.9


def prepared(store: Store) -> Entitlements:
    ents = Entitlements(store)
    for plan in PLANS:
        ents.plans.define(plan, actor="bench")
    ents.subscriptions.subscribe(ACME, "metered", actor="bench")
    ents.usage.consume(ACME, "api_calls", 1, key="warm-up")
    return ents


def rate(work: Callable[[int], int], seconds: float) -> float:
    """Units of work per second over the best of three slices of ``seconds / 3``."""
    best = 0.0
    counter = itertools.count()
    for _ in range(3):
        done, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds / 3:
            done += work(next(counter))
        best = max(best, done / (time.perf_counter() - began))
    return best


def ours(ents: Entitlements, seconds: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]

    def single(i: int) -> int:
        ents.usage.consume(ACME, "api_calls", 1, key=f"{tag}-s{i}")
        return 1

    def batched(i: int) -> int:
        events = [UsageEvent(ACME, "api_calls", 1, key=f"{tag}-b{i}-{k}") for k in range(BATCH)]
        ents.usage.consume_many(events)
        return BATCH

    def change_plan(i: int) -> int:
        ents.subscriptions.change_plan(ACME, PLANS[(i + 1) % 2].key, actor="bench")
        return 1

    def start_trial(i: int) -> int:
        ents.subscriptions.start_trial(Owner("organization", f"{tag}-t{i}"), "metered", actor="b")
        return 1

    if ents.subscriptions.get(ACME).plan_key != "metered":
        ents.subscriptions.change_plan(ACME, "metered", actor="bench")
    return {
        "single": rate(single, seconds),
        "batched": rate(batched, seconds),
        "change_plan": rate(change_plan, seconds),
        "start_trial": rate(start_trial, seconds),
    }


def timed(work: Callable[[int], int], seconds: float) -> tuple[float, float]:
    """Units of work per second over one slice of ``seconds``, by the wall clock and by
    this process's CPU time (which a busy machine's preemptions leave out; on a server
    engine it leaves out the server's share, the same statements either way, so a CPU
    ratio is the stricter one). The cycle collector runs before and is held off during
    the slice (as ``timeit`` does): a full collection of a heap this size takes a good
    part of a slice, and would land in one of a pair by chance."""
    gc.collect()
    gc.disable()
    try:
        done, began, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - began < seconds:
            done += work(done)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        return done / wall, done / max(cpu, 1e-6)
    finally:
        gc.enable()


Pair = tuple[tuple[float, float], tuple[float, float]]
"""(with thresholds, without), each (wall /s, CPU /s)."""


def with_thresholds(ents: Entitlements, rounds: int, seconds: float) -> dict[str, list[Pair]]:
    """(with thresholds, without) per path and round: the same limit value and kind, only
    the thresholds differ. Each round takes a fresh owner (so both start from empty
    counters and ledgers) and times the two back to back, one slice of ``seconds`` each,
    the order alternating round by round (ABBA...): drift on a loaded machine hits both
    alike, and the ratio is taken within a round."""
    tag = uuid.uuid4().hex[:8]

    def single(owner: Owner, metric: str) -> Callable[[int], int]:
        def work(i: int) -> int:
            ents.usage.consume(owner, metric, 1, key=f"{metric}-s{i}")
            return 1

        return work

    def batched(owner: Owner, metric: str) -> Callable[[int], int]:
        def work(i: int) -> int:
            events = [UsageEvent(owner, metric, 1, key=f"{metric}-b{i}-{k}") for k in range(BATCH)]
            ents.usage.consume_many(events)
            return BATCH

        return work

    found: dict[str, list[Pair]] = {"single": [], "batched": []}
    for round_ in range(rounds):
        owner = Owner("organization", f"{tag}-{round_}")
        ents.subscriptions.subscribe(owner, "metered", actor="bench")
        for metric in ("alerted", "calls"):
            ents.usage.consume(owner, metric, 1, key=f"{metric}-warm-up")
        for path, make in (("single", single), ("batched", batched)):
            order = ("alerted", "calls") if round_ % 2 == 0 else ("calls", "alerted")
            rates = {metric: timed(make(owner, metric), seconds) for metric in order}
            found[path].append((rates["alerted"], rates["calls"]))
    return found


def lean_memory(seconds: float) -> dict[str, float]:
    keys: dict[str, int] = {}
    counters = {"api_calls": 0}
    subscriptions: dict[str, dict[str, Any]] = {"acme": {"plan": "metered"}}
    audit: list[tuple[str, str]] = []

    def single(i: int) -> int:
        key = f"s{i}"
        if key not in keys:
            keys[key] = 1
            counters["api_calls"] += 1
        return 1

    def batched(i: int) -> int:
        for k in range(BATCH):
            key = f"b{i}-{k}"
            if key not in keys:
                keys[key] = 1
                counters["api_calls"] += 1
        return BATCH

    def change_plan(i: int) -> int:
        subscriptions["acme"]["plan"] = PLANS[i % 2].key
        audit.append(("subscription.change_plan", "acme"))
        return 1

    def start_trial(i: int) -> int:
        subscriptions[f"t{i}"] = {"plan": "metered"}
        audit.append(("subscription.start_trial", f"t{i}"))
        return 1

    return {
        "single": rate(single, seconds),
        "batched": rate(batched, seconds),
        "change_plan": rate(change_plan, seconds),
        "start_trial": rate(start_trial, seconds),
    }


def lean_sql(engine: sa.Engine, seconds: float) -> dict[str, float]:
    """The same writes with plain SQLAlchemy Core on the same tables: no checks at all."""
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    with engine.connect() as c:
        sub = dict(
            c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.owner_id == "acme"))
            .mappings()
            .one()
        )
        period = c.execute(sa.select(t.usage_counters.c.period_start)).scalar_one()
    counter = t.usage_counters.c

    def ledger_row(key: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "tenant": "",
            "owner_kind": "organization",
            "owner_id": "lean",
            "metric": "api_calls",
            "amount": 1,
            "period_start": period,
            "at": now,
            "key": key,
        }

    def audit_row(action: str, owner_id: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "tenant": "",
            "at": now,
            "actor": "bench",
            "action": action,
            "target": f"subscription:{owner_id}",
            "owner_kind": "organization",
            "owner_id": owner_id,
            "before": None,
            "after": {"plan": "metered"},
            "reason": None,
        }

    with engine.begin() as c:
        c.execute(
            t.usage_counters.insert().values(
                tenant="",
                owner_kind="organization",
                owner_id="lean",
                metric="api_calls",
                period_start=period,
                used=0,
                reserved=0,
            )
        )
    bump = (
        t.usage_counters.update()
        .where(counter.owner_id == "lean", counter.metric == "api_calls")
        .values(used=counter.used + 1)
    )

    def single(i: int) -> int:
        with engine.begin() as c:
            c.execute(t.usage_records.insert(), ledger_row(f"{tag}-s{i}"))
            c.execute(bump)
        return 1

    def batched(i: int) -> int:
        with engine.begin() as c:
            c.execute(
                t.usage_records.insert(), [ledger_row(f"{tag}-b{i}-{k}") for k in range(BATCH)]
            )
        return BATCH

    def change_plan(i: int) -> int:
        with engine.begin() as c:
            c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub["id"])
                .values(plan_key=PLANS[i % 2].key, updated_at=now)
            )
            c.execute(t.audit_events.insert(), audit_row("subscription.change_plan", "acme"))
        return 1

    def start_trial(i: int) -> int:
        owner_id = f"{tag}-lean-{i}"
        row = {**sub, "id": uuid.uuid4().hex, "owner_id": owner_id, "live_owner": None}
        row.pop("pk")
        with engine.begin() as c:
            c.execute(t.subscriptions.insert(), row)
            c.execute(t.audit_events.insert(), audit_row("subscription.start_trial", owner_id))
        return 1

    return {
        "single": rate(single, seconds),
        "batched": rate(batched, seconds),
        "change_plan": rate(change_plan, seconds),
        "start_trial": rate(start_trial, seconds),
    }


def fresh_sql(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        if migrations.at_head(connection):
            migrations.downgrade(connection, "base")
        metadata.drop_all(connection)
        connection.execute(sa.text("DROP TABLE IF EXISTS ent_alembic_version"))
    store.create_schema()
    return store


def warm_check(number: int) -> None:
    ents = prepared(MemoryStore())
    ents.usage.consume(ACME, "projects", 3)
    ents.usage.check(ACME, "projects")
    plain = {("organization", "acme", "projects"): 3}
    base = min(
        timeit.repeat(
            lambda: plain.get(("organization", "acme", "projects")), number=number, repeat=5
        )
    )
    check = min(timeit.repeat(lambda: ents.usage.check(ACME, "projects"), number=number, repeat=5))
    print(f"dict.get:            {base / number * 1e9:8.0f} ns")
    print(f"warm usage.check:    {check / number * 1e9:8.0f} ns  ({check / base:.1f}x dict.get)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=9, help="rounds of with/without")
    parser.add_argument("--slice", type=float, default=0.4, help="seconds per timed slice")
    parser.add_argument(
        "--thresholds-only", action="store_true", help="only the with/without table"
    )
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to measure on")
    parser.add_argument("--mariadb", default=None, help="a MariaDB URL to measure on")
    args = parser.parse_args()
    if not args.thresholds_only:
        warm_check(args.number)
    stores: list[tuple[str, Callable[[], Store]]] = [
        ("memory", MemoryStore),
        ("SQLite", lambda: fresh_sql(f"sqlite:///{Path(tempfile.mkdtemp()) / 'usage.db'}")),
    ]
    if args.postgres:
        stores.append(("PostgreSQL", lambda: fresh_sql(args.postgres)))
    if args.mariadb:
        stores.append(("MariaDB", lambda: fresh_sql(args.mariadb)))
    alerts: dict[str, dict[str, list[Pair]]] = {}
    if not args.thresholds_only:
        print("\n| store | path | ours /s | lean /s | ratio | target |\n|---|---|---|---|---|---|")
    for name, make in stores:
        store = make()
        ents = prepared(store)
        if not args.thresholds_only:
            lean_rows(name, store, ents, args.seconds)
        alerts[name] = with_thresholds(ents, args.rounds, args.slice)
        ents.close()
    print(
        f"\nconsume with thresholds / without: {args.rounds} rounds of one "
        f"{args.slice} s slice each; rates are wall-clock medians, ratios min / median / "
        "max over the rounds, by the wall clock and by CPU time\n"
        "\n| store | path | with /s | without /s | wall min | median | max "
        "| CPU min | median | max | target |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, paths in alerts.items():
        for path, found in paths.items():
            wall = sorted(a[0] / b[0] for a, b in found)
            cpu = sorted(a[1] / b[1] for a, b in found)
            low = min(statistics.median(wall), statistics.median(cpu))
            mark = "ok" if low >= THRESHOLD_TARGET else "below"
            print(
                f"| {name} | consume {path} | {statistics.median(a[0] for a, _ in found):,.0f} "
                f"| {statistics.median(b[0] for _, b in found):,.0f} | {_spread(wall)} "
                f"| {_spread(cpu)} | {THRESHOLD_TARGET:.0%} {mark} |"
            )


def _spread(ratios: list[float]) -> str:
    return f"{ratios[0]:.0%} | {statistics.median(ratios):.0%} | {ratios[-1]:.0%}"


def lean_rows(name: str, store: Store, ents: Entitlements, seconds: float) -> None:
    """The table of our writes next to the lean ones."""
    mine = ours(ents, seconds)
    lean = (
        lean_memory(seconds) if isinstance(store, MemoryStore) else lean_sql(store.engine, seconds)  # type: ignore[attr-defined]
    )
    for path, target in TARGETS.items():
        ratio = mine[path] / lean[path]
        mark = "ok" if ratio >= target else "below"
        print(
            f"| {name} | {path} | {mine[path]:,.0f} | {lean[path]:,.0f} | "
            f"{ratio:.0%} | {target:.0%} {mark} |"
        )


if __name__ == "__main__":
    main()
