"""The warm usage path never answers from terms other than the snapshot it serves.

A warm ``usage.check`` answers from decisions (and ``consume`` from per-metric lanes)
worked out from one snapshot; when time or a write replaces that snapshot, what was
worked out from it goes with it, on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coherence_peers import ACME as PEERS_ACME
from coherence_peers import writer
from conftest import STORE_KINDS
from entitlements import (
    Entitlements,
    Feature,
    Limit,
    LimitKind,
    ManualClock,
    MemoryStore,
    Owner,
    Plan,
    UsageDenied,
)
from entitlements.domain.usage import Counter, decide, metric_terms
from entitlements.service.cache import SnapshotCache
from test_coherence import Peer, catalog, reply, url_of

ACME = Owner("organization", "acme")
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
TRIAL = Plan(
    "pro",
    "Pro",
    features={"reports": Feature()},
    limits={"api": Limit(100, kind=LimitKind.METERED)},
    trial_days=14,
    status="active",
)


@pytest.fixture(params=STORE_KINDS)
def on_trial(request, make_store):
    clock = ManualClock(START)
    ents = Entitlements(make_store(request.param), clock=clock)
    ents.plans.define(TRIAL, actor="staff")
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    yield ents, clock
    ents.close()


def test_a_warm_check_follows_the_snapshot_time_replaced(on_trial):
    ents, clock = on_trial
    assert ents.usage.check(ACME, "api", 1).allowed  # warm from here on
    assert ents.usage.check(ACME, "api", 1).allowed
    clock.advance(timedelta(days=14, minutes=1))
    assert not ents.allows(ACME, "reports")  # resolves the snapshot after the trial

    decision = ents.usage.check(ACME, "api", 1)
    assert not decision.allowed
    with pytest.raises(UsageDenied):
        ents.usage.consume(ACME, "api", 1)
    assert ents.usage.check(ACME, "api", 1) == decision
    assert ents.usage.total(ACME, "api") == 0


def test_a_warm_consume_follows_the_snapshot_time_replaced(on_trial):
    ents, clock = on_trial
    ents.usage.consume(ACME, "api", 1)  # the metric's lane is built from the trial's terms
    ents.usage.consume(ACME, "api", 1)
    clock.advance(timedelta(days=14, minutes=1))
    assert not ents.allows(ACME, "reports")

    with pytest.raises(UsageDenied):
        ents.usage.consume(ACME, "api", 1)
    assert not ents.usage.check(ACME, "api", 1).allowed
    assert ents.usage.total(ACME, "api") == 0  # a new period: nothing counted after the end


TEAM = Plan("team", "Team", limits={"api": Limit(3, kind=LimitKind.METERED)}, status="active")


@pytest.mark.parametrize("engine", ["sqlite", "postgres", "mysql"])
def test_a_write_by_another_entitlements_drops_the_warm_lanes(make_store, engine):
    """A second `Entitlements` on the same database stands for another process: its
    plan change reaches this one through the change feed, and the warm check and the
    warm consume of this one answer from the new terms."""
    store = make_store(engine)
    here = Entitlements(store)
    here.plans.define(TRIAL, actor="staff")
    here.plans.define(TEAM, actor="staff")
    here.subscriptions.subscribe(ACME, "pro", actor="staff")
    for _ in range(3):
        here.usage.consume(ACME, "api", 1)  # the lane of "api" is built from Pro's terms
    assert here.usage.check(ACME, "api", 50).allowed  # and so is the memo
    assert here.usage.check(ACME, "api", 50).allowed

    there = Entitlements(store)
    there.subscriptions.change_plan(ACME, "team", actor="staff")
    here.catch_up(there.last_revision)

    assert not here.usage.check(ACME, "api", 1).allowed
    with pytest.raises(UsageDenied):
        here.usage.consume(ACME, "api", 1)
    assert here.usage.total(ACME, "api") == 3
    there.close()
    here.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgres", "mysql"])
def test_a_plan_change_in_another_process_reaches_the_warm_lanes(make_store, engine):
    """The same, with the writer a real process of its own (spawned): the change feed
    drops the lanes and decisions this process worked out from the old terms."""
    store = make_store(engine)
    here = Entitlements(store)
    catalog(here)  # Pro: 5 calls; Team: 3
    here.usage.consume(PEERS_ACME, "calls", 1)
    here.usage.consume(PEERS_ACME, "calls", 1)  # the lane of "calls", from Pro's terms
    assert here.usage.check(PEERS_ACME, "calls", 2).allowed  # and a kept decision
    assert here.usage.check(PEERS_ACME, "calls", 2).allowed

    peer = Peer(writer, url_of(store))
    try:
        assert reply(peer.conn)[0] == "ready"
        _, revision = peer.ask("change_plan")
        peer.conn.send("stop")
    finally:
        peer.end()
    here.catch_up(revision)

    assert not here.usage.check(PEERS_ACME, "calls", 2).allowed
    with pytest.raises(UsageDenied):
        here.usage.consume(PEERS_ACME, "calls", 2)
    assert here.usage.consume(PEERS_ACME, "calls", 1).remaining == 0
    assert here.usage.total(PEERS_ACME, "calls") == 3
    here.close()


def test_a_decision_or_lane_of_a_replaced_snapshot_is_not_put_back():
    """A reader that decided on a snapshot another thread has since replaced must not
    put its decision (or lane) beside the new one."""
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(TRIAL, actor="staff")
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    during = ents.snapshot(ACME)
    clock.advance(timedelta(days=14, minutes=1))
    after = ents.snapshot(ACME)
    assert during is not after

    cache = SnapshotCache()
    cache.put(during, cache.generation)
    counter = Counter(ACME, "api", during.usage_period.start)
    cache.put_counter(counter, cache.generation)
    old = decide(during, "api", counter, 1)
    cache.put_decision(old, cache.generation, during)
    cache.put_lane(metric_terms(during, "api"))
    assert cache.decisions[ACME]
    assert cache.lanes[ACME]

    cache.put(after, cache.generation)  # time replaced the snapshot: both go
    assert ACME not in cache.decisions
    assert ACME not in cache.lanes
    cache.put_counter(counter, cache.generation)
    cache.put_decision(old, cache.generation, during)  # a late reader of the old one
    cache.put_lane(metric_terms(during, "api"))
    assert ACME not in cache.decisions
    assert ACME not in cache.lanes
    cache.put_lane(metric_terms(after, "api"))
    assert cache.lanes[ACME]["api"].snapshot is after
