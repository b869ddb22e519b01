"""Coherence across processes: two default `Entitlements` in two processes on one
PostgreSQL, MariaDB or SQLite file agree within ``max_staleness`` after any write, with
no host code; a write's revision carried to another process is applied there before it
answers; and when the change feed cannot be read, answers follow the chosen policy.

The processes are real (multiprocessing, spawn). Assertions are on states and counts: an
answer asked for after waiting the bound plus one follower interval has changed, and no
answer ever returns to an older value — never on how fast a change arrived.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

import pytest
import sqlalchemy as sa

from coherence_peers import ACME, FIELDS, Relay, observe, reader, writer
from conftest import server_url
from entitlements import (
    Entitlements,
    Feature,
    FeedUnavailable,
    Limit,
    LimitKind,
    Plan,
    StorageError,
    WhenUnreachable,
)
from entitlements.adapters.sql import SqlStore

ENGINES = ["postgres", "mysql", "sqlite", "pgbouncer"]
REPLY_TIMEOUT = 60.0


def catalog(ents: Entitlements) -> None:
    ents.plans.define(
        Plan(
            "pro",
            "Pro",
            features={"export": True},
            limits={"calls": Limit(5, kind=LimitKind.METERED)},
            status="active",
        ),
        actor="staff",
    )
    ents.plans.define(
        Plan(
            "team",
            "Team",
            features={"export": Feature()},
            limits={"calls": Limit(3, kind=LimitKind.METERED)},
            status="active",
        ),
        actor="staff",
    )
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")


def url_of(store: SqlStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def reply(conn: Any) -> Any:
    if not conn.poll(REPLY_TIMEOUT):
        raise AssertionError("a peer process did not answer")
    return conn.recv()


class Peer:
    def __init__(self, target: Any, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(url, child), daemon=True)
        self.process.start()
        child.close()

    def ask(self, message: Any) -> Any:
        self.conn.send(message)
        return reply(self.conn)

    def end(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


@pytest.mark.parametrize("engine", ENGINES)
def test_another_process_sees_every_write_within_the_bound_and_never_flips_back(make_store, engine):
    store = make_store(engine)
    setup = Entitlements(store)
    catalog(setup)
    first = observe(setup)
    url = url_of(store)
    a, b = Peer(reader, url), Peer(writer, url)
    try:
        _, bound, interval = reply(a.conn)
        assert bound == 1.0  # the default
        assert reply(b.conn)[0] == "ready"
        wait = bound + interval

        # read-your-writes: B's revision, carried to A, is applied before A answers
        _, overridden = b.ask("override")
        assert overridden is not None
        _, state = a.ask(("catch_up", overridden))
        assert state["sso"] is True

        _, changed = b.ask("change_plan")
        assert changed > overridden
        time.sleep(wait)
        _, state = a.ask(("probe", None))
        assert (state["plan"], state["sso"], state["calls_ok"]) == ("team", True, True)

        accepted, consumed = b.ask("consume_to_limit")
        assert accepted == 3  # Team's hard limit; the fourth was refused
        assert consumed > changed
        time.sleep(wait)
        _, state = a.ask(("probe", None))
        assert (state["plan"], state["calls_ok"]) == ("team", False)

        _, suspended = b.ask("suspend")
        time.sleep(wait)
        _, state = a.ask(("probe", None))
        assert (state["status"], state["export"], state["calls_ok"]) == ("suspended", False, False)

        done, checks, history, resyncs = a.ask(("stop", None))
        b.conn.send("stop")
    finally:
        a.end()
        b.end()
    assert done == "done"
    assert checks > 0
    assert resyncs == 0
    assert set(history) == set(FIELDS)
    # each answer went through exactly the values the writes gave it, in order, never
    # back to one it had left (a suspension denies everything, the override included)
    assert history["sso"] == [False, True, False]
    assert history["plan"] == ["pro", "team"]
    assert history["calls_ok"] == [True, False]
    assert history["status"] == ["active", "suspended"]
    assert history["export"] == [True, False]
    revisions = history["revision"]
    assert revisions[0] == first["revision"]
    assert revisions == sorted(set(revisions))
    assert revisions[-1] == setup.snapshot(ACME).revision
    assert suspended >= consumed


# -- when the feed cannot be read -------------------------------------------------------


def relayed(url: str) -> tuple[Relay, str]:
    parsed = sa.make_url(url)
    relay = Relay(parsed.host or "127.0.0.1", parsed.port or 0)
    return relay, parsed.set(port=relay.port).render_as_string(hide_password=False)


def wait_until(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except StorageError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(params=["postgres", "mysql"])
def through_relay(request, make_store):
    """A store whose database is reached through a relay the test cuts; the writer (a
    second `Entitlements`, standing for another process) reaches it directly."""
    store = make_store(request.param)
    direct = Entitlements(store)
    catalog(direct)
    relay, url = relayed(server_url(request.param))
    made: list[Entitlements] = []

    def open_one(**options: Any) -> Entitlements:
        ents = Entitlements(SqlStore.from_url(url), **options)
        made.append(ents)
        return ents

    yield relay, direct, open_one
    relay.cut()
    for ents in made:
        ents.close()
        ents.store.engine.dispose()


def test_serving_stale_answers_while_the_feed_is_unreachable_is_logged_and_counted(
    through_relay, caplog
):
    relay, direct, open_one = through_relay
    ents = open_one(max_staleness=0.2)
    assert ents.coherence.when_unreachable is WhenUnreachable.SERVE_STALE
    assert ents.allows(ACME, "export")
    caplog.set_level(logging.WARNING, logger="entitlements.coherence")
    relay.cut()
    direct.subscriptions.suspend(ACME, actor="staff")
    time.sleep(0.2 + ents.coherence.interval)
    answers = [ents.allows(ACME, "export") for _ in range(50)]
    assert answers == [True] * 50  # the last known answer
    assert ents.coherence.stale_answers >= 1
    assert any("cannot read the change feed" in r.getMessage() for r in caplog.records)

    relay.restore()
    assert wait_until(lambda: not ents.allows(ACME, "export"))
    stale = ents.coherence.stale_answers
    time.sleep(0.2 + ents.coherence.interval)
    assert not ents.allows(ACME, "export")
    assert ents.coherence.stale_answers == stale  # readable again: no more stale answers
    assert any("readable again" in r.getMessage() for r in caplog.records)


def test_raising_while_the_feed_is_unreachable(through_relay):
    relay, direct, open_one = through_relay
    ents = open_one(max_staleness=0.2, when_unreachable="raise")
    assert ents.limit(ACME, "calls") == 5
    relay.cut()
    time.sleep(0.2 + ents.coherence.interval)
    for _ in range(3):
        with pytest.raises(FeedUnavailable, match="change feed"):
            ents.allows(ACME, "export")
    with pytest.raises(FeedUnavailable):
        ents.usage.check(ACME, "calls")
    assert ents.coherence.stale_answers == 0
    direct.subscriptions.change_plan(ACME, "team", actor="staff")
    relay.restore()
    assert wait_until(lambda: ents.limit(ACME, "calls") == 3)


def test_feed_read_failures_reach_answers_only_as_library_errors(tmp_path):
    """On a SQLite file that disappears under a running process, the policy still
    decides: nothing but `FeedUnavailable` reaches the caller."""
    path = tmp_path / "gone.db"
    store = SqlStore.from_url(f"sqlite:///{path}")
    store.create_schema()
    setup = Entitlements(store)
    catalog(setup)
    ents = Entitlements(
        SqlStore.from_url(f"sqlite:///{path}"), max_staleness=0.05, when_unreachable="raise"
    )
    assert ents.allows(ACME, "export")
    ents.close()  # no background thread: each answer confirms inline
    with ents.store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE ent_changes")
    time.sleep(0.06)
    with pytest.raises(FeedUnavailable):
        ents.allows(ACME, "export")
