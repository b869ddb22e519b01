"""Embedding the SQL store in the host's transaction (seed 002's atomic creation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from entitlements import Entitlements, Owner, Plan, PlanNotAssignable
from entitlements.adapters.sql import SqlStore

SQL_KINDS = ["sqlite", "postgres", "mysql"]
host = sa.MetaData()
customers = sa.Table("host_customers", host, sa.Column("id", sa.String(64), primary_key=True))
C1 = Owner("customer", "c1")


@pytest.fixture(params=SQL_KINDS)
def setup(request, make_store):
    store = make_store(request.param)
    host.drop_all(store.engine)
    host.create_all(store.engine)
    heard: list[str] = []
    ents = Entitlements(store, listeners=[lambda e: heard.append(e.action)])
    ents.plans.define(Plan("starter", "Starter", status="active"), actor="staff")
    ents.plans.define(Plan("draft", "Draft"), actor="staff")
    heard.clear()
    yield store, ents, heard
    host.drop_all(store.engine)


def host_rows(store) -> list[str]:
    with store.engine.connect() as connection:
        return [r.id for r in connection.execute(sa.select(customers.c.id))]


def test_both_parts_commit_together(setup):
    store, ents, heard = setup
    with store.engine.begin() as connection:
        connection.execute(customers.insert().values(id="c1"))
        with ents.atomic(join=connection):
            ents.subscriptions.start_trial(C1, "starter", actor="staff")
        assert heard == [], "listeners hear nothing before the host commits"
    assert host_rows(store) == ["c1"]
    assert ents.subscriptions.get(C1).plan_key == "starter"
    assert heard == ["subscription.start_trial"]


def test_if_the_hosts_part_fails_nothing_of_ours_is_left(setup):
    store, ents, heard = setup

    def signup() -> None:
        with store.engine.begin() as connection:
            with ents.atomic(join=connection):
                ents.subscriptions.start_trial(C1, "starter", actor="staff")
            connection.execute(customers.insert().values(id="c1"))
            raise RuntimeError("the host's validation failed after our call")

    with pytest.raises(RuntimeError):
        signup()
    assert host_rows(store) == []
    assert ents.subscriptions.find(C1) is None
    assert ents.audit.for_owner(C1) == []
    assert heard == []
    assert not ents.allows(C1, "anything")


def test_if_our_part_fails_the_hosts_row_goes_too(setup):
    store, ents, _heard = setup

    def signup() -> None:
        with store.engine.begin() as connection:
            connection.execute(customers.insert().values(id="c1"))
            _start(ents, connection, "draft")

    with pytest.raises(PlanNotAssignable):
        signup()
    assert host_rows(store) == []
    assert ents.subscriptions.find(C1) is None


def test_a_failed_call_inside_the_hosts_transaction_leaves_it_usable(setup):
    store, ents, _ = setup
    with store.engine.begin() as connection:
        connection.execute(customers.insert().values(id="c1"))
        with pytest.raises(PlanNotAssignable):
            _start(ents, connection, "draft")
        _start(ents, connection, "starter")
    assert host_rows(store) == ["c1"]
    assert ents.subscriptions.get(C1).plan_key == "starter"


def _start(ents, connection, plan):
    with ents.atomic(join=connection):
        ents.subscriptions.start_trial(C1, plan, actor="staff")


def test_an_orm_session_can_be_joined(setup):
    store, ents, heard = setup
    with Session(store.engine) as session, session.begin():
        session.execute(customers.insert().values(id="c1"))
        with ents.atomic(join=session):
            ents.subscriptions.start_trial(C1, "starter", actor="staff")
    assert host_rows(store) == ["c1"]
    assert heard == ["subscription.start_trial"]

    def cancel_then_fail() -> None:
        with Session(store.engine) as session, session.begin():
            with ents.atomic(join=session):
                ents.subscriptions.cancel(C1, actor="staff")
            raise RuntimeError("host failed")

    with pytest.raises(RuntimeError):
        cancel_then_fail()
    assert ents.subscriptions.get(C1).status.value == "trialing"


def test_a_store_bound_to_a_host_connection(setup):
    store, _, _ = setup
    with store.engine.begin() as connection:
        bound = Entitlements(SqlStore(connection))
        connection.execute(customers.insert().values(id="c1"))
        bound.subscriptions.start_trial(C1, "starter", actor="staff")
        bound.subscriptions.suspend(C1, actor="staff")
    assert Entitlements(store).subscriptions.get(C1).status.value == "suspended"


def test_the_example_runs(tmp_path):
    example = Path(__file__).parent.parent / "examples" / "atomic_creation.py"
    result = subprocess.run(
        [sys.executable, str(example), f"sqlite:///{tmp_path / 'a.db'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "customers stored: ['c-1']" in result.stdout
    assert "subscription of c-2: None" in result.stdout
