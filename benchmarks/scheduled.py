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
  and the sweep would otherwise renew them in its timed run, twice the items it counts;
- the same-rows baseline is the floor for the rows the library must keep: before the
  copies are made, the sweep applies a few probe subscriptions' changes and every table
  is read before and after; what one probe gained (its history stretch, feed entry,
  notifications, audit rows, ...) is written again for each subscription with plain Core
  executemany, and its ``UPDATE`` sets the columns the sweep's changed, 500 subscriptions
  to a transaction as the lean baseline does. Its rows are deleted before the sweep runs
  too. The rows one item gained, per table, are printed, so the floor says what it holds.

The target is a sweep rate of at least 30% of the lean baseline's on each engine.

    python benchmarks/scheduled.py --sqlite --count 2000          # a quick run
    python benchmarks/scheduled.py --postgres URL --mysql URL --sqlite
"""

from __future__ import annotations

import argparse
import json
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
PROBES = 8


def fresh(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        migrations.downgrade(connection, "base")
        for table in reversed(metadata.sorted_tables):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
    store.create_schema()
    return store


def template(store: SqlStore) -> dict[str, Any]:
    """The row of a subscription the library wrote, a change to ``large`` scheduled for
    its period end; removed, so only copies of it are due."""
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
    return row


def copy(store: SqlStore, row: dict[str, Any], owners: list[str]) -> None:
    """Core inserts of the template's row, one per owner."""
    with store.engine.begin() as c:
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


def contents(store: SqlStore) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every table's rows by primary key (a probe's store is small)."""
    with store.engine.connect() as c:
        return {
            table.name: {
                tuple(r[k.name] for k in table.primary_key): dict(r)
                for r in c.execute(sa.select(table)).mappings()
            }
            for table in metadata.sorted_tables
        }


def swap(value: Any, old: str, new: str) -> Any:
    """``value`` with the owner ``old`` named ``new`` wherever it appears."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [swap(v, old, new) for v in value]
    return value


def names(value: Any, owner: str) -> bool:
    return swap(value, owner, "") != value


class Pattern:
    """One row the sweep wrote about the probe ``owner``, ready to copy for another."""

    def __init__(
        self,
        owner: str,
        fixed: dict[str, Any],
        fresh: list[str],
        named: dict[str, tuple[bool, str]],
    ) -> None:
        self.owner, self.fixed, self.fresh, self.named = owner, fixed, fresh, named

    def made(self, owner: str) -> dict[str, Any]:
        row = dict(self.fixed)
        for name in self.fresh:
            row[name] = uuid.uuid4().hex + uuid.uuid4().hex
        for name, (plain, text) in self.named.items():
            text = text.replace(self.owner, owner)
            row[name] = text if plain else json.loads(text)
        return row


