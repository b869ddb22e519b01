"""Behind a transaction pooler and through restarts: PostgreSQL reached through PgBouncer
in transaction mode, a LISTEN that would be deaf there, a LISTEN connection that breaks,
and servers that cannot be reached at all.

The pooler tests need ``ENTITLEMENTS_TEST_PGBOUNCER_URL`` (``.ci/run`` starts PgBouncer in
front of the test server); the unreachable-server tests need no server.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import time
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from coherence_peers import direct_url
from conftest import server_url
from entitlements import (
    ConnectionLost,
    Entitlements,
    InvalidInput,
    Limit,
    LimitKind,
    Owner,
    Plan,
)
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql.hints import CHANNEL, PostgresNotify

FLOWS = 6
ROUNDS = 12


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:{port}/nothing",
        "mysql+pymysql://root@127.0.0.1:{port}/nothing",
    ],
)
def test_a_server_that_cannot_be_reached_is_a_retryable_connection_loss(url):
    store = SqlStore.from_url(url.format(port=_closed_port()))
    ents = Entitlements(store)
    with pytest.raises(ConnectionLost) as raised:
        ents.plans.list()
    assert raised.value.retryable is True


def test_options_neither_the_store_nor_the_engine_knows_are_refused_by_name():
    with pytest.raises(InvalidInput) as raised:
        SqlStore.from_url("sqlite://", replica_urls=["sqlite://"])
    assert "replica_urls" in str(raised.value)
    with pytest.raises(InvalidInput):
        SqlStore.from_url("sqlite://", pooler="statement")


# -- through PgBouncer in transaction mode ----------------------------------------------


def _flow(url: str, index: int, conn: Any) -> None:
    """One host process: many short transactions, each statement run often enough that
    psycopg would prepare it on the server."""
    from coherence_peers import open_store

    ents = Entitlements(open_store(url))
    owner = Owner("organization", f"flow-{index}")
    failures: list[str] = []
    for round_ in range(ROUNDS):
        try:
            if round_ == 0:
                ents.subscriptions.subscribe(owner, "pro", actor="staff")
            ents.usage.consume(owner, "calls", 1, key=f"k-{round_}")
            ents.resolve(owner)
            ents.subscriptions.get(owner)
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
    ents.close()
    conn.send(failures)


@pytest.fixture
def pooled(make_store):
    store = make_store("pgbouncer")
    ents = Entitlements(store)
    ents.plans.define(
        Plan(
            "pro",
            "Pro",
            limits={"calls": Limit(1000, kind=LimitKind.METERED)},
            status="active",
        ),
        actor="staff",
    )
    ents.close()
    return store


def test_concurrent_flows_through_the_pooler_never_meet_another_sessions_statements(pooled):
    url = pooled.engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for index in range(FLOWS):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_flow, args=(url, index, child), daemon=True)
        process.start()
        pipes.append(parent)
        processes.append(process)
    try:
        results = [pipe.recv() if pipe.poll(120) else ["no answer"] for pipe in pipes]
    finally:
        for process in processes:
            process.join(timeout=10)
    assert results == [[]] * FLOWS
    ents = Entitlements(pooled)
    used = [
        ents.usage.check(Owner("organization", f"flow-{i}"), "calls").used for i in range(FLOWS)
    ]
    ents.close()
    assert used == [ROUNDS] * FLOWS


def test_a_listen_through_the_pooler_is_found_deaf_and_reported(pooled, caplog):
    url = pooled.engine.url.render_as_string(hide_password=False)
    store = SqlStore.from_url(url, pooler="transaction")
    with caplog.at_level(logging.WARNING, logger="entitlements"):
        hints = store.change_hints()
    try:
        assert [h.deaf for h in hints] == [True]
        assert store.health()["wakes"] == "deaf"
        assert any("receives nothing" in r.getMessage() for r in caplog.records)
    finally:
        for hint in hints:
            hint.close()
        store.engine.dispose()


def test_a_listen_on_the_direct_url_hears_writes_made_through_the_pooler(pooled):
    url = pooled.engine.url.render_as_string(hide_password=False)
    store = SqlStore.from_url(url, pooler="transaction", listen_url=direct_url(url))
    hints = store.change_hints()
    try:
        assert [h.deaf for h in hints] == [False]
        assert store.health()["wakes"] == "push"
        ents = Entitlements(store)
        ents.subscriptions.subscribe(Owner("organization", "heard"), "pro", actor="staff")
        assert hints[0].wait(5.0) is True
        ents.close()
    finally:
        for hint in hints:
            hint.close()
        store.engine.dispose()


# -- a LISTEN connection that breaks ----------------------------------------------------


def test_a_broken_listen_connection_is_opened_again_and_wakes_the_follower(make_store):
    store = make_store("postgres")
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    hint = PostgresNotify(url)
    try:
        backend = hint._connection.info.backend_pid
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        woke = False
        deadline = time.monotonic() + 10
        while not woke and time.monotonic() < deadline:
            woke = hint.wait(0.5)
        assert woke  # notifications may have been lost meanwhile: the follower reads
        assert hint.reconnects == 1
        assert hint._connection.info.backend_pid != backend
        with psycopg.connect(url, autocommit=True) as sender:
            sender.execute(f"NOTIFY {CHANNEL}")
        assert hint.wait(5.0) is True
    finally:
        hint.close()


def test_the_follower_is_pushed_again_after_its_listen_connection_was_killed(make_store):
    store = make_store("postgres")
    ents = Entitlements(store, max_staleness=30.0)
    ents.plans.define(Plan("pro", "Pro", features={"sso": True}, status="active"), actor="s")
    acme = Owner("organization", "acme")
    assert ents.allows(acme, "sso") is False  # starts the follower
    url = server_url("postgres")
    direct = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
    deadline = time.monotonic() + 10
    listening: list[int] = []
    with psycopg.connect(direct, autocommit=True) as admin:
        while not listening and time.monotonic() < deadline:
            listening = [
                row[0]
                for row in admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' "
                    "AND datname = current_database()"
                )
            ]
            time.sleep(0.1)
        assert listening
        for pid in listening:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(2.0)  # the listener opens its connection again
    other = Entitlements(SqlStore.from_url(url))
    other.subscriptions.subscribe(acme, "pro", actor="staff")
    other.close()
    deadline = time.monotonic() + 10
    while not ents.allows(acme, "sso") and time.monotonic() < deadline:
        time.sleep(0.05)
    # within the push's few milliseconds, not max_staleness's 30 s of polling
    assert ents.allows(acme, "sso") is True
    assert store.health()["listen_reconnects"] >= 1
    ents.close()


def test_told_of_a_transaction_pooler_the_store_prepares_nothing_on_the_server(pooled):
    with pooled.engine.connect() as connection:
        assert connection.connection.driver_connection.prepare_threshold is None


def test_statements_prepared_by_another_client_of_the_pooler_are_explained(pooled):
    """What a host sees when it forgot ``pooler="transaction"``: the pooler handed two
    clients one server session and both prepared a statement of the same name."""
    from entitlements.adapters.sql.errors import translate

    url = pooled.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    clients = [psycopg.connect(url, autocommit=True) for _ in range(2)]
    found: Exception | None = None
    try:
        for value in range(8):
            for client in clients:
                try:
                    client.execute("SELECT %s::int + 1", (value,)).fetchone()
                except psycopg.Error as error:
                    found = error
    finally:
        for client in clients:
            client.close()
    assert found is not None, "the pooler kept each client on a server session of its own"
    said = translate(sa.exc.OperationalError("SELECT", {}, found))
    assert 'pooler="transaction"' in str(said)


def test_a_plain_url_to_a_pooler_on_another_port_prepares_nothing(pooled, make_store):
    url = pooled.engine.url.render_as_string(hide_password=False)
    store = SqlStore.from_url(url)  # no pooler= given
    with store.engine.connect() as connection:
        assert connection.connection.driver_connection.prepare_threshold is None
    store.engine.dispose()
    direct = make_store("postgres")
    with direct.engine.connect() as connection:
        assert connection.connection.driver_connection.prepare_threshold == 5
