"""Scheduled changes across real processes: the answer flips at the instant in every
process, warm and cold, with no sweep; concurrent writers keep one pending change;
concurrent sweepers apply each due change once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from itertools import pairwise

import pytest

from entitlements import Entitlements, ManualClock, Owner
from entitlements.testing.contract import CATALOG, START
from races import SPAWN, run_processes
from scheduled_peers import ACME, observer, scheduler, sweeper

KINDS = ["sqlite", "postgres", "mysql"]


def _url(store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def _ents(store, clock: ManualClock) -> Entitlements:
    ents = Entitlements(store, clock=clock)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")
    return ents


@pytest.mark.parametrize("kind", KINDS)
def test_the_answer_flips_at_the_instant_in_two_processes_without_a_sweep(make_store, kind):
    store = make_store(kind)
    ents = _ents(store, ManualClock(START))
    ents.subscriptions.subscribe(ACME, "free", actor="staff")
    peers = []
    for _ in range(2):
        mine, theirs = SPAWN.Pipe()
        process = SPAWN.Process(target=observer, args=(_url(store), START, theirs))
        process.start()
        assert mine.recv() == "ready"
        peers.append((process, mine))
    pending = ents.subscriptions.schedule_change(ACME, plan="growth", actor="staff")
    assert pending is not None
    try:
        for instant, expected in (
            (pending.at - timedelta(microseconds=1), (False, False, "free")),
            (pending.at, (True, True, "growth")),
            (pending.at + timedelta(days=3), (True, True, "growth")),
        ):
            for _, conn in peers:
                conn.send(("at", instant))
            assert [conn.recv() for _, conn in peers] == [expected, expected], instant
    finally:
        for process, conn in peers:
            conn.send(("stop", None))
            process.join(timeout=60)
    assert all(p.exitcode == 0 for p, _ in peers)


@pytest.mark.parametrize("kind", KINDS)
def test_eight_processes_scheduling_and_canceling_keep_one_pending_change(make_store, kind):
    store = make_store(kind)
    ents = _ents(store, ManualClock(START))
    ents.subscriptions.subscribe(ACME, "free", actor="staff")
    ents.close()
    run_processes(scheduler, [(_url(store), w, 12) for w in range(8)])
    ents = Entitlements(store, clock=ManualClock(START))
    # read in commit order, every successful request alternates: one scheduled, then
    # canceled, then the next scheduled — two scheduled in a row would be two pending
    kinds = [
        e.action
        for e in ents.audit.for_owner(ACME, limit=1000)  # more than a default page
        if e.action in ("subscription.schedule_change", "subscription.cancel_pending_change")
    ]
    assert kinds, "something was scheduled"
    assert all(a != b for a, b in pairwise(kinds)), kinds
    assert kinds[0] == "subscription.schedule_change"
    pending = ents.subscriptions.pending_change(ACME)
    assert (pending is not None) == (kinds[-1] == "subscription.schedule_change")


@pytest.mark.parametrize("kind", KINDS)
def test_eight_concurrent_sweepers_apply_each_due_change_once(make_store, kind):
    store = make_store(kind)
    ents = _ents(store, ManualClock(START))
    owners = [Owner("organization", f"s{i}") for i in range(24)]
    for i, owner in enumerate(owners):
        ents.subscriptions.subscribe(owner, "free", actor="staff")
        ents.subscriptions.schedule_change(owner, seats=i + 2, actor="staff")
    due_at = START + timedelta(days=40)
    got = run_processes(sweeper, [(_url(store), due_at) for _ in range(8)])
    applied = Counter(i for ids, _ in got for i in ids)
    assert all(n == 1 for n in applied.values()), applied
    ents = Entitlements(store, clock=ManualClock(due_at))
    ents.process_due()  # whatever the eight left to each other
    for i, owner in enumerate(owners):
        held = ents.subscriptions.get(owner)
        assert (held.seats, held.scheduled) == (i + 2, None)
        audited = [
            e for e in ents.audit.for_owner(owner) if e.action.startswith("subscription.pending_")
        ]
        assert [e.action for e in audited] == ["subscription.pending_change_applied"]
