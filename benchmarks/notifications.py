"""Delivering notifications next to the same work done lean, measured in one run.

For each store: 10,000 pending notifications (1,000 owners, 10 each) handed to a no-op
handler by ``ents.notifications.deliver(handler, batch=100)``, next to a lean loop with
plain SQLAlchemy Core on the same table — select 100 pending rows (``FOR UPDATE SKIP
LOCKED`` on the servers), call the handler, mark them delivered, commit — with none of the
claims, per-owner order, leases or backoff. On the memory store the lean loop is the
least a dict outbox does: take the first 100 ids of its pending index (in the order
written) under a lock, call the handler, then under the lock mark them delivered and drop
them from the index. The same rows are delivered by both (reset in between).

The two alternate (lean, ours, ours, lean, ...) for ``--rounds`` rounds, so a busy
machine slows both alike; each round gives a ratio, and the table has their min, median
and max. Target: ours ≥ 30 % of lean.

    python benchmarks/notifications.py [--postgres URL] [--mariadb URL] [--count 10000]
        [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, MemoryStore, NotificationKind, Owner
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t
from entitlements.domain.notification import Notification
from entitlements.ports import Store

TARGET = 0.3
BATCH = 100
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def written(store: Store, count: int) -> None:
    """``count`` pending notifications of 1,000 owners, in one unit of work."""
    with store.unit_of_work(None) as uow:
        for i in range(count):
            owner = Owner("organization", f"o{i % 1000:04}")
            uow.notifications.add(
                Notification(
                    id=uuid.uuid4().hex,
                    owner=owner,
                    kind=NotificationKind.USAGE_THRESHOLD,
                    key=f"bench:{i}",
                    facts={"metric": "api", "threshold": 80, "limit": 1000, "used": 800},
                    about=NOW,
                    created_at=NOW,
                )
            )
        uow.commit()


Rates = tuple[float, float]
"""Per second by the wall clock and by this process's CPU time."""


def started() -> Rates:
    return time.perf_counter(), time.process_time()


def rates(done: int, began: Rates) -> Rates:
    """``done`` per second since ``began``, by the wall clock and by CPU time (which a
    busy machine's preemptions leave out, and so does a server's own work)."""
    wall, cpu = time.perf_counter() - began[0], time.process_time() - began[1]
    return done / wall, done / max(cpu, 1e-6)


def ours(store: Store) -> Rates:
    ents = Entitlements(store)
    try:
        began = started()
        taken = ents.notifications.deliver(lambda notification: None, batch=BATCH)
        return rates(taken, began)
    finally:
        ents.close()


def lean_sql(engine: sa.Engine, handler: Callable[[Any], None]) -> Rates:
    n = t.notifications.c
    pending = (
        sa.select(t.notifications)
        .where(n.tenant == "", n.delivered_at.is_(None))
        .order_by(n.pk)
        .limit(BATCH)
    )
    if engine.dialect.name != "sqlite":
        pending = pending.with_for_update(skip_locked=True)
    done = 0
    began = started()
    while True:
        with engine.begin() as c:
            rows = c.execute(pending).mappings().all()
            if not rows:
                break
            for row in rows:
                handler(row)
            c.execute(
                sa.update(t.notifications)
                .where(n.pk.in_([r["pk"] for r in rows]))
                .values(delivered_at=datetime.now(UTC))
            )
        done += len(rows)
    return rates(done, began)


def lean_memory(count: int, handler: Callable[[Any], None]) -> Rates:
    rows = {}
    for i in range(count):
        row_id = uuid.uuid4().hex
        rows[row_id] = {"id": row_id, "owner": f"o{i % 1000:04}", "delivered_at": None}
    pending = dict.fromkeys(rows)
    lock = threading.Lock()
    done = 0
    began = started()
    while True:
        with lock:
            batch = [rows[row_id] for row_id in islice(pending, BATCH)]
        if not batch:
            break
        for row in batch:
            handler(row)
        with lock:
            now = datetime.now(UTC)
            for row in batch:
                row["delivered_at"] = now
                del pending[row["id"]]
        done += len(batch)
    return rates(done, began)


