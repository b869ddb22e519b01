"""SQLite seeks no index with a list of rows (``(kind, id) IN ((...), ...)``): it reads
every row of the tenant and filters, a cost that grows with the tenant instead of the
batch. Each batched read by owners, keys or ids must seek them in an index."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from entitlements import Owner
from entitlements.domain.requests import KeyedRequest
from test_migrations_grouped import app, subscribers

START = datetime(2026, 3, 1, tzinfo=UTC)
OWNERS = [Owner("organization", f"o{i}") for i in range(3)] + [Owner("user", "u1")]


@contextmanager
def plans_of(engine, table: str) -> Iterator[list[str]]:
    """The query plans of the statements that read ``table`` by a list (``IN``) or
    delete from it."""
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        text = " ".join(statement.split())
        listed = re.search(rf"\bFROM {table}\b", text) and " IN " in text
        if listed or text.startswith(f"DELETE FROM {table}"):
            one = parameters[0] if executemany else parameters
            found = conn.connection.driver_connection.execute(
                "EXPLAIN QUERY PLAN " + statement, one
            ).fetchall()
            plans.append(" ".join(row[3] for row in found if table in row[3]))

    event.listen(engine, "before_cursor_execute", explain)
    try:
        yield plans
    finally:
        event.remove(engine, "before_cursor_execute", explain)


def seeks(plans: list[str], more_than: str = "(tenant=?)") -> None:
    assert plans
    for plan in plans:
        assert "SCAN" not in plan, plan
        assert more_than not in plan, plan  # a seek of the tenant alone reads all of it


def sweep(store, table: str, work: Callable[[], object]) -> list[str]:
    with plans_of(store.engine, table) as plans:
        work()
    return plans


def test_claiming_many_owners_seeks_each_revision_row(make_store):
    store = make_store("sqlite")
    with store.unit_of_work(None) as uow:
        for owner in OWNERS[:2]:
            uow.revisions.bump(owner)
        uow.commit()
    with store.unit_of_work(None) as uow:
        # two held, two without a row yet: the locking read, the check, the made rows
        claimed = sweep(store, "ent_owner_revisions", lambda: uow.revisions.claim_many(OWNERS))
        seeks(claimed)
        assert uow.revisions.claim_many(OWNERS) == set(OWNERS)


def test_invoices_for_many_periods_seek_each_owner(make_store):
    store = make_store("sqlite")
    with store.unit_of_work(None) as uow:
        wanted = [(owner, START) for owner in OWNERS]
        seeks(sweep(store, "ent_invoices", lambda: uow.invoices.for_periods(wanted)))


def test_forgetting_keys_seeks_each_key(make_store):
    store = make_store("sqlite")
    with store.unit_of_work(None) as uow:
        for n, owner in enumerate(OWNERS):
            uow.requests.claim(KeyedRequest(owner, f"k{n}", "usage.decrease", "d", START))
        uow.commit()
    with store.unit_of_work(None) as uow:
        later = START + timedelta(days=1)
        forgot: list[int] = []
        plans = sweep(store, "ent_requests", lambda: forgot.append(uow.requests.forget(later)))
        seeks(plans)
        assert forgot == [len(OWNERS)]


def test_writing_subscriptions_read_elsewhere_seeks_each_by_id(make_store):
    store = make_store("sqlite")
    ents = app(store)
    who = subscribers(ents, 3)
    ents.close()
    with store.unit_of_work(None) as uow:
        read = [uow.subscriptions.current(owner) for owner in who]
    with store.unit_of_work(None) as uow:
        # read in another unit of work: their stored statuses are looked up by id
        wanted = [sub for sub in read if sub is not None]
        written: list[object] = []
        plans = sweep(
            store,
            "ent_subscriptions",
            lambda: written.extend(uow.subscriptions.update_many(wanted)),
        )
        seeks(plans)
        assert len(written) == len(who)
        uow.commit()
