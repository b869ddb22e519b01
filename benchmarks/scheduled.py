"""The sweep applying due scheduled changes, against a lean baseline timed in the same run.

A store is filled with Core inserts copying one subscription the library wrote with a
change scheduled for its period end (``--count`` of them, default 10,000, and as many
again for the baseline). Then, at an instant past the change:

- the library's sweep (``ents.process_due``) applies every one: each in its own unit of
  work that claims the owner, reads the subscription, re-checks the change against the
  rules at its instant, stores it with its history stretch, audits it and notes the
  change in the feed;
- the lean baseline does the least any implementation must: one ``UPDATE`` of the
  subscription and one audit row per subscription, batched 500 to a transaction. Its
  rows are deleted before the sweep runs (untimed): their periods have ended as well,
  and the sweep would otherwise renew them in its timed run, twice the items it counts.

The target is a sweep rate of at least 30% of the baseline's on each engine.

    python benchmarks/scheduled.py --sqlite --count 2000          # a quick run
    python benchmarks/scheduled.py --postgres URL --mysql URL --sqlite
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, Limit, ManualClock, Owner, Plan
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t
from entitlements.testing.contract import START

PLANS = (
    Plan("small", "Small", limits={"projects": Limit(10)}, status="active"),
    Plan("large", "Large", limits={"projects": Limit(100)}, status="active"),
)
TEMPLATE = Owner("organization", "template")
CHUNK = 1_000
BATCH = 500


def fresh(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        migrations.downgrade(connection, "base")
        for table in reversed(metadata.sorted_tables):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
    store.create_schema()
    return store


def fill(store: SqlStore, count: int) -> tuple[dict[str, Any], list[str], list[str]]:
    """``count`` subscriptions for the sweep and ``count`` for the baseline, each a copy
    of the template's row (a change to ``large`` scheduled for its period end)."""
    ents = Entitlements(store, clock=ManualClock(START))
    for plan in PLANS:
        ents.plans.define(plan, actor="bench")
    ents.subscriptions.subscribe(TEMPLATE, "small", actor="bench")
    ents.subscriptions.schedule_change(TEMPLATE, plan="large", actor="bench")
    ents.close()
    with store.engine.connect() as c:
        row = dict(
            c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.owner_id == "template"))
            .mappings()
            .one()
        )
        c.execute(t.subscriptions.delete().where(t.subscriptions.c.owner_id == "template"))
        c.commit()
    swept = [f"sweep-{n}" for n in range(count)]
    lean = [f"lean-{n}" for n in range(count)]
    with store.engine.begin() as c:
        owners = swept + lean
        for first in range(0, len(owners), CHUNK):
            c.execute(
                t.subscriptions.insert(),
                [
                    {
                        **{k: v for k, v in row.items() if k != "pk"},
                        "id": owner,
                        "owner_id": owner,
                        "live_owner": uuid.uuid4().hex + uuid.uuid4().hex,
                    }
                    for owner in owners[first : first + CHUNK]
                ],
            )
    return row, swept, lean


def baseline(store: SqlStore, row: dict[str, Any], ids: list[str], at: Any) -> float:
    """One UPDATE and one audit row per subscription, batched: seconds taken."""
    c = t.subscriptions.c
    update = (
        t.subscriptions.update()
        .where(c.id == sa.bindparam("sid"), c.revision == sa.bindparam("seen"))
        .values(
            plan_key="large",
            scheduled=None,
            revision=c.revision + 1,
            updated_at=at,
            next_change_at=row["period_end"],
        )
    )
    began = time.perf_counter()
    for first in range(0, len(ids), BATCH):
        batch = ids[first : first + BATCH]
        with store.engine.begin() as conn:
            conn.execute(update, [{"sid": i, "seen": row["revision"]} for i in batch])
            conn.execute(
                t.audit_events.insert(),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "tenant": "",
                        "at": at,
                        "actor": "system:sweep",
                        "action": "subscription.pending_change_applied",
                        "target": f"subscription:{i}",
                        "owner_kind": "organization",
                        "owner_id": i,
                        "before": None,
                        "after": {"plan_key": "large"},
                        "reason": "bench",
                    }
                    for i in batch
                ],
            )
    return time.perf_counter() - began


def engine_run(name: str, url: str, count: int) -> None:
    store = fresh(url)
    row, _, lean = fill(store, count)
    at = row["scheduled"]["at"]
    instant = row["period_end"].replace(tzinfo=START.tzinfo) + timedelta(hours=1)
    lean_seconds = baseline(store, row, lean, instant)
    with store.engine.begin() as c:  # their periods ended too: the sweep would renew them
        c.execute(t.subscriptions.delete().where(t.subscriptions.c.owner_id.like("lean-%")))
    ents = Entitlements(store, clock=ManualClock(instant))
    began = time.perf_counter()
    report = ents.process_due(batch=BATCH)
    sweep_seconds = time.perf_counter() - began
    applied = sum(1 for change in report.changes if change.request is not None)
    ents.close()
    lean_rate, sweep_rate = count / lean_seconds, applied / sweep_seconds
    print(
        f"{name:<10} baseline {lean_rate:>9.0f}/s   sweep {sweep_rate:>9.0f}/s   "
        f"sweep/baseline {sweep_rate / lean_rate:>6.1%} (target >= 30%)   "
        f"applied {applied}/{count}, due at {at}, failures {len(report.failures)}"
    )
    store.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file in a temp dir")
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--mysql", metavar="URL")
    args = parser.parse_args()
    if args.postgres:
        engine_run("postgres", args.postgres, args.count)
    if args.mysql:
        engine_run("mariadb", args.mysql, args.count)
    if args.sqlite or not (args.postgres or args.mysql):
        with tempfile.TemporaryDirectory() as folder:
            engine_run("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}", args.count)


if __name__ == "__main__":
    main()
