"""Many processes doing the same job at once, on PostgreSQL and MariaDB: each process has its
own `Entitlements` over its own engine, as pods of one service do.

Reservations settle once; a reservation key names one reservation; concurrent sweeps apply
and audit each due item once; the one-free-plan rule has one winner; writes that did not ask
for a revision never fail for a race they did not ask about.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from entitlements import (
    Entitlements,
    InvalidInput,
    Limit,
    LimitKind,
    Owner,
    Plan,
    Price,
)
from entitlements.adapters.sql import SqlStore
from entitlements.domain.usage import ReservationStatus
from entitlements.errors import FreePlanTaken

PROCESSES = 8
CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
ACME = Owner("organization", "acme")


@pytest.fixture(scope="module")
def pool():
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as workers:
        yield workers


@pytest.fixture(params=["postgres", "mysql"])
def server(request, make_store):
    """(url, an `Entitlements` of the test's own) on an emptied server database."""
    store = make_store(request.param)
    url = store.engine.url.render_as_string(hide_password=False)
    ents = Entitlements(store)
    yield url, ents
    ents.close()


def together(pool, task, argument_lists):
    """Run ``task`` once per argument list, in the pool's processes, all starting at
    about the same moment (a shared start time: no process gets a head start)."""
    start = time.time() + 1.5
    return pool.starmap(task, [(start, *args) for args in argument_lists])


def _open(url: str) -> Entitlements:
    return Entitlements(SqlStore.from_url(url))


def _close(ents: Entitlements) -> None:
    ents.close()
    ents.store.engine.dispose()  # type: ignore[attr-defined]


def _wait(start: float) -> None:
    time.sleep(max(0.0, start - time.time()))


# -- the tasks (module level: spawned processes import them) ---------------------------


def settle_task(start: float, url: str, reservation_id: str, how: str) -> str:
    ents = _open(url)
    try:
        _wait(start)
        if how == "commit":
            ents.usage.commit(ACME, reservation_id, now=T0 + timedelta(minutes=1))
        else:
            ents.usage.release(ACME, reservation_id, now=T0 + timedelta(minutes=1))
        return how
    except InvalidInput:
        return "refused"
    finally:
        _close(ents)


def reserve_task(start: float, url: str, key: str) -> str:
    ents = _open(url)
    try:
        _wait(start)
        return ents.usage.reserve(ACME, "calls", 40, key=key, now=T0).id
    finally:
        _close(ents)


def sweep_task(start: float, url: str, at: datetime, batch: int) -> dict[str, object]:
    ents = _open(url)
    try:
        _wait(start)
        report = ents.process_due(at, batch=batch)
        return {
            "changes": [(c.before.id, c.event.value, c.at) for c in report.changes],
            "overrides": [(str(o.owner), o.key) for o in report.expired_overrides],
            "reservations": [r.id for r in report.expired_reservations],
            "failures": [f"{f.item}: {f.error}: {f.message}" for f in report.failures],
            "conflicts": len(report.conflicts),
        }
    finally:
        _close(ents)


def free_plan_task(start: float, url: str, tenant: str, owner_id: str, path: str) -> str:
    ents = Entitlements(SqlStore.from_url(url), one_free_plan_per_tenant=True)
    owner = Owner("app", owner_id, tenant)
    try:
        _wait(start)
        if path == "subscribe":
            ents.subscriptions.subscribe(owner, "free", actor="staff")
        elif path == "start_trial":
            ents.subscriptions.start_trial(owner, "free", actor="staff")
        elif path == "change_plan":
            ents.subscriptions.change_plan(owner, "free", actor="staff")
        else:
            ents.billing.assign_plan(owner, "free", actor="staff")
        return "won"
    except FreePlanTaken:
        return "refused"
    finally:
        _close(ents)


def override_task(start: float, url: str, n: int) -> str:
    ents = _open(url)
    try:
        _wait(start)
        ents.overrides.set_limit(
            ACME,
            "calls",
            1000 + n,
            actor="staff",
            reason=f"setter {n}",
            now=T0 + timedelta(minutes=1),
        )
        return "set"
    finally:
        _close(ents)


def seats_task(start: float, url: str, rounds: int) -> int:
    ents = _open(url)
    try:
        _wait(start)
        for _ in range(rounds):
            ents.subscriptions.amend(
                ACME, actor="staff", notes=f"{os.getpid()}", now=T0 + timedelta(minutes=1)
            )
        return rounds
    finally:
        _close(ents)


# -- reservations ------------------------------------------------------------------------


def _metered(ents: Entitlements, ceiling: int = 1_000) -> None:
    ents.plans.define(
        Plan(
            "metered",
            "Metered",
            limits={"calls": Limit(ceiling, kind=LimitKind.METERED)},
            status="active",
        ),
        actor="staff",
    )
    ents.subscriptions.subscribe(ACME, "metered", actor="staff", now=T0)


@pytest.mark.parametrize("mix", ["commit", "commit-or-release"])
def test_a_reservation_settles_exactly_once_among_8_processes(pool, server, mix):
    url, ents = server
    _metered(ents)
    contested = ents.usage.reserve(ACME, "calls", 100, now=T0)
    bystander = ents.usage.reserve(ACME, "calls", 50, now=T0)
    hows = ["commit" if mix == "commit" or i % 2 == 0 else "release" for i in range(PROCESSES)]
    outcomes = together(pool, settle_task, [(url, contested.id, how) for how in hows])
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1, outcomes
    counter = ents.usage.counter(ACME, "calls", contested.period_start)
    assert counter.used == (100 if winners[0] == "commit" else 0)
    assert counter.reserved == 50  # the other reservation keeps its units
    with ents.store.unit_of_work(None) as uow:
        assert uow.usage.reservation(ACME, bystander.id).status is ReservationStatus.HELD
        settled = uow.usage.reservation(ACME, contested.id)
    assert settled.status.value == ("committed" if winners[0] == "commit" else "released")
    records = ents.usage.records(ACME, "calls", contested.period_start)
    assert [r.amount for r in records] == ([100] if winners[0] == "commit" else [])


def test_8_processes_reserving_with_one_key_get_one_reservation(pool, server):
    url, ents = server
    _metered(ents)
    ids = together(pool, reserve_task, [(url, "job-7")] * PROCESSES)
    assert len(set(ids)) == 1
    counter = ents.usage.counter(ACME, "calls", T0)
    assert counter.reserved == 40


# -- sweeps ------------------------------------------------------------------------------


def test_8_concurrent_sweeps_apply_and_audit_each_due_item_once(pool, server):
    url, ents = server
    trials, overrides, reservations = (5_000, 300, 300) if CI else (240, 40, 40)
    ents.plans.define(
        Plan(
            "team",
            "Team",
            limits={"calls": Limit(10_000, kind=LimitKind.METERED)},
            trial_days=14,
            status="active",
        ),
        actor="staff",
    )
    tenants = ["north", "south"]
    owners = [Owner("organization", f"o{i}", tenants[i % 2]) for i in range(trials)]
    for tenant in tenants:  # seeded a few hundred per transaction
        mine = [o for o in owners if o.tenant == tenant]
        for at in range(0, len(mine), 250):
            with ents.atomic(tenant, T0):
                for owner in mine[at : at + 250]:
                    ents.subscriptions.start_trial(owner, "team", actor="staff", now=T0)
    expiring = owners[:overrides]
    for owner in expiring:
        ents.overrides.set_feature(
            owner,
            "sso",
            enabled=True,
            actor="staff",
            reason="pilot",
            expires_at=T0 + timedelta(days=3),
            now=T0,
        )
    held = owners[:reservations]
    short, long = [], []
    for owner in held:
        short.append(ents.usage.reserve(owner, "calls", 10, ttl=timedelta(hours=1), now=T0).id)
        long.append(ents.usage.reserve(owner, "calls", 7, ttl=timedelta(days=30), now=T0).id)

    at = T0 + timedelta(days=20)  # trials ended, overrides and short holds expired
    reports = together(pool, sweep_task, [(url, at, 100)] * PROCESSES)

    assert [f for r in reports for f in r["failures"]] == []
    changes = Counter(c for r in reports for c in r["changes"])
    assert all(n == 1 for n in changes.values())
    assert {sub_id for sub_id, event, _ in changes if event == "end_trial"} == {
        ents.subscriptions.get(o).id for o in owners
    }
    expired = Counter(o for r in reports for o in r["overrides"])
    assert set(expired) == {(str(o), "sso") for o in expiring}
    assert all(n == 1 for n in expired.values())
    freed = Counter(i for r in reports for i in r["reservations"])
    assert set(freed) == set(short)
    assert all(n == 1 for n in freed.values())

    for owner in owners[: max(overrides, reservations)]:  # the audit trail agrees
        actions = Counter(e.action for e in ents.audit.for_owner(owner))
        assert actions["subscription.end_trial"] == 1
        assert actions["override.expire"] == (1 if owner in expiring else 0)
        assert actions["usage.reservation_expired"] == (1 if owner in held else 0)
    for owner, long_id in zip(held, long, strict=True):
        assert ents.usage.counter(owner, "calls", T0).reserved == 7  # the long hold is kept
        with ents.store.unit_of_work(owner.tenant) as uow:
            assert uow.usage.reservation(owner, long_id).status is ReservationStatus.HELD
    last = ents.process_due(at)
    assert last.nothing_due
    assert last.remaining == 0
    assert last.failures == ()


# -- one free plan per tenant ------------------------------------------------------------


def test_one_free_plan_per_tenant_has_one_winner_among_8_processes_on_every_path(pool, server):
    url, ents = server
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    ents.plans.define(
        Plan("pro", "Pro", price=Price(Decimal("19.00"), "USD"), status="active"), actor="staff"
    )
    paths = ["subscribe", "start_trial", "change_plan", "assign_plan"]
    for round_ in range(12 if CI else 3):
        tenant = f"tenant-{round_}"
        jobs = []
        for i in range(PROCESSES):
            path = paths[(i + round_) % len(paths)]
            owner_id = f"app{i}"
            if path == "change_plan" or (path == "assign_plan" and i % 2):
                ents.subscriptions.subscribe(Owner("app", owner_id, tenant), "pro", actor="staff")
            jobs.append((url, tenant, owner_id, path))
        outcomes = together(pool, free_plan_task, jobs)
        assert sorted(outcomes) == ["refused"] * (PROCESSES - 1) + ["won"], (round_, outcomes)
        on_free = [
            i
            for i in range(PROCESSES)
            if (sub := ents.subscriptions.find(Owner("app", f"app{i}", tenant))) is not None
            and not sub.is_terminal
            and sub.plan_key == "free"
        ]
        assert len(on_free) == 1


# -- writes without a revision -------------------------------------------------------------


def test_8_processes_setting_one_new_override_key_all_succeed(pool, server):
    url, ents = server
    _metered(ents)
    outcomes = together(pool, override_task, [(url, n) for n in range(PROCESSES)])
    assert outcomes == ["set"] * PROCESSES
    (override,) = ents.overrides.list(ACME)
    assert override.key == "calls"
    sets = [e for e in ents.audit.for_owner(ACME) if e.action == "override.set"]
    assert len(sets) == PROCESSES
    assert override.value == sets[-1].after["value"]  # the last one audited is the one kept


def test_plain_writes_from_8_processes_never_fail_with_stale_write(pool, server):
    url, ents = server
    _metered(ents)
    rounds = 5
    done = together(pool, seats_task, [(url, rounds)] * PROCESSES)
    assert sum(done) == PROCESSES * rounds
    amends = [e for e in ents.audit.for_owner(ACME) if e.action == "subscription.amend"]
    assert len(amends) == PROCESSES * rounds
    assert ents.subscriptions.get(ACME).revision == 1 + PROCESSES * rounds
