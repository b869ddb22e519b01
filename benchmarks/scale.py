"""What the operations a host runs often cost at a small store and at a large one,
side by side, measured in one run per engine.

Two stores are filled fast with Core inserts copying rows the library wrote (a
subscription, an audit event, a sent contract with its signer and events, ledger rows):
one with 1,000 ledger rows, one with ``--full`` (default 1,000,000), each with a tenth
as many owners with a live subscription and as many audit events, a hundredth as many
contracts. Then each operation is run on the two stores alternately, ``--pairs`` times
(the side that goes first swapping every pair), so both halves of a pair see the same
load on a shared machine. The table reports the median cost at each size and the
median of the pairs' own ratios (full over 1k, with their min and max); the target is
1.5x at most for every operation on every engine. The ledger rows the timed runs write
are deleted after each pair (not timed), so the small store stays small.

SQLite uses two files in a temporary folder; a server engine takes two databases, the
full-size store's (``--postgres``, ``--mysql``) and the small one's (``--postgres-small``,
``--mysql-small``). Both are emptied and rebuilt.

A sweep with 1,000 due is timed on 1,000 trials that ended an hour ago, put in place
before each run (not timed). A second table sets ``consume_many`` (1,000 events over 50
owners, one transaction) beside 1,000 ledger rows inserted with plain Core into the same
table in one transaction, at both sizes: the target is at least 0.3 of the plain rate.

    python benchmarks/scale.py --sqlite --full 100000 --pairs 10   # a quick run
    python benchmarks/scale.py --postgres URL --postgres-small URL2 \
        --mysql URL3 --mysql-small URL4 --sqlite
    python benchmarks/scale.py --sqlite --full 50000 --only sweep --only search
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from entitlements import Actor, Entitlements, Limit, LimitKind, Owner, Plan, UsageEvent
from entitlements.adapters.sql import SqlStore, metadata, migrations
from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.search import INDEXED_BY, postings, write_postings
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.web.lists import Filters, OwnerLists

PLAN = Plan(
    "scale",
    "Scale",
    features={"export": True},
    limits={"api_calls": Limit(10**12, kind=LimitKind.METERED), "projects": Limit(10)},
    status="active",
)
TRIAL = Plan("scale-trial", "Trial", features={"export": True}, trial_days=14, status="active")
PROBE = Owner("organization", "probe")
TRIALIST = Owner("organization", "trialist")
STAFF = Actor("bench")
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
    """Rows the library wrote, to copy: the probe's subscription, an audit event, a sent
    contract (its row, signer and events) and a trial's subscription."""
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="bench")
    ents.plans.define(TRIAL, actor="bench")
    for owner in [PROBE, *OWNERS]:
        ents.subscriptions.subscribe(owner, PLAN.key, actor="bench")
    ents.subscriptions.start_trial(TRIALIST, TRIAL.key, actor="bench")
    ents.usage.consume(PROBE, "api_calls", 1, key="first")
    contract = ents.contracts.issue(
        PROBE,
        title="Order form",
        body="Terms of service",
        signers=[SignerSpec("Ann", "ann@example.com", "CEO", 1)],
        actor="bench",
    )
    ents.contracts.send(PROBE, contract.id, actor="bench")
    ents.close()
    with store.engine.connect() as c:

        def one(table: sa.Table, *where: Any) -> dict[str, Any]:
            return dict(c.execute(sa.select(table).where(*where)).mappings().first() or {})

        return {
            "subscription": one(t.subscriptions, t.subscriptions.c.owner_id == "probe"),
            "trial": one(t.subscriptions, t.subscriptions.c.owner_id == "trialist"),
            "audit": one(t.audit_events, t.audit_events.c.owner_id == "probe"),
            "contract": one(t.contracts, t.contracts.c.id == contract.id),
            "signer": one(t.contract_signers, t.contract_signers.c.contract_id == contract.id),
            "events": {
                "rows": [
                    dict(r)
                    for r in c.execute(
                        sa.select(t.contract_events).where(
                            t.contract_events.c.contract_id == contract.id
                        )
                    ).mappings()
                ]
            },
            "period": {"start": c.execute(sa.select(t.usage_counters.c.period_start)).scalar()},
        }


