"""Plan-version migrations: subscriptions moved per second by ``ents.migrations.run``
against a lean baseline, and the p99 of a concurrent ``consume`` during the run against
idle, per engine, measured in one run.

The lean baseline is what a script without the library's job would do: per batch of
500, one UPDATE of the plan version and one INSERT of an audit row per subscription, in
one transaction — no owner lock, no terms revision, no over-quota check, no change-feed
entry, no history, no per-item outcome. The migration does all of those per item in a
short transaction of its own (the owner's terms lock is held for one item at a time).

Both populations (``--subscriptions`` each, on plans of their own) are inserted in bulk
first. Targets: the migration at least 0.3x the baseline's rate; consume p99 during the
run at most 2x its p99 idle.

    python benchmarks/migrations.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench \\
        --mysql "mysql+pymysql://root@127.0.0.1/bench?charset=utf8mb4" --subscriptions 100000
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, Limit, LimitKind, Owner, Plan
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import live_owner_key
from entitlements.service import migrations

LIMITS = {"api_calls": Limit(10**12, kind=LimitKind.METERED)}
MORE = {"api_calls": Limit(2 * 10**12, kind=LimitKind.METERED)}
BATCH = 500
CONSUMER_OWNERS = 200


def _wipe_and_migrate(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    store.create_schema()
    with store.engine.begin() as connection:
        for table in reversed(t.metadata.sorted_tables):
            connection.execute(table.delete())
    return store


def _populate(store: SqlStore, ents: Entitlements, plan: str, count: int) -> None:
    """``count`` live subscriptions on ``plan`` v1, inserted in bulk as copies of one made
    through the library; then the plan is revised to v2."""
    ents.plans.define(Plan(plan, plan, limits=LIMITS, status="active"), actor="bench")
    first = Owner("organization", f"{plan}-0")
    ents.subscriptions.subscribe(first, plan, actor="bench")
    c = t.subscriptions.c
    with store.engine.begin() as connection:
        row = dict(
            connection.execute(sa.select(t.subscriptions).where(c.owner_id == first.id))
            .mappings()
            .one()
        )
        row.pop("pk")
        rows = []
        for n in range(1, count):
            owner = Owner("organization", f"{plan}-{n}")
            rows.append(
                {
                    **row,
                    "id": uuid.uuid4().hex,
                    "owner_id": owner.id,
                    "live_owner": live_owner_key(owner),
                }
            )
            if len(rows) == 2000:
                connection.execute(t.subscriptions.insert(), rows)
                rows = []
        if rows:
            connection.execute(t.subscriptions.insert(), rows)
    ents.plans.revise(plan, actor="bench", limits=MORE)


def _lean_baseline(store: SqlStore, plan: str) -> float:
    """Seconds to move every subscription of ``plan`` to v2 the lean way."""
    c = t.subscriptions.c
    began = time.perf_counter()
    with store.engine.connect() as connection:
        pks = connection.execute(
            sa.select(c.pk, c.id, c.owner_id).where(c.plan_key == plan).order_by(c.pk)
        ).all()
    now = datetime.now(UTC)
    for start in range(0, len(pks), BATCH):
        chunk = pks[start : start + BATCH]
        with store.engine.begin() as connection:
            connection.execute(
                t.subscriptions.update()
                .where(c.pk.in_([p.pk for p in chunk]))
                .values(plan_version=2, revision=c.revision + 1)
            )
            connection.execute(
                t.audit_events.insert(),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "tenant": "",
                        "at": now,
                        "actor": "staff:bench",
                        "action": "subscription.migrate",
                        "target": f"subscription:{p.id}",
                        "owner_kind": "organization",
                        "owner_id": p.owner_id,
                        "before": None,
                        "after": {"plan_version": 2},
                        "reason": "lean baseline",
                    }
                    for p in chunk
                ],
            )
    return time.perf_counter() - began


def consumer(url: str, plan: str, start: Any, stop: Any, out: Any) -> None:
    """Consume one unit at a time for the first owners of ``plan``, round robin, until
    ``stop``; put each call's latency (after ``start``)."""
    ents = Entitlements(SqlStore.from_url(url))
    owners = [Owner("organization", f"{plan}-{n}") for n in range(CONSUMER_OWNERS)]
    for owner in owners[:10]:
        ents.usage.consume(owner, "api_calls", 1)
    start.wait()
    latencies: list[float] = []
    n = 0
    while not stop.is_set():
        began = time.perf_counter()
        ents.usage.consume(owners[n % len(owners)], "api_calls", 1)
        latencies.append(time.perf_counter() - began)
        n += 1
    ents.close()
    out.put(latencies)


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] * 1000 if ordered else float("nan")


