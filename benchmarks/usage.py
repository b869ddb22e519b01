"""Usage: a warm ``check`` next to a dict lookup, and ``consume`` throughput per store,
measured in one run.

    python benchmarks/usage.py [--postgres postgresql+psycopg://postgres@127.0.0.1/bench]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path

import sqlalchemy as sa

from entitlements import Entitlements, Limit, LimitKind, MemoryStore, Owner, Plan
from entitlements.adapters.sql import SqlStore, metadata
from entitlements.ports import Store

PLAN = Plan(
    "metered",
    "Metered",
    limits={"api_calls": Limit(None, kind=LimitKind.METERED), "projects": Limit(1000)},
    status="active",
)
ACME = Owner("organization", "acme")


def prepared(store: Store) -> Entitlements:
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="bench")
    ents.subscriptions.subscribe(ACME, "metered", actor="bench")
    return ents


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


def throughput(name: str, store: Store, seconds: float) -> None:
    ents = prepared(store)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        ents.usage.consume(ACME, "api_calls", 1, key=f"req-{count}")
        count += 1
    elapsed = time.perf_counter() - began
    print(f"consume with key, {name:<10} {count / elapsed:10,.0f} records/s")


def fresh_sql(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        metadata.drop_all(connection)
        connection.execute(sa.text("DROP TABLE IF EXISTS ent_alembic_version"))
    store.create_schema()
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    warm_check(args.number)
    throughput("memory", MemoryStore(), args.seconds)
    throughput(
        "SQLite", fresh_sql(f"sqlite:///{Path(tempfile.mkdtemp()) / 'usage.db'}"), args.seconds
    )
    if args.postgres:
        throughput("PostgreSQL", fresh_sql(args.postgres), args.seconds)


if __name__ == "__main__":
    main()
