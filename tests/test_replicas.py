"""Reads from a PostgreSQL streaming replica: taken there when it has replayed what the
process needs, from the primary otherwise, and never an error for the replica's sake.

Needs ``ENTITLEMENTS_TEST_REPLICA_URL``: a hot standby of the server behind
``ENTITLEMENTS_TEST_POSTGRES_URL`` (``.ci/run`` makes one with ``pg_basebackup``). The
tests pause the standby's replay (``pg_wal_replay_pause()``) to make it lag on purpose.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from coherence_peers import Relay
from conftest import server_url
from entitlements import Entitlements, InvalidInput, Owner, Plan
from entitlements.adapters.sql import SqlStore

ACME = Owner("organization", "acme")


def _replica_url() -> str:
    url = os.environ.get("ENTITLEMENTS_TEST_REPLICA_URL")
    if not url:
        pytest.skip(
            "ENTITLEMENTS_TEST_REPLICA_URL is not set: the replica tests need a streaming "
            "replica of the PostgreSQL test server (.ci/run makes one)"
        )
    return url


def _same_database(replica: str, primary: str) -> str:
    return (
        sa.make_url(replica)
        .set(database=sa.make_url(primary).database)
        .render_as_string(hide_password=False)
    )


def _replay(url: str, *, paused: bool) -> None:
    direct = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(direct, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"
        )


def _catalog(ents: Entitlements) -> None:
    for key, sso in (("pro", False), ("team", True)):
        ents.plans.define(Plan(key, key.title(), features={"sso": sso}, status="active"), actor="s")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")


@pytest.fixture
def replicated(make_store):
    primary = make_store("postgres")
    replica = _same_database(_replica_url(), server_url("postgres"))
    setup = Entitlements(primary)
    _catalog(setup)
    setup.close()
    yield server_url("postgres"), replica
    _replay(replica, paused=False)


def _wait(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_reads_go_to_a_replica_that_keeps_up(replicated):
    primary, replica = replicated
    store = SqlStore.from_url(primary, replicas=[replica])
    ents = Entitlements(store, max_staleness=0.2)
    assert _wait(lambda: ents.subscriptions.get(ACME) is not None)
    for _ in range(20):
        assert ents.subscriptions.get(ACME).plan_key == "pro"
        time.sleep(0.02)
    health = store.health()
    ents.close()
    assert health["replicas"][0]["reads"] > 0
    assert health["replicas"][0]["failures"] == 0


def test_a_lagging_replica_never_answers_older_than_the_process_own_write(replicated):
    primary, replica = replicated
    store = SqlStore.from_url(primary, replicas=[replica])
    ents = Entitlements(store)
    assert ents.subscriptions.get(ACME).plan_key == "pro"
    _replay(replica, paused=True)
    ents.subscriptions.change_plan(ACME, "team", actor="staff")
    for _ in range(10):
        assert ents.subscriptions.get(ACME).plan_key == "team"
        assert ents.resolve(ACME).allows("sso") is True
    assert store.health()["reads_on_primary"] >= 10
    ents.close()


def _observe(primary: str, replica: str, conn: Any) -> None:
    ents = Entitlements(SqlStore.from_url(primary, replicas=[replica]))
    conn.send(ents.allows(ACME, "sso"))
    while True:
        message = conn.recv()
        if message == "stop":
            ents.close()
            return
        deadline = time.monotonic() + message
        while not ents.allows(ACME, "sso") and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.send(ents.allows(ACME, "sso"))


def test_another_process_agrees_within_the_bound_while_the_replica_lags(replicated):
    primary, replica = replicated
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_observe, args=(primary, replica, child), daemon=True)
    process.start()
    try:
        assert parent.poll(60)
        assert parent.recv() is False
        _replay(replica, paused=True)
        writer = Entitlements(SqlStore.from_url(primary))
        writer.subscriptions.change_plan(ACME, "team", actor="staff")
        writer.close()
        parent.send(1.0 + 0.5 + 1.0)  # max_staleness + one follower interval + slack
        assert parent.poll(60)
        assert parent.recv() is True
        parent.send("stop")
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()


def test_a_replica_that_goes_away_costs_the_host_no_error(replicated):
    primary, replica = replicated
    parsed = sa.make_url(replica)
    relay = Relay(parsed.host or "127.0.0.1", parsed.port or 5432)
    through = parsed.set(port=relay.port).render_as_string(hide_password=False)
    store = SqlStore.from_url(primary, replicas=[through])
    ents = Entitlements(store)
    try:
        assert ents.subscriptions.get(ACME).plan_key == "pro"
        relay.cut()
        for _ in range(5):
            assert ents.subscriptions.get(ACME).plan_key == "pro"
        ents.subscriptions.change_plan(ACME, "team", actor="staff")
        assert ents.subscriptions.get(ACME).plan_key == "team"
        health = store.health()["replicas"][0]
        assert health["failures"] >= 1
        assert health["down"] is True
    finally:
        relay.cut()
        ents.close()


@pytest.mark.parametrize("url", ["sqlite://", "mysql+pymysql://root@127.0.0.1/x"])
def test_replicas_are_refused_where_they_are_not_supported(url):
    with pytest.raises(InvalidInput) as raised:
        SqlStore.from_url(url, replicas=["sqlite://"])
    assert raised.value.field == "replicas"


def test_replica_options_are_checked():
    url = "postgresql+psycopg://postgres@127.0.0.1:1/x"
    with pytest.raises(InvalidInput):
        SqlStore.from_url(url, replicas="postgresql+psycopg://postgres@127.0.0.1:2/x")
    with pytest.raises(InvalidInput):
        SqlStore.from_url(url, replicas=[url], max_replica_lag=-1)