def analyzed(store: SqlStore) -> None:
    """Statistics for the freshly filled table, as a table in service has them: without,
    a planner may walk a whole index for a few rows (both loops are timed after)."""
    statement = {
        "postgresql": "ANALYZE ent_notifications",
        "mysql": "ANALYZE TABLE ent_notifications",
    }
    with store.engine.begin() as c:
        if store.engine.dialect.name in statement:
            result = c.exec_driver_sql(statement[store.engine.dialect.name])
            if result.returns_rows:
                result.all()


def undelivered(store: SqlStore) -> None:
    with store.engine.begin() as c:
        c.execute(
            sa.update(t.notifications).values(
                delivered_at=None, claimed_by=None, claimed_until=None
            )
        )


def fresh_sql(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        if migrations.at_head(connection):
            migrations.downgrade(connection, "base")
        metadata.drop_all(connection)
        connection.execute(sa.text("DROP TABLE IF EXISTS ent_alembic_version"))
    store.create_schema()
    return store


def rounds(make: Callable[[], Store], count: int, times: int) -> list[tuple[Rates, Rates]]:
    """(ours /s, lean /s) for each round; the order alternates round by round."""
    store = make()
    written(store, count)
    sql = store if isinstance(store, SqlStore) else None
    if sql is not None:
        analyzed(sql)

    def lean() -> Rates:
        if sql is None:
            return lean_memory(count, lambda row: None)
        taken = lean_sql(sql.engine, lambda row: None)
        undelivered(sql)
        return taken

    def mine() -> Rates:
        nonlocal store
        if sql is None:
            store = make()
            written(store, count)
            return ours(store)
        taken = ours(sql)
        undelivered(sql)
        return taken

    found = []
    for i in range(times):
        if i % 2:
            a = mine()
            b = lean()
        else:
            b = lean()
            a = mine()
        found.append((a, b))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to measure on")
    parser.add_argument("--mariadb", default=None, help="a MariaDB URL to measure on")
    args = parser.parse_args()
    stores: list[tuple[str, Callable[[], Store]]] = [
        ("memory", MemoryStore),
        ("SQLite", lambda: fresh_sql(f"sqlite:///{Path(tempfile.mkdtemp()) / 'n.db'}")),
    ]
    if args.postgres:
        stores.append(("PostgreSQL", lambda: fresh_sql(args.postgres)))
    if args.mariadb:
        stores.append(("MariaDB", lambda: fresh_sql(args.mariadb)))
    print(
        f"\n{args.count:,} notifications, {args.rounds} rounds; rates are wall-clock medians, "
        "ratios min / median / max over the rounds, by the wall clock and by CPU time (the "
        "CPU ratio leaves out the machine's other work; on a server it also leaves out "
        "the server's, so it counts only there as the client's share)\n"
        "\n| store | ours /s | lean /s | wall min | median | max | CPU min | median | max "
        "| target |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, make in stores:
        found = rounds(make, args.count, args.rounds)
        wall = sorted(a[0] / b[0] for a, b in found)
        cpu = sorted(a[1] / b[1] for a, b in found)
        mark = "ok" if statistics.median(wall) >= TARGET else "below"
        print(
            f"| {name} | {statistics.median(a[0] for a, _ in found):,.0f} | "
            f"{statistics.median(b[0] for _, b in found):,.0f} | {_spread(wall)} | "
            f"{_spread(cpu)} | {TARGET:.0%} {mark} (wall) |"
        )


def _spread(ratios: list[float]) -> str:
    return f"{ratios[0]:.0%} | {statistics.median(ratios):.0%} | {ratios[-1]:.0%}"


if __name__ == "__main__":
    main()
