"""A page of a list costs one bounded query, whatever the list's length and wherever the
page is in it: the audit trail (by owner, newest first, by record), usage history,
contract lists and subscription history, at a small table and at a grown one.

Rows read are counted by the engine for the page read alone (`test_batch_cost` says
how); on SQLite the plan of the page's statement is also asked (``EXPLAIN QUERY PLAN``):
it walks an index in the list's order, with no sort of the owner's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from engine_reads import reader
from entitlements import Entitlements, Owner, Plan
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.subscriptions import subscription_row
from entitlements.domain.page import Page

ACME = Owner("organization", "acme")
START = datetime(2026, 1, 1, tzinfo=UTC)
SMALL = 120
GROWN = 6_000
LIMIT = 20


def _fill(store: SqlStore, ents: Entitlements, first: int, last: int) -> None:
    """Rows ``first`` to ``last`` of each list: ACME's and, beside them, a sibling's."""
    sub = ents.subscriptions.find(ACME)
    assert sub is not None
    with store.engine.begin() as c:
        for owner_id in ("acme", "sibling"):
            c.execute(
                t.audit_events.insert(),
                [
                    {
                        "id": f"{owner_id}-a-{n}",
                        "tenant": "",
                        "at": START,
                        "actor": "system:test",
                        "action": "test.note",
                        "target": f"note:{owner_id}",
                        "owner_kind": "organization",
                        "owner_id": owner_id,
                    }
                    for n in range(first, last)
                ],
            )
            c.execute(
                t.usage_counters.insert(),
                [
                    {
                        "tenant": "",
                        "owner_kind": "organization",
                        "owner_id": owner_id,
                        "metric": "api_calls",
                        "period_start": START + timedelta(hours=n),
                        "used": n,
                        "reserved": 0,
                    }
                    for n in range(first, last)
                ],
            )
            c.execute(t.contracts.insert(), [_contract(owner_id, n) for n in range(first, last)])
            ended = attrs.evolve(sub, owner=Owner("organization", owner_id), status="canceled")
            c.execute(
                t.subscriptions.insert(),
                [
                    subscription_row(attrs.evolve(ended, id=f"{owner_id}-s-{n}"))
                    for n in range(first, last)
                ],
            )


def _settle(store: SqlStore) -> None:
    """Statistics as a server's background maintenance keeps them, so that the plans
    compared are a running service's, not those of a table never analyzed."""
    names = "ent_audit_events, ent_usage_counters, ent_contracts, ent_subscriptions"
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"ANALYZE {names}")
    elif store.engine.dialect.name in ("mysql", "mariadb"):
        with store.engine.connect() as c:
            c.exec_driver_sql(f"ANALYZE TABLE {names}").all()


