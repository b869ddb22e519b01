"""What the operations a host runs often cost at a small store and at a large one,
side by side, measured in one run per engine.

A store is filled fast with Core inserts copying rows the library wrote (a
subscription, an audit event, ledger rows): ``--full`` ledger rows (default 1,000,000),
a tenth as many owners with a live subscription and as many audit events. Then every
operation is timed (best of ``--repeat``) at the small size (1,000 ledger rows), the
store is grown to the full size, and timed again. The table reports cost at full size
over cost at 1k; the target is 1.5x at most for every operation on every engine.

    python benchmarks/scale.py --sqlite --full 100000          # a quick run
    python benchmarks/scale.py --postgres URL --mysql URL --sqlite
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, Limit, LimitKind, Owner, Plan, UsageEvent
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t

PLAN = Plan(
    "scale",
    "Scale",
    features={"export": True},
    limits={"api_calls": Limit(10**12, kind=LimitKind.METERED), "projects": Limit(10)},
    status="active",
)
PROBE = Owner("organization", "probe")
OWNERS = [Owner("organization", f"batch-{i}") for i in range(50)]
SMALL = 1_000
CHUNK = 10_000


def fresh(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        migrations.downgrade(connection, "base")
        for table in reversed(metadata.sorted_tables):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
    store.create_schema()
    return store


def templates(store: SqlStore) -> dict[str, dict[str, Any]]:
    """Rows the library wrote, to copy: the probe's subscription and an audit event."""
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="bench")
    for owner in [PROBE, *OWNERS]:
        ents.subscriptions.subscribe(owner, PLAN.key, actor="bench")
    ents.usage.consume(PROBE, "api_calls", 1, key="first")
    ents.close()
    with store.engine.connect() as c:
        sub = c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.owner_id == "probe"))
        audit = c.execute(sa.select(t.audit_events).where(t.audit_events.c.owner_id == "probe"))
        period = c.execute(sa.select(t.usage_counters.c.period_start)).scalars().first()
        return {
            "subscription": dict(sub.mappings().one()),
            "audit": dict(audit.mappings().first() or {}),
            "period": {"start": period},
        }


def grow(store: SqlStore, rows: dict[str, dict[str, Any]], start: int, end: int) -> None:
    """Ledger rows ``start``..``end`` (a tenth of them the probe's and the batch owners'
    own history), one owner with a live subscription and one audit event per ten."""
    now = datetime.now(UTC)
    period = rows["period"]["start"]
    sub, audit = rows["subscription"], rows["audit"]
    with store.engine.begin() as c:
        for first in range(start, end, CHUNK):
            numbers = range(first, min(end, first + CHUNK))
            c.execute(
                t.usage_records.insert(),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "tenant": "",
                        "owner_kind": "organization",
                        "owner_id": _ledger_owner(n),
                        "metric": "api_calls",
                        "amount": 1,
                        "period_start": period,
                        "at": now - timedelta(seconds=n),
                        "key": f"history-{n}",
                    }
                    for n in numbers
                ],
            )
            owners = [n for n in numbers if n % 10 == 0]
            c.execute(
                t.subscriptions.insert(),
                [
                    {
                        **{k: v for k, v in sub.items() if k != "pk"},
                        "id": uuid.uuid4().hex,
                        "owner_id": f"owner-{n}",
                        "live_owner": uuid.uuid4().hex + uuid.uuid4().hex,
                        "external_id": f"cus_{n}",
                    }
                    for n in owners
                ],
            )
            if audit:
                c.execute(
                    t.audit_events.insert(),
                    [
                        {
                            **{k: v for k, v in audit.items() if k != "pk"},
                            "id": uuid.uuid4().hex,
                            "owner_id": f"owner-{n}" if n % 100 else "probe",
                        }
                        for n in owners
                    ],
                )
    analyze(store)


def _ledger_owner(n: int) -> str:
    if n % 10 == 0:
        return "probe" if n % 20 == 0 else OWNERS[n % len(OWNERS)].id
    return f"owner-{n - n % 10}"


def analyze(store: SqlStore) -> None:
    """Statistics as a server's background maintenance keeps them."""
    dialect = store.engine.dialect.name
    tables = "ent_usage_records, ent_subscriptions, ent_audit_events"
    if dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"ANALYZE {tables}")
    elif dialect in ("mysql", "mariadb"):
        with store.engine.connect() as c:
            c.exec_driver_sql(f"ANALYZE TABLE {tables}").all()


def operations(store: SqlStore) -> dict[str, Callable[[int], Any]]:
    ents = Entitlements(store)
    tag = uuid.uuid4().hex[:6]

    def cold(i: int) -> Any:
        ents.runtime.cache.clear()
        return ents.snapshot(PROBE)

    def many(owners: list[Owner]) -> Callable[[int], Any]:
        def run(i: int) -> Any:
            return ents.usage.consume_many(
                [
                    UsageEvent(owners[k % len(owners)], "api_calls", 1, key=f"{tag}-{i}-{k}")
                    for k in range(1000)
                ]
            )

        return run

    return {
        "cold resolution": cold,
        "warm allows": lambda i: ents.allows(PROBE, "export"),
        "consume": lambda i: ents.usage.consume(PROBE, "api_calls", 1, key=f"{tag}-c{i}"),
        "consume_many, 1 owner": many([PROBE]),
        "consume_many, 50 owners": many(OWNERS),
        "usage.history": lambda i: ents.usage.history(PROBE, "api_calls"),
        "audit.for_owner": lambda i: ents.audit.for_owner(PROBE),
        "sweep, nothing due": lambda i: ents.process_due(),
        "owner list (search page)": lambda i: ents.subscriptions.search(limit=50),
        "owner search (text)": lambda i: ents.subscriptions.search("cus_12", limit=50),
    }


def timed(work: Callable[[int], Any], repeat: int) -> float:
    best = float("inf")
    for i in range(repeat):
        began = time.perf_counter()
        work(i)
        best = min(best, time.perf_counter() - began)
    return best


def measure(url: str, full: int, repeat: int) -> dict[str, tuple[float, float]]:
    store = fresh(url)
    rows = templates(store)
    grow(store, rows, 0, SMALL)
    small = {name: timed(work, repeat) for name, work in operations(store).items()}
    grow(store, rows, SMALL, full)
    large = {name: timed(work, repeat) for name, work in operations(store).items()}
    store.engine.dispose()
    return {name: (small[name], large[name]) for name in small}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres")
    parser.add_argument("--mysql")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--full", type=int, default=1_000_000, help="ledger rows at full size")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    engines: list[tuple[str, str]] = []
    if args.postgres:
        engines.append(("PostgreSQL", args.postgres))
    if args.mysql:
        engines.append(("MariaDB", args.mysql))
    if args.sqlite:
        engines.append(("SQLite", f"sqlite:///{Path(tempfile.mkdtemp()) / 'scale.db'}"))
    print(f"| engine | operation | at 1k (ms) | at {args.full:,} (ms) | ratio |")
    print("|---|---|---|---|---|")
    for name, url in engines:
        for operation, (small, large) in measure(url, args.full, args.repeat).items():
            flag = "" if large <= 1.5 * small else " **over 1.5x**"
            print(
                f"| {name} | {operation} | {small * 1000:.2f} | {large * 1000:.2f} | "
                f"{large / small:.2f}x{flag} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
