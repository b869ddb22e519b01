"""Cold resolution costs a constant number of statements, whatever else is stored."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from entitlements import AccessPolicy, Entitlements, Owner, Plan
from entitlements.adapters.sql import tables

ACME = Owner("organization", "acme")


@contextmanager
def counted(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def populate(ents: Entitlements, owners: int, overrides_each: int) -> None:
    with ents.atomic():
        for i in range(owners):
            other = Owner("organization", f"o{i}")
            ents.subscriptions.subscribe(other, "team", actor="staff")
            for k in range(overrides_each):
                ents.overrides.set_feature(
                    other, f"f{k}", enabled=True, actor="staff", reason="bulk"
                )


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_cold_resolution_cost_does_not_grow_with_other_owners(kind, make_store):
    store = make_store(kind)
    ents = Entitlements(store, policy=AccessPolicy(fallback_plan="free"))
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    ents.plans.define(Plan("team", "Team", features={"sso": True}, status="active"), actor="staff")
    ents.subscriptions.subscribe(ACME, "team", actor="staff")
    ents.overrides.set_feature(ACME, "beta", enabled=True, actor="staff", reason="pilot")

    def cost() -> int:
        with counted(store.engine) as statements:
            snapshot = ents.resolve(ACME)
        assert snapshot.allows("sso")
        assert snapshot.allows("beta")
        return len(statements)

    small = cost()
    populate(ents, owners=300, overrides_each=3)
    large = cost()
    assert small == large
    assert large <= 5, "subscription, plan version, overrides (+ transaction statements)"
    ents.subscriptions.cancel(ACME, actor="staff")
    with counted(store.engine) as statements:
        assert ents.resolve(ACME).plan_key == "free"
    assert len(statements) <= large + 1, "the fallback plan is one more lookup"


def test_every_lookup_path_has_an_index():
    indexed = {
        table.name: {tuple(c.name for c in index.columns) for index in table.indexes}
        | {tuple(c.name for c in table.primary_key.columns)}
        | {tuple(c.name for c in u.columns) for u in table.constraints if hasattr(u, "columns")}
        for table in tables.metadata.sorted_tables
    }
    lookups = {
        "ent_subscriptions": [
            ("tenant", "owner_kind", "owner_id"),
            ("tenant", "next_change_at"),
            ("id",),
            ("tenant", "plan_key"),
            ("live_owner",),
        ],
        "ent_overrides": [("tenant", "owner_kind", "owner_id"), ("tenant", "expires_at")],
        "ent_audit_events": [("tenant", "owner_kind", "owner_id"), ("tenant", "target")],
        "ent_plan_versions": [("plan_key", "version")],
        "ent_plans": [("key",)],
    }
    for table, paths in lookups.items():
        for path in paths:
            assert any(index[: len(path)] == path for index in indexed[table]), (table, path)