def _consuming(url: str, plan: str, during: Any) -> tuple[float, Any]:
    """p99 (ms) of one consumer process while ``during()`` runs; its result."""
    ctx = multiprocessing.get_context("spawn")
    start, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    process = ctx.Process(target=consumer, args=(url, plan, start, stop, out))
    process.start()
    time.sleep(3)  # the consumer is connected and warm
    start.set()
    result = during()
    stop.set()
    latencies = out.get(timeout=120)
    process.join(timeout=30)
    return _p99(latencies), result


def engine_row(name: str, url: str, count: int, idle_seconds: float) -> dict[str, Any]:
    store = _wipe_and_migrate(url)
    ents = Entitlements(store)
    _populate(store, ents, "lean", count)
    _populate(store, ents, "moved", count)
    lean = _lean_baseline(store, "lean")

    idle_p99, _ = _consuming(url, "moved", lambda: time.sleep(idle_seconds))

    def migrate() -> float:
        began = time.perf_counter()
        migration = ents.migrations.create("moved", actor="bench")
        while not ents.migrations.run(migration.id, batch=BATCH).done:
            pass
        return time.perf_counter() - began

    busy_p99, seconds = _consuming(url, "moved", migrate)
    moved = ents.migrations.list()[0].counts["moved"]
    ents.close()
    return {
        "engine": name,
        "subscriptions": count,
        "moved": moved,
        "lean_per_s": count / lean,
        "migration_per_s": count / seconds,
        "ratio": lean / seconds,
        "consume_p99_idle_ms": idle_p99,
        "consume_p99_during_ms": busy_p99,
        "p99_ratio": busy_p99 / idle_p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (its tables are wiped)")
    parser.add_argument("--mysql", help="a MariaDB/MySQL URL (its tables are wiped)")
    parser.add_argument("--sqlite", help="a SQLite file URL")
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--group", type=int, help="items per unit of work (default: the run's)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (min/median/max)")
    args = parser.parse_args()
    if args.group:
        migrations.GROUP = args.group
    engines = [
        (name, url)
        for name, url in (
            ("postgresql", args.postgres),
            ("mariadb", args.mysql),
            ("sqlite", args.sqlite),
        )
        if url
    ]
    rows = [
        engine_row(name, url, args.subscriptions, args.idle_seconds)
        for _ in range(args.repeat)
        for name, url in engines
    ]
    print(
        "| engine | subscriptions | lean /s | migration /s | ratio (target >= 0.3) "
        "| consume p99 idle ms | during ms | p99 ratio (target <= 2) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['subscriptions']:,} (moved {r['moved']:,}) "
            f"| {r['lean_per_s']:,.0f} | {r['migration_per_s']:,.0f} | {r['ratio']:.3f} "
            f"| {r['consume_p99_idle_ms']:.2f} | {r['consume_p99_during_ms']:.2f} "
            f"| {r['p99_ratio']:.2f} |"
        )
    if args.repeat > 1:
        print(f"\nover {args.repeat} runs (min / median / max), group {migrations.GROUP}:")
        for name, _ in engines:
            mine = [r for r in rows if r["engine"] == name]
            print(
                f"{name}: ratio {_spread([r['ratio'] for r in mine], '.4f')}; "
                f"p99 ratio {_spread([r['p99_ratio'] for r in mine], '.2f')}"
            )


def _spread(values: list[float], spec: str) -> str:
    return " / ".join(
        format(v, spec) for v in (min(values), statistics.median(values), max(values))
    )


if __name__ == "__main__":
    main()
