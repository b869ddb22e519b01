"""Reads from a replica: taken there when it has replayed what the process needs, from
the primary otherwise, and never an error for the replica's sake.

PostgreSQL needs ``ENTITLEMENTS_TEST_REPLICA_URL``: a hot standby of the server behind
``ENTITLEMENTS_TEST_POSTGRES_URL`` (``.ci/run`` makes one with ``pg_basebackup``); the
tests pause its replay (``pg_wal_replay_pause()``) to make it lag on purpose. MariaDB
needs ``ENTITLEMENTS_TEST_MYSQL_PRIMARY_URL`` (a server with a binary log) and
``ENTITLEMENTS_TEST_MYSQL_REPLICA_URL`` (replicating from it by GTID); the tests stop its
SQL thread to make it lag.
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
from conftest import wipe
from entitlements import Entitlements, InvalidInput, Owner, Plan
from entitlements.adapters.sql import SqlStore

ACME = Owner("organization", "acme")


def _urls(engine: str) -> tuple[str, str]:
    if engine == "postgres":
        names = ("ENTITLEMENTS_TEST_POSTGRES_URL", "ENTITLEMENTS_TEST_REPLICA_URL")
    else:
        names = ("ENTITLEMENTS_TEST_MYSQL_PRIMARY_URL", "ENTITLEMENTS_TEST_MYSQL_REPLICA_URL")
    primary, replica = (os.environ.get(name) for name in names)
    if not primary or not replica:
        pytest.skip(
            f"{' and '.join(names)} are not set: the replica tests need a replica of a "
            "server of their own (.ci/run makes them)"
        )
    database = sa.make_url(primary).database
    return primary, sa.make_url(replica).set(database=database).render_as_string(False)


def _replay(url: str, *, paused: bool) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        direct = parsed.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(direct, autocommit=True) as connection:
            connection.execute(
                "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"
            )
        return
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql("STOP SLAVE SQL_THREAD" if paused else "START SLAVE SQL_THREAD")
    engine.dispose()


def _catalog(ents: Entitlements) -> None:
    for key, sso in (("pro", False), ("team", True)):
        ents.plans.define(Plan(key, key.title(), features={"sso": sso}, status="active"), actor="s")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")


@pytest.fixture(params=["postgres", "mysql"])
def replicated(request):
    primary, replica = _urls(request.param)
    store = SqlStore.from_url(primary)
    store.create_schema()
    wipe(store)
    setup = Entitlements(store)
    _catalog(setup)
    setup.close()
    store.engine.dispose()
    yield primary, replica
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


@pytest.mark.parametrize("url", ["sqlite://"])
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


def test_a_write_the_host_commits_is_never_read_older_from_a_lagging_replica(replicated):
    """Written inside the host's transaction: the position is learned after the host's
    commit, not at the library's (which only released a savepoint)."""
    primary, replica = replicated
    store = SqlStore.from_url(primary, replicas=[replica])
    ents = Entitlements(store)
    assert ents.subscriptions.get(ACME).plan_key == "pro"  # the primary's position learned
    _replay(replica, paused=True)
    with store.engine.connect() as host, host.begin(), ents.atomic(join=host):
        ents.subscriptions.change_plan(ACME, "team", actor="staff")
    for _ in range(5):
        assert ents.subscriptions.get(ACME).plan_key == "team"
    ents.close()
