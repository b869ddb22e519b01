"""The console's owner pages cost what a page holds, not what the tenant holds: a text
search whose candidates mostly match, the owner list and the tenants the console walks
read about as many rows at ten times the owners (rows counted by each engine, see
``engine_reads``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from engine_reads import reader
from entitlements import Entitlements, Limit, Owner, Plan
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.search import INDEXED_BY, postings, write_postings

PLAN = Plan("team", "Team", limits={"projects": Limit(3)}, status="active")
SMALL = 300
LARGE = 3000
PAGE = 10


def _add_owners(store: SqlStore, start: int, end: int) -> None:
    """Owners ``start``..``end``, each with a copy of the subscription the library wrote
    for the first owner (external id ``cus_<n>``) and its search postings."""
    s = t.subscriptions.c
    with store.engine.begin() as c:
        first = dict(c.execute(sa.select(t.subscriptions).limit(1)).mappings().one())
        added = [
            {
                **{k: v for k, v in first.items() if k != "pk"},
                "id": uuid.uuid4().hex,
                "owner_id": f"owner-{n}",
                "live_owner": uuid.uuid4().hex + uuid.uuid4().hex,
                "external_id": f"cus_{n}",
            }
            for n in range(start, end)
        ]
        c.execute(t.subscriptions.insert(), added)
        found = c.execute(
            sa.select(s.tenant, s.pk, *(s[name] for name in INDEXED_BY)).where(
                s.id.in_([row["id"] for row in added])
            )
        ).all()
        write_postings(c, postings((row[0], row[1], tuple(row[2:])) for row in found))
    dialect = store.engine.dialect.name
    tables = "ent_subscriptions, ent_search_grams"
    if dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"VACUUM ANALYZE {tables}")
    elif dialect in ("mysql", "mariadb"):
        with store.engine.connect() as c:
            c.exec_driver_sql(f"ANALYZE TABLE {tables}").all()


def _rows_read(store: SqlStore, work: Callable[[Entitlements], Any]) -> int:
    """Rows read by ``work`` done a second time (its statements compiled), in one host
    transaction the engine counts for."""
    with store.engine.connect() as host:
        host.begin()
        ents = Entitlements(SqlStore(host), max_staleness=0)
        try:
            work(ents)
            read = reader(host)
            before = read()
            work(ents)
            after = read()
        finally:
            ents.close()
        host.rollback()
    return after - before


def _page_full(ents: Entitlements) -> None:
    found = ents.subscriptions.search("cus_", limit=PAGE)
    assert len(found) == PAGE


WORK: dict[str, Callable[[Entitlements], Any]] = {
    "text search, page full": _page_full,
    "owner list": lambda ents: ents.subscriptions.search(limit=PAGE),
    "tenants": lambda ents: ents.runtime.store.tenants(),
}


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_owner_pages_read_as_many_rows_at_ten_times_the_owners(kind, make_store):
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="staff")
    ents.subscriptions.subscribe(Owner("organization", "first"), "team", actor="staff")
    ents.close()
    _add_owners(store, 0, SMALL)
    small = {name: _rows_read(store, work) for name, work in WORK.items()}
    _add_owners(store, SMALL, LARGE)
    large = {name: _rows_read(store, work) for name, work in WORK.items()}
    grew = {name: (small[name], large[name]) for name in WORK if large[name] > 1.5 * small[name]}
    assert not grew, grew
