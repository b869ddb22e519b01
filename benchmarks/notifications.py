"""Delivering notifications next to the same work done lean, measured in one run.

For each store: 10,000 pending notifications (1,000 owners, 10 each) handed to a no-op
handler by ``ents.notifications.deliver(handler, batch=100)``, next to a lean loop with
plain SQLAlchemy Core on the same table — select 100 pending rows (``FOR UPDATE SKIP
LOCKED`` on the servers), call the handler, mark them delivered, commit — with none of the
claims, per-owner order, leases or backoff. On the memory store the lean loop walks a list
of dicts. The same rows are delivered by both (reset in between). Target: ours ≥ 30 % of
lean. Ratios are what count (this hardware is shared and noisy).

    python benchmarks/notifications.py [--postgres URL] [--mariadb URL] [--count 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
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


def ours(store: Store) -> float:
    ents = Entitlements(store)
    try:
        began = time.perf_counter()
        taken = ents.notifications.deliver(lambda notification: None, batch=BATCH)
        took = time.perf_counter() - began
    finally:
        ents.close()
    return taken / took


def lean_sql(engine: sa.Engine, handler: Callable[[Any], None]) -> float:
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
    began = time.perf_counter()
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
    return done / (time.perf_counter() - began)


def lean_memory(count: int, handler: Callable[[Any], None]) -> float:
    rows = [{"id": uuid.uuid4().hex, "delivered_at": None} for _ in range(count)]
    done = 0
    began = time.perf_counter()
    for start in range(0, count, BATCH):
        for row in rows[start : start + BATCH]:
            handler(row)
            row["delivered_at"] = datetime.now(UTC)
            done += 1
    return done / (time.perf_counter() - began)


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
        c.execute(sa.update(t.notifications).values(delivered_at=None))


def fresh_sql(url: str) -> SqlStore:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        if migrations.at_head(connection):
            migrations.downgrade(connection, "base")
        metadata.drop_all(connection)
        connection.execute(sa.text("DROP TABLE IF EXISTS ent_alembic_version"))
    store.create_schema()
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
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
    print("\n| store | delivered | ours /s | lean /s | ratio | target |\n|---|---|---|---|---|---|")
    for name, make in stores:
        store = make()
        written(store, args.count)
        if isinstance(store, SqlStore):
            analyzed(store)
        if isinstance(store, SqlStore):
            lean = lean_sql(store.engine, lambda row: None)
            undelivered(store)
        else:
            lean = lean_memory(args.count, lambda row: None)
        mine = ours(store)
        ratio = mine / lean
        mark = "ok" if ratio >= TARGET else "below"
        print(
            f"| {name} | {args.count:,} | {mine:,.0f} | {lean:,.0f} | "
            f"{ratio:.0%} | {TARGET:.0%} {mark} |"
        )


if __name__ == "__main__":
    main()