class SameRows:
    """What the sweep wrote for one probe: the rows each table gained about it and the
    columns of its subscription row that changed, measured on a small sweep."""

    def __init__(self, store: SqlStore, row: dict[str, Any], instant: Any) -> None:
        probes = [f"probe-{n}" for n in range(PROBES)]
        copy(store, row, probes)
        before = contents(store)
        ents = Entitlements(store, clock=ManualClock(instant))
        changes = ents.process_due(batch=BATCH).changes
        again = ents.process_due(batch=BATCH).changes
        ents.close()
        applied = sum(1 for change in changes if change.request is not None)
        if applied != PROBES or again:
            raise SystemExit(f"probe sweep: {applied} then {len(again)} of {PROBES}")
        after = contents(store)
        self.owner = probes[0]
        self.per_item = {name: (len(after[name]) - len(before[name])) / PROBES for name in after}
        self.rows: dict[str, list[Pattern]] = {}
        for table in metadata.sorted_tables:
            new = [r for k, r in after[table.name].items() if k not in before[table.name]]
            mine = [r for r in new if names(r, self.owner)]
            if mine:
                self.rows[table.name] = [self.pattern(table, r) for r in mine]
        old_sub, new_sub = (
            next(r for r in rows[t.subscriptions.name].values() if r["id"] == self.owner)
            for rows in (before, after)
        )
        self.columns = [k for k, v in new_sub.items() if k != "pk" and v != old_sub[k]]
        self.update = self.pattern(
            t.subscriptions, {k: new_sub[k] for k in self.columns}, prefix="v_"
        )
        self.others = [
            name
            for name in after
            if name != t.subscriptions.name
            and any(
                k in before[name] and r != before[name][k] and names(r, self.owner)
                for k, r in after[name].items()
            )
        ]
        if self.others:
            raise SystemExit(f"the sweep also changed rows of {self.others}: not modelled")

    def describe(self) -> str:
        counted = ", ".join(
            f"{name.removeprefix('ent_')} {n:g}" for name, n in self.per_item.items() if n
        )
        written = ", ".join(
            f"{name.removeprefix('ent_')} {len(rows)}" for name, rows in self.rows.items()
        )
        changed = ", ".join(sorted(self.columns))
        return (
            f"rows per item, counted: {counted}\n"
            f"           written by the floor: {written}; UPDATE sets {changed}"
        )

    def pattern(self, table: sa.Table, row: dict[str, Any], prefix: str = "") -> Pattern:
        """What of ``row`` stays, what is drawn afresh (a unique value not naming the
        owner: an id, ``live_owner``) and what names the owner, worked out once so that
        writing a copy is little more than a dict merge."""
        fixed: dict[str, Any] = {}
        fresh: list[str] = []
        named: dict[str, tuple[bool, str]] = {}
        for name, value in row.items():
            column = table.c[name]
            if column is table.autoincrement_column:
                continue
            if names(value, self.owner):
                text = value if isinstance(value, str) else json.dumps(value)
                named[prefix + name] = (isinstance(value, str), text)
            elif column.unique or name == "id":
                fresh.append(prefix + name)
            else:
                fixed[prefix + name] = value
        return Pattern(self.owner, fixed, fresh, named)

    def write(self, store: SqlStore, row: dict[str, Any], ids: list[str]) -> float:
        """The probe's rows again for each of ``ids``, batched: seconds taken."""
        c = t.subscriptions.c
        update = (
            t.subscriptions.update()
            .where(c.id == sa.bindparam("sid"), c.revision == sa.bindparam("seen"))
            .values({k: sa.bindparam(f"v_{k}") for k in self.columns})
        )
        tables = [table for table in metadata.sorted_tables if table.name in self.rows]
        began = time.perf_counter()
        for first in range(0, len(ids), BATCH):
            batch = ids[first : first + BATCH]
            with store.engine.begin() as conn:
                conn.execute(
                    update,
                    [
                        {
                            "sid": i,
                            "seen": row["revision"],
                            **self.update.made(i),
                        }
                        for i in batch
                    ],
                )
                for table in tables:
                    conn.execute(
                        table.insert(),
                        [p.made(i) for i in batch for p in self.rows[table.name]],
                    )
        return time.perf_counter() - began


def forget(store: SqlStore, prefix: str) -> None:
    """Delete a baseline's rows (untimed), so the sweep's run finds only its own work."""
    with store.engine.begin() as c:
        for table in reversed(metadata.sorted_tables):
            if "owner_id" in table.c:
                c.execute(table.delete().where(table.c.owner_id.like(f"{prefix}-%")))


def engine_run(name: str, url: str, count: int) -> None:
    store = fresh(url)
    row = template(store)
    at = row["scheduled"]["at"]
    instant = row["period_end"].replace(tzinfo=START.tzinfo) + timedelta(hours=1)
    same = SameRows(store, row, instant)
    swept = [f"sweep-{n}" for n in range(count)]
    lean = [f"lean-{n}" for n in range(count)]
    plain = [f"same-{n}" for n in range(count)]
    copy(store, row, swept + lean + plain)
    lean_seconds = baseline(store, row, lean, instant)
    forget(store, "lean")  # their periods ended too: the sweep would renew them
    same_seconds = same.write(store, row, plain)
    forget(store, "same")
    ents = Entitlements(store, clock=ManualClock(instant))
    began = time.perf_counter()
    report = ents.process_due(batch=BATCH)
    sweep_seconds = time.perf_counter() - began
    applied = sum(1 for change in report.changes if change.request is not None)
    ents.close()
    lean_rate, sweep_rate = count / lean_seconds, applied / sweep_seconds
    same_rate = count / same_seconds
    print(
        f"{name:<10} baseline {lean_rate:>9.0f}/s   sweep {sweep_rate:>9.0f}/s   "
        f"sweep/baseline {sweep_rate / lean_rate:>6.1%} (target >= 30%)   "
        f"applied {applied}/{count}, due at {at}, failures {len(report.failures)}"
    )
    print(
        f"{'':<10} same rows {same_rate:>8.0f}/s   "
        f"same-rows/baseline {same_rate / lean_rate:>6.1%}   "
        f"sweep/same-rows {sweep_rate / same_rate:>6.1%}"
    )
    print(f"{'':<10} {same.describe()}")
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
