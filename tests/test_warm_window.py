"""The warm path's one window: every cached snapshot answers only inside it, a snapshot
that runs out closes it until the slow path drops what time made stale, and a busy
metered owner does not stop other answers from being kept."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest

from entitlements import Entitlements, ManualClock, MemoryStore, Owner
from entitlements.testing.contract import CATALOG, START

ACME = Owner("organization", "acme")
GLOBEX = Owner("organization", "globex")


@pytest.fixture
def ents_clock():
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")
    return ents, clock


def window_holds(ents: Entitlements) -> bool:
    cache = ents.runtime.cache
    return cache.lo <= ents.runtime.timestamp() < cache.hi


def test_one_owner_running_out_closes_the_window_until_the_slow_path_settles_it(ents_clock):
    ents, clock = ents_clock
    ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=14)
    ents.subscriptions.subscribe(GLOBEX, "growth", actor="staff")
    assert ents.allows(ACME, "export")
    assert ents.allows(GLOBEX, "export")
    assert window_holds(ents)
    clock.advance(days=14, seconds=1)
    assert not window_holds(ents), "the trial's end is past: no warm answer is trusted"
    assert ents.allows(GLOBEX, "export"), "another owner's answer is still right"
    assert window_holds(ents), "the slow path dropped the ended trial and reopened it"
    assert not ents.allows(ACME, "export"), "the ended trial is resolved afresh"
    assert window_holds(ents)


def test_a_clock_set_back_is_never_answered_from_a_later_snapshot(ents_clock):
    ents, clock = ents_clock
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    clock.advance(days=3)
    later = ents.snapshot(ACME)
    assert later.resolved_at == clock.now()
    clock.set(START + timedelta(days=1))
    assert not window_holds(ents)
    assert ents.snapshot(ACME).resolved_at == START + timedelta(days=1)


def test_consumptions_do_not_keep_a_snapshot_resolved_meanwhile_out_of_the_cache(ents_clock):
    ents, _ = ents_clock
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.subscriptions.subscribe(GLOBEX, "growth", actor="staff")
    cache = ents.runtime.cache
    generation = cache.generation  # a reader starts resolving GLOBEX...
    snapshot = ents.resolve(GLOBEX)
    ents.usage.consume(ACME, "api_calls", 1, actor="app")  # ...while ACME consumes
    ents.usage.consume(ACME, "api_calls", 1, actor="app")
    cache.put(snapshot, generation)
    assert cache.snapshots.get(GLOBEX) is snapshot, "usage moved only the usage generation"
    ents.invalidate(ACME)  # a change of terms does refuse it
    cache.put(ents.resolve(ACME), generation)
    assert ACME not in cache.snapshots


def test_with_the_system_clock_the_window_ends_with_the_feeds_confirmation():
    ents = Entitlements(MemoryStore(), max_staleness=0.05)
    try:
        for plan in CATALOG:
            ents.plans.define(plan, actor="staff")
        ents.subscriptions.subscribe(ACME, "growth", actor="staff")
        assert ents.allows(ACME, "export")
        cache, coherence = ents.runtime.cache, ents.coherence
        assert (cache.lo, cache.hi) == (
            max(coherence.fresh_from, ents.snapshot(ACME).resolved_ts),
            coherence.fresh_until,
        )
        syncs = coherence.resyncs, coherence.fresh_until
        time.sleep(0.06)
        assert not window_holds(ents)
        assert ents.allows(ACME, "export")
        assert coherence.fresh_until > syncs[1], "the answer confirmed the cache first"
        assert window_holds(ents)
    finally:
        ents.close()


def test_the_window_follows_a_clock_other_than_the_systems_only_while_confirmed(ents_clock):
    ents, _ = ents_clock
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    assert ents.allows(ACME, "export")
    coherence = ents.coherence
    coherence.fresh_until = coherence.fresh_from  # as if the confirmation ran out
    assert math.isnan(ents.runtime.warm_clock()), "no window holds an unconfirmed reading"
    assert ents.allows(ACME, "export")
    assert coherence.fresh_until > coherence.fresh_from, "confirmed again before answering"


def test_a_cache_of_size_zero_keeps_nothing_and_answers_cold():
    ents = Entitlements(MemoryStore(), cache_size=0)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")
    assert not ents.allows(ACME, "export")
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    assert ents.allows(ACME, "export")
    assert len(ents.runtime.cache) == 0
    ents.close()


def test_parts_built_on_first_use_are_one_part_each_and_leave_no_instance_dict(ents_clock):
    """On CPython 3.11 an instance whose ``__dict__`` was built reads every attribute
    slower (a warm ``allows`` went from about 110 to 170 ns once ``ents.billing`` had been
    read): the facade keeps its attributes in slots and its lazy parts in a dict of its
    own, and each part is built once."""
    ents, _ = ents_clock
    parts = [ents.billing, ents.invoices, ents.contracts, ents.migrations]
    assert all(
        a is b
        for a, b in zip(
            parts, [ents.billing, ents.invoices, ents.contracts, ents.migrations], strict=True
        )
    )
    assert not hasattr(ents, "__dict__")
    assert ents.allows(ACME, "export") is False
