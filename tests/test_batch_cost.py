"""A batch costs what its own events cost, not what the ledger holds: ``consume_many``
over many owners reads about as many rows at a grown ledger as at an empty one.

Rows read are counted by the engine itself for the batch's statements alone (the batch
joins a host transaction, so they run on one connection the test can ask; see
``engine_reads``). A lookup that filters the tenant's ledger row by row shows
up as tens of thousands of rows; one that walks the unique index, as the batch's own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine.interfaces import CacheStats

from engine_reads import reader
from entitlements import Entitlements, Limit, LimitKind, Owner, Plan, UsageEvent, UsageOutcome
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql import tables as t

PLAN = Plan(
    "metered",
    "Metered",
    limits={"api_calls": Limit(10**9, kind=LimitKind.METERED)},
    status="active",
)
OWNERS = [Owner("organization", f"customer-{i}") for i in range(50)]
EVENTS = 1000
RETRIES = 100  # events of the batch whose keys the ledger already holds
GROWN = 50_000  # ledger rows added between the two measurements
SIBLINGS = 5_000  # other owners of the tenant the added rows belong to


def _batch(tag: str, retried: str | None) -> list[UsageEvent]:
    events = [
        UsageEvent(OWNERS[i % len(OWNERS)], "api_calls", 1, key=f"{tag}-{i}")
        for i in range(EVENTS - RETRIES)
    ]
    if retried is not None:
        events += [
            UsageEvent(OWNERS[i % len(OWNERS)], "api_calls", 1, key=f"{retried}-{i}")
            for i in range(RETRIES)
        ]
    return events


def _rows_read(store: SqlStore, tag: str) -> int:
    """Rows read by one ``consume_many`` of 1,000 events after one of the same shape (the
    owners' terms cached, the statements compiled), so that only the batch's own reads
    count."""
    with store.engine.connect() as host:
        host.begin()
        ents = Entitlements(SqlStore(host), max_staleness=3600)
        try:
            ents.usage.consume_many(_batch(f"{tag}-earlier", "first"))
            read = reader(host)
            before = read()
            results = ents.usage.consume_many(_batch(tag, "first"))
            after = read()
        finally:
            ents.close()
        host.commit()
    outcomes = [r.outcome for r in results]
    assert outcomes.count(UsageOutcome.ACCEPTED) == EVENTS - RETRIES
    assert outcomes.count(UsageOutcome.DUPLICATE) == RETRIES
    return after - before


def _grow(store: SqlStore, rows: int) -> None:
    """``rows`` more ledger rows, most of them other owners' of the same tenant, some the
    batch owners' own history, with a counter per owner and month: Core inserts."""
    now = datetime.now(UTC)
    months = [datetime(2025, m, 1, tzinfo=UTC) for m in range(1, 13)]
    with store.engine.begin() as connection:
        for start in range(0, rows, 10_000):
            connection.execute(
                t.usage_records.insert(),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "tenant": "",
                        "owner_kind": "organization",
                        "owner_id": (
                            OWNERS[n % len(OWNERS)].id if n % 10 == 0 else f"sibling-{n % SIBLINGS}"
                        ),
                        "metric": "api_calls",
                        "amount": 1,
                        "period_start": months[n % len(months)],
                        "at": now - timedelta(minutes=n),
                        "key": f"history-{n}",
                    }
                    for n in range(start, min(rows, start + 10_000))
                ],
            )
        connection.execute(
            t.usage_counters.insert(),
            [
                {
                    "tenant": "",
                    "owner_kind": "organization",
                    "owner_id": f"sibling-{n}",
                    "metric": "api_calls",
                    "period_start": month,
                    "used": 1,
                    "reserved": 0,
                    "terms_revision": 0,
                }
                for n in range(SIBLINGS)
                for month in months[:4]
            ],
        )


def _settle(store: SqlStore) -> None:
    """Statistics as a server's background maintenance keeps them (autovacuum, InnoDB's
    persistent statistics): the plans compared are the ones a running service gets."""
    dialect = store.engine.dialect.name
    if dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE ent_usage_records, ent_usage_counters")
    elif dialect in ("mysql", "mariadb"):
        with store.engine.connect() as c:
            c.exec_driver_sql("ANALYZE TABLE ent_usage_records, ent_usage_counters").all()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_batch_over_many_owners_reads_as_much_at_a_grown_ledger_as_at_an_empty_one(
    kind, make_store
):
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="staff:ann")
    for owner in OWNERS:
        ents.subscriptions.subscribe(owner, "metered", actor="staff:ann")
    first = ents.usage.consume_many(_batch("first", None))
    assert all(r.outcome is UsageOutcome.ACCEPTED for r in first)
    ents.close()

    _settle(store)
    empty = _rows_read(store, "at-empty")
    _grow(store, GROWN)
    _settle(store)
    grown = _rows_read(store, "at-grown")

    assert grown <= 1.5 * empty, (empty, grown)


_NOT_FROM_CACHE = (CacheStats.CACHE_MISS, CacheStats.NO_CACHE_KEY)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_second_batch_over_many_owners_compiles_no_statement_again(kind, make_store):
    """A batch's key and counter lookups are statements SQLAlchemy can cache: compiling a
    lookup of a thousand keys cost more than running it, on every batch."""
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="staff:ann")
    for owner in OWNERS:
        ents.subscriptions.subscribe(owner, "metered", actor="staff:ann")
    ents.usage.consume_many(_batch("first", None))
    compiled: list[str] = []

    def note(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        if context.compiled is not None and context.cache_hit in _NOT_FROM_CACHE:
            compiled.append(statement[:60])

    sa.event.listen(store.engine, "before_cursor_execute", note)
    try:
        results = ents.usage.consume_many(_batch("second", "first"))
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", note)
        ents.close()
    assert [r.outcome for r in results].count(UsageOutcome.DUPLICATE) == RETRIES
    assert compiled == []