def _contract(owner_id: str, n: int) -> dict[str, Any]:
    return {
        "id": f"{owner_id}-c-{n:06d}",
        "tenant": "",
        "owner_kind": "organization",
        "owner_id": owner_id,
        "title": "T",
        "body": "B",
        "sequential": False,
        "status": "created",
        "created_at": START + timedelta(minutes=n // 2),
        "expires_at": START + timedelta(days=1),
        "body_hash": "0" * 64,
        "terms_hash": "0" * 64,
        "content_hash": "0" * 64,
        "revision": 1,
    }


READS: dict[str, Callable[..., Page[Any]]] = {
    "audit": lambda e, **p: e.audit.for_owner(ACME, **p),
    "audit newest first": lambda e, **p: e.audit.for_owner(ACME, newest_first=True, **p),
    "audit of a record": lambda e, **p: e.audit.for_target("note:acme", **p),
    "usage history": lambda e, **p: e.usage.history(ACME, "api_calls", **p),
    "contracts": lambda e, **p: e.contracts.list(ACME, **p),
    "subscription history": lambda e, **p: e.subscriptions.history(ACME, **p),
}


def _page_cost(store: SqlStore, read: Callable[..., Page[Any]]) -> tuple[int, list[str]]:
    """Rows read, and the statements run, by the page in the middle of the list."""
    with store.engine.connect() as host:
        host.begin()
        ents = Entitlements(SqlStore(host))
        page = read(ents, limit=LIMIT)
        for _ in range(3):  # a few pages in: the cursor, not the start, bounds the read
            assert page.next is not None
            page = read(ents, limit=LIMIT, cursor=page.next)
        assert page.next is not None
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        count = reader(host)
        sa.event.listen(host, "before_cursor_execute", seen)
        before = count()
        found = read(ents, limit=LIMIT, cursor=page.next)
        after = count()
        sa.event.remove(host, "before_cursor_execute", seen)
        ents.close()
        host.rollback()
    assert len(found) == LIMIT
    return after - before, statements


def _plan(store: SqlStore, statement: str, read: Callable[..., Page[Any]]) -> str:
    """SQLite's plan for the page's statement, with the parameters a page read binds."""
    captured: list[Any] = []

    def keep(conn: Any, cursor: Any, text: str, parameters: Any, *args: Any) -> None:
        if text == statement:
            captured.append(parameters)

    ents = Entitlements(store)
    sa.event.listen(store.engine, "before_cursor_execute", keep)
    read(ents, limit=LIMIT, cursor=read(ents, limit=LIMIT).next)
    sa.event.remove(store.engine, "before_cursor_execute", keep)
    ents.close()
    with store.engine.connect() as c:
        rows = c.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", captured[-1]).all()
    return " | ".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_page_costs_one_bounded_query_at_a_grown_table(kind, make_store):
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff:ann")
    ents.subscriptions.subscribe(ACME, "free", actor="staff:ann")
    ents.close()
    _fill(store, ents, 0, SMALL)
    _settle(store)
    small = {name: _page_cost(store, read) for name, read in READS.items()}
    _fill(store, ents, SMALL, GROWN)
    _settle(store)
    grown = {name: _page_cost(store, read) for name, read in READS.items()}

    for name, (rows, statements) in grown.items():
        listed = [s for s in statements if "LIMIT" in s.upper()]
        assert len(listed) == 1, (name, statements)
        assert rows <= 1.5 * small[name][0] + 200, (name, small[name][0], rows)
        if kind == "sqlite":
            plan = _plan(store, listed[0], READS[name])
            assert "TEMP B-TREE" not in plan, (name, plan)
            assert "USING INDEX" in plan or "USING INTEGER PRIMARY KEY" in plan, (name, plan)


def _stretches(store: SqlStore, first: int, last: int) -> None:
    """Stretches ``first`` to ``last`` of ACME's one subscription (a seat change each)."""
    with store.engine.begin() as c:
        row = dict(
            c.execute(
                sa.select(t.subscription_history).where(t.subscription_history.c.owner_id == "acme")
            )
            .mappings()
            .first()
            or {}
        )
        row.pop("seq")
        c.execute(
            t.subscription_history.insert(),
            [
                {**row, "effective_at": row["effective_at"] + timedelta(seconds=n + 1), "seats": n}
                for n in range(first, last)
            ],
        )


def _at_cost(store: SqlStore, when: datetime) -> int:
    with store.engine.connect() as host:
        host.begin()
        ents = Entitlements(SqlStore(host))
        ents.subscriptions.at(ACME, when)
        count = reader(host)
        before = count()
        found = ents.subscriptions.at(ACME, when)
        after = count()
        ents.close()
        host.rollback()
    assert found is not None
    return after - before


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_the_subscription_at_an_instant_is_one_bounded_read_of_a_long_history(kind, make_store):
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff:ann")
    sub = ents.subscriptions.subscribe(ACME, "free", actor="staff:ann")
    ents.close()
    _stretches(store, 0, SMALL)
    later = sub.created_at + timedelta(days=365)
    small = _at_cost(store, later)
    _stretches(store, SMALL, GROWN)
    grown = _at_cost(store, later)
    assert grown <= 1.5 * small + 200, (small, grown)