def probe_history(store: SqlStore, rows: dict[str, dict[str, Any]]) -> None:
    """More than a page of the probe's audit events and usage periods at the small size
    already: a page read costs a full page at both sizes."""
    first = rows["period"]["start"]
    with store.engine.begin() as c:
        c.execute(
            t.audit_events.insert(),
            [
                {**{k: v for k, v in rows["audit"].items() if k != "pk"}, "id": uuid.uuid4().hex}
                for _ in range(150)
            ],
        )
        c.execute(
            t.usage_counters.insert(),
            [
                {
                    "tenant": "",
                    "owner_kind": "organization",
                    "owner_id": "probe",
                    "metric": "api_calls",
                    "period_start": first - timedelta(days=31 * (n + 1)),
                    "used": n,
                    "reserved": 0,
                }
                for n in range(150)
            ],
        )


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
            added = [
                {
                    **{k: v for k, v in sub.items() if k != "pk"},
                    "id": uuid.uuid4().hex,
                    "owner_id": f"owner-{n}",
                    "live_owner": uuid.uuid4().hex + uuid.uuid4().hex,
                    "external_id": f"cus_{n}",
                }
                for n in owners
            ]
            c.execute(t.subscriptions.insert(), added)
            searchable(c, [row["id"] for row in added])
            counted(c, added)
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
            contracts(c, rows, [n for n in numbers if n % 100 == 0])
            c.execute(
                t.usage_counters.insert(),
                [
                    {
                        "tenant": "",
                        "owner_kind": "organization",
                        "owner_id": f"owner-{n}",
                        "metric": "api_calls",
                        "period_start": period,
                        "used": 10,
                        "reserved": 0,
                    }
                    for n in owners
                ],
            )
    analyze(store)


def searchable(c: sa.Connection, ids: list[str]) -> None:
    """The owner search's postings of the subscription rows ``ids``, as the library
    writes them with each row."""
    s = t.subscriptions.c
    found = c.execute(
        sa.select(s.tenant, s.pk, *(s[name] for name in INDEXED_BY)).where(s.id.in_(ids))
    ).all()
    write_postings(c, postings((row[0], row[1], tuple(row[2:])) for row in found))


def counted(c: sa.Connection, added: list[dict[str, Any]]) -> None:
    """The status counts' changes for ``added``, each a new owner's first subscription,
    as the library writes them (one row per status here, as a batch may)."""
    by_status = Counter((row["tenant"], row["status"]) for row in added)
    c.execute(
        t.status_counts.insert(),
        [{"tenant": k[0], "status": k[1], "delta": n} for k, n in by_status.items()],
    )


def contracts(c: sa.Connection, rows: dict[str, dict[str, Any]], numbers: list[int]) -> None:
    """A sent contract (its signer and events) for each of ``numbers``' owners."""
    if not numbers:
        return
    ids = {n: uuid.uuid4().hex for n in numbers}
    c.execute(
        t.contracts.insert(),
        [{**rows["contract"], "id": ids[n], "owner_id": f"owner-{n}"} for n in numbers],
    )
    c.execute(
        t.contract_signers.insert(),
        [{**rows["signer"], "contract_id": ids[n], "token_hash": None} for n in numbers],
    )
    c.execute(
        t.contract_events.insert(),
        [{**e, "contract_id": ids[n]} for n in numbers for e in rows["events"]["rows"]],
    )


def due(store: SqlStore, rows: dict[str, dict[str, Any]], count: int) -> None:
    """``count`` trials of new owners that ended an hour ago (the sweep has work)."""
    ended = datetime.now(UTC) - timedelta(hours=1)
    trial = {k: v for k, v in rows["trial"].items() if k != "pk"}
    added = [
        {
            **trial,
            "id": uuid.uuid4().hex,
            "owner_id": f"due-{uuid.uuid4().hex}",
            "live_owner": uuid.uuid4().hex + uuid.uuid4().hex,
            "trial_ends_at": ended,
            "next_change_at": ended,
        }
        for _ in range(count)
    ]
    with store.engine.begin() as c:
        c.execute(t.subscriptions.insert(), added)
        searchable(c, [row["id"] for row in added])
        counted(c, added)


