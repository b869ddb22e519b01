"""One busy owner: many writer processes consuming for the same owner, measured in one run.

Each writer is a real process (multiprocessing, spawn) with its own ``Entitlements``,
calling ``usage.consume`` for one owner in a loop for ``--seconds``; the table gives
consumes per second (all writers together) and the 99th percentile latency of one call,
for 1, 2, 4 and 8 writers, per engine. Targets (PostgreSQL): 8 writers keep at least
0.6x the rate of one, p99 at most 50 ms; one writer with the change feed's notices on
keeps at least 0.9x its rate with them off.

On PostgreSQL two more rows are measured in the same run: one writer with notices off
(``SqlStore.notices = None``: followers then only poll), and, with ``--trigger``, the
notifying trigger of the earlier schema put back for the run (every feed insert calls
``pg_notify`` inside the writing transaction) at each writer count — the "before".

    python benchmarks/busy_owner.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench \\
        --mysql "mysql+pymysql://root@127.0.0.1/bench?charset=utf8mb4" --sqlite --trigger
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from entitlements import Entitlements, EntitlementsError, Limit, LimitKind, Owner, Plan
from entitlements.adapters.sql import SqlStore

PLAN = Plan(
    "bench-busy",
    "Busy",
    limits={"api_calls": Limit(10**15, kind=LimitKind.METERED)},
    status="active",
)
WRITERS = (1, 2, 4, 8)
TRIGGER = (
    "CREATE OR REPLACE FUNCTION ent_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN PERFORM pg_notify('entitlements_changes', ''); RETURN NULL; END $$",
    "DROP TRIGGER IF EXISTS ent_changes_notify ON ent_changes",
    "CREATE TRIGGER ent_changes_notify AFTER INSERT ON ent_changes "
    "FOR EACH STATEMENT EXECUTE FUNCTION ent_changes_notify()",
)
NO_TRIGGER = (
    "DROP TRIGGER IF EXISTS ent_changes_notify ON ent_changes",
    "DROP FUNCTION IF EXISTS ent_changes_notify()",
)


def writer(url: str, owner_id: str, notices: bool, start: Any, seconds: float, out: Any) -> None:
    store = SqlStore.from_url(url)
    if not notices:
        store.notices = None
    ents = Entitlements(store)
    owner = Owner("organization", owner_id)
    ents.usage.consume(owner, "api_calls", 1)  # terms cached, connection open
    start.wait()
    latencies: list[float] = []
    ends = time.perf_counter() + seconds
    while (began := time.perf_counter()) < ends:
        ents.usage.consume(owner, "api_calls", 1)
        latencies.append(time.perf_counter() - began)
    ents.close()
    out.put(latencies)


def run(
    url: str, owner_id: str, writers: int, seconds: float, notices: bool
) -> tuple[float, float]:
    """Consumes per second over all writers and the p99 latency in milliseconds."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    processes = [
        ctx.Process(target=writer, args=(url, owner_id, notices, start, seconds, out))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    time.sleep(1.5 + 0.3 * writers)  # spawned, imported, first consume done
    start.set()
    latencies: list[float] = []
    for _ in processes:
        latencies.extend(out.get(timeout=seconds + 120))
    for process in processes:
        process.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return len(latencies) / seconds, p99 * 1000


def prepare(url: str) -> str:
    store = SqlStore.from_url(url)
    store.create_schema()
    ents = Entitlements(store)
    with contextlib.suppress(EntitlementsError):  # defined by an earlier run
        ents.plans.define(PLAN, actor="bench")
    owner_id = f"busy-{uuid.uuid4().hex[:8]}"
    ents.subscriptions.subscribe(Owner("organization", owner_id), PLAN.key, actor="bench")
    ents.close()
    store.engine.dispose()
    return owner_id


def trigger(url: str, on: bool) -> None:
    store = SqlStore.from_url(url)
    with store.engine.begin() as connection:
        for statement in TRIGGER if on else NO_TRIGGER:
            connection.exec_driver_sql(statement)
    store.engine.dispose()


def engine_rows(name: str, url: str, seconds: float, with_trigger: bool) -> list[str]:
    owner_id = prepare(url)
    rows = []
    postgres = url.startswith("postgresql")
    base: float | None = None
    for writers in WRITERS:
        rate, p99 = run(url, owner_id, writers, seconds, notices=True)
        base = base or rate
        rows.append(f"| {name} | {writers} | {rate:,.0f} | {rate / base:.2f}x | {p99:.1f} |")
    if postgres:
        rate, p99 = run(url, owner_id, 1, seconds, notices=False)
        rows.append(
            f"| {name}, notices off | 1 | {rate:,.0f} | {(base or rate) / rate:.2f}x on/off | {p99:.1f} |"
        )
    if postgres and with_trigger:
        trigger(url, on=True)
        try:
            first: float | None = None
            for writers in WRITERS:
                rate, p99 = run(url, owner_id, writers, seconds, notices=False)
                first = first or rate
                rows.append(
                    f"| {name}, trigger (before) | {writers} | {rate:,.0f} | "
                    f"{rate / first:.2f}x | {p99:.1f} |"
                )
        finally:
            trigger(url, on=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres")
    parser.add_argument("--mysql")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--trigger", action="store_true", help="also time the old trigger")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    engines: list[tuple[str, str]] = []
    if args.postgres:
        engines.append(("PostgreSQL", args.postgres))
    if args.mysql:
        engines.append(("MariaDB", args.mysql))
    if args.sqlite:
        folder = tempfile.mkdtemp()
        engines.append(("SQLite", f"sqlite:///{Path(folder) / 'busy.db'}"))
    print("| engine | writers | consumes/s | vs 1 writer | p99 ms |")
    print("|---|---|---|---|---|")
    for name, url in engines:
        for row in engine_rows(name, url, args.seconds, args.trigger):
            print(row, flush=True)


if __name__ == "__main__":
    main()
