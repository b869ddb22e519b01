"""Finalizing period-end invoices, and a cold draft against a cold resolution — on SQLite,
PostgreSQL and MariaDB, each measured in one run.

    python benchmarks/invoices.py                               # SQLite, 10,000 owners
    python benchmarks/invoices.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench
    python benchmarks/invoices.py --mysql mysql+pymysql://root@127.0.0.1/bench

``finalize_many/s`` is ``ents.invoices.finalize_many`` over the owners whose period just
ended, a group of owners to a unit of work (drafts from one read of the group's history,
numbers from the gapless sequence under its lock, invoices and lines inserted with one
statement each, audit, notification and feed rows). The lean baseline stores the same
invoices and lines with no library at all: precomputed rows, inserted in batches of
1,000, one sequence update per batch. ``share`` is the library's rate over the
baseline's (target: at least 30%). ``finalize/s`` is ``ents.invoices.finalize`` called
owner by owner (a unit of work each) on the first tenth of the owners, for comparison.

``sweep/s`` is the same invoices finalized the way hosts get them at a period end: one
``ents.process_due()`` at the end instant, on a store loaded afresh, which stores each
owner's renewal and finalizes the ended period's invoice, a group of owners to a unit of
work. It does more than ``finalize/s`` (the renewal too); its share is over the same
baseline.

``draft/resolve`` is a cold ``ents.invoices.draft(owner)`` over a cold ``ents.resolve(owner)``
of the same owners, alternated round by round (target: at most 3).

Subscriptions and their history are bulk-loaded into the tables (not through the
service) so that set-up takes seconds.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, Limit, Owner, Plan, Price, SeatCharge
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.subscriptions import subscription_row
from entitlements.clock import ManualClock
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.subscription import Subscription

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
BATCH = 1000
PLAN = Plan(
    "team",
    "Team",
    limits={"seats": Limit(5, kind="seats")},
    price=Price("49.00", "EUR"),
    charges=(SeatCharge("9.00", included=5),),
    status="active",
)


def owner(i: int) -> Owner:
    return Owner("organization", f"org-{i:07d}")


def bulk_load(store: SqlStore, count: int) -> None:
    """Each owner: seats 5 from the start, 7 from day 10 (two stretches, two lines)."""
    cycle = BillingCycle.monthly()
    names = {c.name for c in t.subscription_history.c} - {"seq"}
    for low in range(0, count, BATCH):
        rows, history = [], []
        for i in range(low, min(count, low + BATCH)):
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
            rows.append({**row, "seats": 7, "revision": 2})
            base = {k: v for k, v in row.items() if k in names}
            history.append({**base, "effective_at": START})
            history.append(
                {**base, "seats": 7, "revision": 2, "effective_at": START + timedelta(days=10)}
            )
        with store.engine.begin() as connection:
            connection.execute(t.subscriptions.insert(), rows)
            connection.execute(t.subscription_history.insert(), history)


def fresh(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        migrations.downgrade(connection, "base")
        metadata.drop_all(connection)
        connection.execute(sa.text("DROP TABLE IF EXISTS ent_alembic_version"))
    store.create_schema()
    return store


def finalize_rate(ents: Entitlements, owners: range) -> float:
    """Owner by owner, a unit of work each."""
    began = time.perf_counter()
    for i in owners:
        ents.invoices.finalize(owner(i), actor="bench")
    return len(owners) / (time.perf_counter() - began)


def finalize_many_rate(ents: Entitlements, owners: range) -> float:
    """In one call, a group of owners to a unit of work."""
    began = time.perf_counter()
    made = ents.invoices.finalize_many([owner(i) for i in owners], actor="bench")
    seconds = time.perf_counter() - began
    assert all(made), "every owner owes"
    return len(owners) / seconds


def sweep_rate(url: str, count: int) -> float:
    """Period-end invoices finalized by one sweep at the period's end, per second."""
    store = loaded(url, count)
    ents = Entitlements(store, clock=ManualClock(END))
    began = time.perf_counter()
    report = ents.process_due()
    seconds = time.perf_counter() - began
    ents.close()
    with store.engine.connect() as connection:
        made = connection.execute(sa.select(sa.func.count()).select_from(t.invoices)).scalar()
    store.engine.dispose()
    assert not report.failures, report.failures[:3]
    assert made == count, made
    return count / seconds


def loaded(url: str, count: int) -> SqlStore:
    store = fresh(url)
    setup = Entitlements(store)
    setup.plans.define(PLAN, actor="bench")
    setup.close()
    bulk_load(store, count)
    return store