def _ledger_owner(n: int) -> str:
    if n % 10 == 0:
        return "probe" if n % 20 == 0 else OWNERS[n % len(OWNERS)].id
    return f"owner-{n - n % 10}"


def analyze(store: SqlStore) -> None:
    """Statistics as a server's background maintenance keeps them."""
    dialect = store.engine.dialect.name
    tables = (
        "ent_usage_records, ent_subscriptions, ent_audit_events, ent_contracts, ent_search_grams,"
        " ent_status_counts"
    )
    if dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"ANALYZE {tables}")
    elif dialect in ("mysql", "mariadb"):
        with store.engine.connect() as c:
            c.exec_driver_sql(f"ANALYZE TABLE {tables}").all()


Work = Callable[[int], Any]


def operations(store: SqlStore, rows: dict[str, dict[str, Any]]) -> dict[str, Work]:
    ents = Entitlements(store)
    lists = OwnerLists(ents)
    tag = uuid.uuid4().hex[:6]
    contract_id = rows["contract"]["id"]

    def console(text: str) -> Work:
        def run(i: int) -> Any:  # the console's owner page: one page of rows
            return lists.owners_page(STAFF, Filters(text=text))

        return run

    def sweep_due(i: int) -> Any:
        report = ents.process_due()
        assert len(report.changes) >= 1000, len(report.changes)
        return report

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
        "plain Core insert, 1,000 rows": plain(store, tag),
        "usage.history, one page": lambda i: ents.usage.history(PROBE, "api_calls"),
        "audit.for_owner, one page": lambda i: ents.audit.for_owner(PROBE),
        "contracts.list, one page": lambda i: ents.contracts.list(PROBE),
        "evidence of one contract": lambda i: ents.contracts.evidence(PROBE, contract_id),
        "sweep, nothing due": lambda i: ents.process_due(),
        "owner list (search page)": lambda i: ents.subscriptions.search(limit=50),
        "owner search (text, page full)": lambda i: ents.subscriptions.search("cus_", limit=50),
        "owner search (text, one match)": lambda i: ents.subscriptions.search("probe", limit=50),
        "console owner list, one page": console(""),
        "console owner search (page full)": console("cus_"),
        "console owner search (one match)": console("probe"),
        "console status counts": lambda i: lists.counts(STAFF),
        "sweep, 1,000 due": sweep_due,
    }


def plain(store: SqlStore, tag: str) -> Work:
    """1,000 ledger rows over the 50 batch owners in one transaction, with Core: the
    baseline ``consume_many`` over 50 owners is set beside."""
    now = datetime.now(UTC)

    def run(i: int) -> Any:
        with store.engine.begin() as c:
            c.execute(
                t.usage_records.insert(),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "tenant": "",
                        "owner_kind": "organization",
                        "owner_id": OWNERS[k % len(OWNERS)].id,
                        "metric": "api_calls",
                        "amount": 1,
                        "period_start": now,
                        "at": now,
                        "key": f"{tag}-plain-{i}-{k}",
                    }
                    for k in range(1000)
                ],
            )

    return run


WARMUP = 2


class Side:
    """One of the two stores a run compares: its rows to copy and its operations."""

    def __init__(self, url: str, size: int) -> None:
        self.store = fresh(url)
        self.rows = templates(self.store)
        probe_history(self.store, self.rows)
        grow(self.store, self.rows, 0, size)
        self.since = datetime.now(UTC)
        self.work = operations(self.store, self.rows)

    def run(self, name: str, i: int) -> float:
        """One timed run of ``name``; a sweep with 1,000 due gets its trials first."""
        if "1,000 due" in name:
            due(self.store, self.rows, 1000)
        began = time.perf_counter()
        self.work[name](i)
        return time.perf_counter() - began

    def trim(self) -> None:
        """Drop the ledger rows the timed runs wrote (not timed): a batch writes 1,000,
        and the small store must stay at its size through every pair."""
        with self.store.engine.begin() as c:
            c.execute(
                t.usage_records.delete().where(
                    t.usage_records.c.tenant == "", t.usage_records.c.at >= self.since
                )
            )

    def close(self) -> None:
        self.store.engine.dispose()


