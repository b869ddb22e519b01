"""Cold resolution cost as the number of owners grows, warm vs cold, a past instant vs
now, and bulk trial provisioning throughput — on SQLite, PostgreSQL and MariaDB, measured
in one run.

    python benchmarks/cold_resolution.py                        # SQLite, 1k/100k/1M owners
    python benchmarks/cold_resolution.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench
    python benchmarks/cold_resolution.py --mysql mysql+pymysql://root@127.0.0.1/bench

Every owner also gets a history (three subscription stretches, and for some an override
set and one removed since): ``past µs`` is a cold ``resolve(owner, at)`` for an instant
between two stretches, ``past/now`` its ratio to a cold ``resolve(owner)`` of the same
owners in the same run (target: at most 2).

Rows are bulk-loaded straight into the tables (not through the service) so that building a
million owners takes a minute, not an hour. The figure to read is the ratio between sizes:
an index on every lookup path keeps it flat.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, Limit, Owner, Plan
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.subscriptions import subscription_row
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.subscription import Subscription

START = datetime(2026, 1, 1, tzinfo=UTC)
PAST = START + timedelta(days=12)
"""The instant past answers are asked for: the second of three stretches is in force."""
BATCH = 10_000


def owner(i: int) -> Owner:
    return Owner("organization", f"org-{i:07d}")


def override_row(i: int, **more: Any) -> dict[str, Any]:
    return {
        "tenant": "",
        "owner_kind": "organization",
        "owner_id": f"org-{i:07d}",
        "kind": "feature",
        "key": "beta",
        "reason": "bulk",
        "actor": "staff:bench",
        "created_at": START,
        "expires_at": None,
        "enabled": True,
        "actions": None,
        "value": None,
        **more,
    }


def stretches(row: dict[str, Any], i: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The owner's history: seats 5, 6 then 7 (the stored row) ten days apart; an override
    for one owner in ten, and for another one in ten an override removed on day 15."""
    names = {c.name for c in t.subscription_history.c} - {"seq"}
    base = {k: v for k, v in row.items() if k in names}
    subscription = [
        {**base, "seats": 5 + n, "revision": 1 + n, "effective_at": START + timedelta(days=10 * n)}
        for n in range(3)
    ]
    overrides = []
    if i % 10 in (0, 5):
        overrides.append(override_row(i, present=True, effective_at=START))
    if i % 10 == 5:
        overrides.append(override_row(i, present=False, effective_at=START + timedelta(days=15)))
    return subscription, overrides


def bulk_load(store: SqlStore, start: int, stop: int) -> None:
    cycle = BillingCycle.monthly()
    for low in range(start, stop, BATCH):
        rows, overrides = [], []
        history: list[dict[str, Any]] = []
        override_history: list[dict[str, Any]] = []
        for i in range(low, min(stop, low + BATCH)):
            sub = Subscription(
                id=f"s{i:09d}",
                owner=owner(i),
                plan_key="team",
                plan_version=1,
                status="active",
                created_at=START,
                updated_at=START,
                seats=5,
                cycle=cycle,
                cycle_anchor=START,
                current_period=cycle.period_containing(START, START),
                revision=1,
            )
            row = subscription_row(sub)
            rows.append({**row, "seats": 7, "revision": 3})
            if i % 10 == 0:
                overrides.append(override_row(i))
            past, past_overrides = stretches(row, i)
            history += past
            override_history += past_overrides
        with store.engine.begin() as connection:
            connection.execute(t.subscriptions.insert(), rows)
            connection.execute(t.subscription_history.insert(), history)
            if overrides:
                connection.execute(t.overrides.insert(), overrides)
            if override_history:
                connection.execute(t.override_history.insert(), override_history)


def cold_us(
    ents: Entitlements, picks: list[Owner], at: datetime | None = None, rounds: int = 3
) -> float:
    """Best of ``rounds`` mean times of a cold resolution (``at``: a past instant)."""
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for who in picks:
            ents.resolve(who, at)
        best = min(best, (time.perf_counter() - began) / len(picks))
    return best * 1e6


def now_and_past_us(ents: Entitlements, population: int, samples: int) -> tuple[float, float]:
    """Cold ``resolve(owner)`` and ``resolve(owner, PAST)`` of the same owners, alternated
    round by round so that both see the same machine."""
    picks = [owner(random.randrange(population)) for _ in range(samples)]
    assert ents.subscriptions.at(picks[0], PAST).seats == 6  # type: ignore[union-attr]
    now, past = float("inf"), float("inf")
    for _ in range(3):
        now = min(now, cold_us(ents, picks, rounds=1))
        past = min(past, cold_us(ents, picks, PAST, rounds=1))
    return now, past


def warm_ns(ents: Entitlements, who: Owner, number: int = 200_000) -> float:
    ents.allows(who, "sso")
    began = time.perf_counter()
    for _ in range(number):
        ents.allows(who, "sso")
    return (time.perf_counter() - began) / number * 1e9


def provisioning_per_second(ents: Entitlements, count: int) -> float:
    began = time.perf_counter()
    for i in range(count):
        ents.subscriptions.start_trial(Owner("workspace", f"new-{i}"), "team", actor="staff:bench")
    return count / (time.perf_counter() - began)


def run(name: str, url: str, sizes: list[int], samples: int, trials: int) -> None:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        migrations.downgrade(connection, "base")  # also what is not a table (triggers)
        metadata.drop_all(connection)
        connection.execute(sa.text("DROP TABLE IF EXISTS ent_alembic_version"))
    store.create_schema()
    ents = Entitlements(store)
    ents.plans.define(
        Plan("team", "Team", limits={"seats": Limit(10)}, features={"sso": True}, status="active"),
        actor="bench",
    )
    print(f"\n{name}")
    print(
        f"{'owners':>10} {'load s':>8} {'cold µs':>9} {'x 1st':>7} {'past µs':>9} {'past/now':>9}"
    )
    loaded, first = 0, None
    for size in sorted(sizes):
        began = time.perf_counter()
        bulk_load(store, loaded, size)
        load_s = time.perf_counter() - began
        loaded = size
        with store.engine.begin() as connection:
            if store.engine.dialect.name == "postgresql":
                connection.execute(sa.text("ANALYZE"))
        cold, past = now_and_past_us(ents, size, samples)
        first = first or cold
        print(
            f"{size:>10,} {load_s:>8.1f} {cold:>9.1f} {cold / first:>7.2f}"
            f" {past:>9.1f} {past / cold:>9.2f}"
        )
    warm = warm_ns(ents, owner(0))
    print(f"warm ents.allows: {warm:.0f} ns  (cold/warm = {first * 1000 / warm:,.0f}x)")
    print(
        f"trial provisioning through the service: {provisioning_per_second(ents, trials):,.0f} trials/s"
    )
    store.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--sqlite", default=None, help="SQLite URL (default: a temporary file)")
    parser.add_argument("--postgres", default=None, help="PostgreSQL URL (skipped when absent)")
    parser.add_argument("--mysql", default=None, help="MariaDB/MySQL URL (skipped when absent)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    random.seed(7)
    sqlite_url = args.sqlite or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    run("SQLite", sqlite_url, sizes, args.samples, args.trials)
    if args.postgres:
        run("PostgreSQL", args.postgres, sizes, args.samples, args.trials)
    if args.mysql:
        run("MariaDB", args.mysql, sizes, args.samples, args.trials)


if __name__ == "__main__":
    main()