def baseline_rate(store: SqlStore, count: int) -> float:
    """The same invoices, as precomputed rows inserted in batches."""
    issued = END
    began = time.perf_counter()
    for low in range(0, count, BATCH):
        invoices, lines = [], []
        for i in range(low, min(count, low + BATCH)):
            invoice_id = f"b{i:09d}"
            invoices.append(
                {
                    "id": invoice_id,
                    "tenant": "",
                    "owner_kind": "organization",
                    "owner_id": f"base-{i:07d}",
                    "number": f"BASE-2026-{i + 1:06d}",
                    "kind": "invoice",
                    "subscription_id": f"s{i:09d}",
                    "period_start": START,
                    "period_end": END,
                    "currency": "EUR",
                    "total": Decimal("49.00"),
                    "issued_at": issued,
                    "due_at": issued + timedelta(days=30),
                    "content_hash": "0" * 64,
                    "credits": None,
                    "status": "open",
                    "paid_at": None,
                    "payment_reference": None,
                    "voided_at": None,
                    "void_reason": None,
                }
            )
            for position in range(3):
                lines.append(_line(invoice_id, position))
        with store.engine.begin() as connection:
            connection.execute(t.invoices.insert(), invoices)
            connection.execute(t.invoice_lines.insert(), lines)
            _bump_sequence(connection, len(invoices))
    return count / (time.perf_counter() - began)


def _line(invoice_id: str, position: int) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "position": position,
        "kind": "price",
        "description": "Team",
        "quantity": 1,
        "unit_amount": Decimal("49"),
        "starts_at": START,
        "ends_at": END,
        "exact": "49/3",
        "amount": Decimal("16.33"),
    }


def _bump_sequence(connection: sa.Connection, by: int) -> None:
    c = t.invoice_counters.c
    where = (c.tenant == "", c.prefix == "BASE")
    updated = connection.execute(t.invoice_counters.update().where(*where).values(last=c.last + by))
    if updated.rowcount == 0:
        connection.execute(t.invoice_counters.insert().values(tenant="", prefix="BASE", last=by))


def cold_ratio(url: str, count: int, samples: int) -> tuple[float, float]:
    """Mean µs of a cold draft and of a cold resolution of the same owners (best of 3)."""
    store = SqlStore.from_url(url)
    picks = [owner(random.randrange(count)) for _ in range(samples)]
    clock = ManualClock(START + timedelta(days=20))
    draft = resolve = float("inf")
    for _ in range(3):
        ents = Entitlements(store, clock=clock)  # a cold cache each round
        began = time.perf_counter()
        for who in picks:
            ents.resolve(who)
        resolve = min(resolve, (time.perf_counter() - began) / samples)
        ents.close()
        ents = Entitlements(store, clock=clock)
        began = time.perf_counter()
        for who in picks:
            ents.invoices.draft(who)
        draft = min(draft, (time.perf_counter() - began) / samples)
        ents.close()
    store.engine.dispose()
    return draft * 1e6, resolve * 1e6


def run(name: str, url: str, count: int, samples: int) -> None:
    store = loaded(url, count)
    draft_us, resolve_us = cold_ratio(url, count, samples)
    ents = Entitlements(store, clock=ManualClock(END))
    single = count // 10
    one_by_one = finalize_rate(ents, range(single))
    library = finalize_many_rate(ents, range(single, count))
    ents.close()
    baseline = baseline_rate(store, count)
    store.engine.dispose()
    swept = sweep_rate(url, count)
    print(f"\n{name}: {count:,} period-end invoices")
    print(f"  finalize_many/s {library:>10,.0f}   lean baseline/s {baseline:>10,.0f}")
    print(f"  share {library / baseline:>6.1%}  (target: at least 30%)")
    print(
        f"  finalize/s {one_by_one:>10,.0f} (owner by owner)  share {one_by_one / baseline:>6.1%}"
    )
    print(f"  sweep/s {swept:>10,.0f}   share {swept / baseline:>6.1%}  (target: at least 30%)")
    print(
        f"  cold draft {draft_us:,.0f} µs, cold resolve {resolve_us:,.0f} µs:"
        f" draft/resolve {draft_us / resolve_us:.2f} (target: at most 3)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--sqlite", default="sqlite:///invoices-bench.db")
    parser.add_argument("--no-sqlite", action="store_true", help="only the servers given")
    parser.add_argument("--postgres", help="a PostgreSQL URL (its tables are dropped)")
    parser.add_argument("--mysql", help="a MariaDB/MySQL URL (its tables are dropped)")
    args = parser.parse_args()
    engines = [] if args.no_sqlite else [("SQLite", args.sqlite)]
    if args.postgres:
        engines.append(("PostgreSQL", args.postgres))
    if args.mysql:
        engines.append(("MariaDB", args.mysql))
    for name, url in engines:
        run(name, url, args.owners, args.samples)


if __name__ == "__main__":
    main()