class Paired:
    """An operation's runs on both stores: the cost at each size is the median of its
    runs, and the ratio the median of the pairs' own ratios (each pair run back to back,
    so both halves see the same load on a shared machine)."""

    def __init__(self) -> None:
        self.small: list[float] = []
        self.large: list[float] = []

    def add(self, small: float, large: float) -> None:
        self.small.append(small)
        self.large.append(large)

    @property
    def ratios(self) -> list[float]:
        return [large / small for small, large in zip(self.small, self.large, strict=True)]

    def cost(self) -> tuple[float, float]:
        return statistics.median(self.small), statistics.median(self.large)

    def ratio(self) -> float:
        return statistics.median(self.ratios)


def measure(
    small_url: str, large_url: str, full: int, pairs: int, only: list[str]
) -> dict[str, Paired]:
    """Time each operation alternately on a store of ``SMALL`` ledger rows and one of
    ``full``, ``pairs`` times, the side that runs first swapping every pair."""
    small = Side(small_url, SMALL)
    large = Side(large_url, full)
    measured: dict[str, Paired] = {}
    for name in small.work:
        if only and not any(word in name for word in only):
            continue
        for i in range(WARMUP):
            small.run(name, i)
            large.run(name, i)
        paired = measured[name] = Paired()
        for i in range(WARMUP, WARMUP + pairs):
            if i % 2:
                b = large.run(name, i)
                a = small.run(name, i)
            else:
                a = small.run(name, i)
                b = large.run(name, i)
            paired.add(a, b)
            small.trim()
            large.trim()
    small.close()
    large.close()
    return measured


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}" if seconds >= 0.001 else f"{seconds * 1000:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="database for the full-size store")
    parser.add_argument("--postgres-small", help="a second database, for the 1k store")
    parser.add_argument("--mysql", help="database for the full-size store")
    parser.add_argument("--mysql-small", help="a second database, for the 1k store")
    parser.add_argument("--sqlite", action="store_true", help="two files in a temporary folder")
    parser.add_argument("--full", type=int, default=1_000_000, help="ledger rows at full size")
    parser.add_argument("--pairs", type=int, default=30, help="timed pairs per operation")
    parser.add_argument(
        "--only", action="append", default=[], help="time the operations naming this (repeatable)"
    )
    args = parser.parse_args()
    engines: list[tuple[str, str, str]] = []
    for name, url, second in (
        ("PostgreSQL", args.postgres, args.postgres_small),
        ("MariaDB", args.mysql, args.mysql_small),
    ):
        if url and not second:
            parser.error(
                f"{name} needs a second database for the 1k store (--postgres-small, --mysql-small)"
            )
        if url and url == second:
            parser.error(f"{name}: the two stores need two databases")
        if url:
            engines.append((name, second, url))
    if args.sqlite:
        folder = Path(tempfile.mkdtemp())
        engines.append(
            ("SQLite", f"sqlite:///{folder / 'small.db'}", f"sqlite:///{folder / 'full.db'}")
        )
    print(f"| engine | operation | at 1k (ms) | at {args.full:,} (ms) | ratio (median) | min-max |")
    print("|---|---|---|---|---|---|")
    batches = []
    for name, small_url, large_url in engines:
        measured = measure(small_url, large_url, args.full, args.pairs, args.only)
        for operation, paired in measured.items():
            small, large = paired.cost()
            ratio = paired.ratio()
            flag = "" if ratio <= 1.5 else " **over 1.5x**"
            print(
                f"| {name} | {operation} | {ms(small)} | {ms(large)} | "
                f"{ratio:.2f}x{flag} | {min(paired.ratios):.2f}-{max(paired.ratios):.2f} |",
                flush=True,
            )
        ours = measured.get("consume_many, 50 owners")
        lean = measured.get("plain Core insert, 1,000 rows")
        if ours and lean:
            (ours_small, ours_large), (lean_small, lean_large) = ours.cost(), lean.cost()
            batches.append(
                f"| {name} | {lean_small / ours_small:.2f} | {lean_large / ours_large:.2f} |"
            )
    print("\n| engine | consume_many (50 owners) / plain Core, at 1k | at full size |")
    print("|---|---|---|")
    print("\n".join(batches))


if __name__ == "__main__":
    main()
