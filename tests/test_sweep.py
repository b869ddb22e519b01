"""The sweep on every store: per-item isolation, no cap, conditional override removal,
idempotency keys kept for the retention window and then forgotten; the one-free-plan rule
on every path; stale writes only for callers who asked."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from entitlements import (
    Entitlements,
    IdempotencyKeyReused,
    Limit,
    LimitKind,
    Owner,
    Plan,
    Price,
    StaleWrite,
    SubscriptionStatus,
)
from entitlements.domain.override import OverrideKind
from entitlements.errors import FreePlanTaken
from entitlements.service import sweep as sweep_module
from entitlements.service.sweep import KEY_RETENTION, Sweep

STORE_KINDS = ["memory", "sqlite", "postgres", "mysql"]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
ACME = Owner("organization", "acme")


@pytest.fixture(params=STORE_KINDS)
def ents(request, make_store):
    app = Entitlements(make_store(request.param))
    app.plans.define(
        Plan(
            "team",
            "Team",
            limits={"calls": Limit(1_000, kind=LimitKind.METERED)},
            trial_days=14,
            price=Price(Decimal("29"), "USD"),
            status="active",
        ),
        actor="staff",
    )
    yield app
    app.close()


def _trials(ents, n):
    owners = [Owner("organization", f"o{i:03}") for i in range(n)]
    for owner in owners:
        ents.subscriptions.start_trial(owner, "team", actor="staff", now=T0)
    return owners


def test_a_failing_item_is_reported_and_logged_and_the_rest_proceed(ents, monkeypatch, caplog):
    owners = _trials(ents, 3)
    broken = ents.subscriptions.get(owners[1]).id
    real = sweep_module.bring_to_now

    def flaky(tx, subscription):
        if subscription.id == broken:
            raise RuntimeError("this row is bad")
        return real(tx, subscription)

    monkeypatch.setattr(sweep_module, "bring_to_now", flaky)
    at = T0 + timedelta(days=30)
    with caplog.at_level(logging.ERROR, logger="entitlements.sweep"):
        report = ents.process_due(at)
    (failure,) = report.failures
    assert failure.item == f"subscription:{broken}"
    assert failure.owner == owners[1]
    assert (failure.error, failure.message) == ("RuntimeError", "this row is bad")
    assert report.remaining == 1
    assert "this row is bad" in caplog.text
    assert ents.subscriptions.get(owners[0]).status is SubscriptionStatus.EXPIRED
    assert ents.subscriptions.get(owners[2]).status is SubscriptionStatus.EXPIRED
    assert ents.subscriptions.get(owners[1]).status is SubscriptionStatus.TRIALING

    monkeypatch.setattr(sweep_module, "bring_to_now", real)
    again = ents.process_due(at)  # the next run picks it up
    assert (again.failures, again.remaining) == ((), 0)
    assert [c.before.id for c in again.changes] == [broken]


def test_a_pending_checkout_with_an_expiry_fails_and_another_owners_trial_still_ends(ents):
    checkout, trial = Owner("organization", "pending"), Owner("organization", "trial")
    ents.subscriptions.begin_checkout(
        checkout, "team", actor="staff", now=T0, expires_at=T0 + timedelta(days=1)
    )
    ents.subscriptions.start_trial(trial, "team", actor="staff", now=T0)
    report = ents.process_due(T0 + timedelta(days=30))
    assert report.failures == ()
    assert ents.subscriptions.get(checkout).status is SubscriptionStatus.FAILED
    assert ents.subscriptions.get(trial).status is SubscriptionStatus.EXPIRED


def test_one_run_works_through_everything_due_whatever_the_batch(ents):
    owners = _trials(ents, 23)
    report = ents.process_due(T0 + timedelta(days=30), batch=4)
    assert len({c.before.id for c in report.changes}) == len(owners)
    assert report.remaining == 0
    assert all(ents.subscriptions.get(o).status is SubscriptionStatus.EXPIRED for o in owners)


def test_the_sweep_leaves_an_override_staff_renewed_after_it_was_read(ents, monkeypatch):
    ents.subscriptions.subscribe(ACME, "team", actor="staff", now=T0)
    ents.overrides.set_feature(
        ACME,
        "sso",
        enabled=True,
        actor="staff",
        reason="pilot",
        expires_at=T0 + timedelta(days=1),
        now=T0,
    )
    at = T0 + timedelta(days=2)
    real = Sweep._one

    def renew_first(self, tenant, item, run):
        if item.key.startswith("override:"):
            ents.overrides.set_feature(
                ACME,
                "sso",
                enabled=True,
                actor="staff",
                reason="pilot extended",
                expires_at=T0 + timedelta(days=60),
                now=at,
            )
        return real(self, tenant, item, run)

    monkeypatch.setattr(Sweep, "_one", renew_first)
    report = ents.process_due(at)
    assert report.expired_overrides == ()
    assert report.failures == ()
    (kept,) = ents.overrides.list(ACME)
    assert (kept.reason, kept.expires_at) == ("pilot extended", T0 + timedelta(days=60))
    assert "override.expire" not in [e.action for e in ents.audit.for_owner(ACME)]


def test_conditional_override_removal_in_the_store(ents):
    ents.overrides.set_limit(
        ACME, "calls", 5, actor="staff", reason="r", expires_at=T0 + timedelta(days=1), now=T0
    )
    with ents.store.unit_of_work(None) as uow:
        assert uow.overrides.remove_expired(ACME, OverrideKind.LIMIT, "calls", T0) is None
        assert uow.overrides.remove_expired(ACME, OverrideKind.LIMIT, "other", T0) is None
        removed = uow.overrides.remove_expired(
            ACME, OverrideKind.LIMIT, "calls", T0 + timedelta(days=1)
        )
        assert removed is not None
        assert removed.value == 5
        uow.commit()
    assert ents.overrides.list(ACME) == []


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_claimed_owner_is_skipped_by_other_units_of_work(make_store, kind):
    store = make_store(kind)
    with store.unit_of_work(None) as first:
        assert first.revisions.claim(ACME)  # no row yet: made, then held
        first.commit()
    with store.unit_of_work(None) as holder:
        assert holder.revisions.claim(ACME)
        with store.unit_of_work(None) as other:
            assert not other.revisions.claim(ACME)
            other.revisions.bump(Owner("organization", "beta"))
            assert other.revisions.claim(Owner("organization", "beta"))
        holder.commit()
    with store.unit_of_work(None) as later:
        assert later.revisions.claim(ACME)


# -- usage idempotency keys ----------------------------------------------------------------


def test_a_key_reused_for_another_metric_or_amount_is_refused_and_records_nothing(ents):
    ents.plans.revise(
        "team",
        actor="staff",
        limits={
            "calls": Limit(1_000, kind=LimitKind.METERED),
            "doc_units": Limit(1_000, kind=LimitKind.METERED),
        },
    )
    ents.subscriptions.subscribe(ACME, "team", actor="staff", now=T0)
    ents.usage.consume(ACME, "calls", 3, key="req-1", now=T0)
    with pytest.raises(IdempotencyKeyReused) as other_metric:
        ents.usage.consume(ACME, "doc_units", 5, key="req-1", now=T0)
    assert (other_metric.value.recorded, other_metric.value.given) == ("3 calls", "5 doc_units")
    with pytest.raises(IdempotencyKeyReused):
        ents.usage.consume(ACME, "calls", 4, key="req-1", now=T0)
    assert ents.usage.consume(ACME, "calls", 3, key="req-1", now=T0).duplicate
    assert ents.usage.total(ACME, "calls") == 3
    assert ents.usage.total(ACME, "doc_units") == 0
    assert ents.usage.records(ACME, "doc_units") == []


def test_keys_are_remembered_for_the_retention_window_then_forgotten_by_the_sweep(ents):
    ents.subscriptions.subscribe(ACME, "team", actor="staff", now=T0)
    ents.usage.consume(ACME, "calls", 2, key="req-1", now=T0)
    inside = T0 + KEY_RETENTION - timedelta(hours=1)
    assert ents.process_due(inside).keys_forgotten == 0
    assert ents.usage.consume(ACME, "calls", 2, key="req-1", now=inside).duplicate

    after = T0 + KEY_RETENTION + timedelta(hours=1)
    assert ents.process_due(after).keys_forgotten == 1
    assert ents.process_due(after).keys_forgotten == 0
    late = ents.usage.consume(ACME, "calls", 2, key="req-1", now=after)
    assert not late.duplicate  # a retry this late is a new request
    old, new = ents.usage.records(ACME, "calls", T0)  # 31-day January: one period
    assert (old.amount, old.key) == (2, None)  # the ledger keeps the record, not the key
    assert (new.amount, new.key) == (2, "req-1")


def test_a_shorter_retention_can_be_chosen(ents):
    ents.subscriptions.subscribe(ACME, "team", actor="staff", now=T0)
    ents.usage.consume(ACME, "calls", 1, key="k", now=T0)
    report = ents.process_due(T0 + timedelta(days=2), key_retention=timedelta(days=1))
    assert report.keys_forgotten == 1


# -- one free plan per tenant, every path ----------------------------------------------------


@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("path", ["subscribe", "start_trial", "change_plan", "assign_plan"])
def test_a_second_free_plan_in_a_tenant_is_refused_on_every_path(make_store, kind, path):
    ents = Entitlements(make_store(kind), one_free_plan_per_tenant=True)
    try:
        _second_free_plan_refused(ents, path)
    finally:
        ents.close()


def _second_free_plan_refused(ents, path):
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    ents.plans.define(
        Plan("pro", "Pro", price=Price(Decimal("9"), "USD"), status="active"), actor="staff"
    )
    first, second = Owner("app", "a1", "t1"), Owner("app", "a2", "t1")
    ents.subscriptions.subscribe(first, "free", actor="staff")
    if path == "change_plan":
        ents.subscriptions.subscribe(second, "pro", actor="staff")
    take = {
        "subscribe": ents.subscriptions.subscribe,
        "start_trial": ents.subscriptions.start_trial,
        "change_plan": ents.subscriptions.change_plan,
        "assign_plan": ents.billing.assign_plan,
    }[path]
    with pytest.raises(FreePlanTaken):
        take(second, "free", actor="staff")
    ents.subscriptions.subscribe(Owner("app", "a3", "t2"), "free", actor="staff")  # another tenant
    ents.subscriptions.cancel(first, actor="staff")
    ents.billing.assign_plan(Owner("app", "a4", "t1"), "free", actor="staff")  # the slot is free


def test_expected_revision_still_refuses_a_stale_write(ents):
    sub = ents.subscriptions.subscribe(ACME, "team", actor="staff", seats=1, now=T0)
    ents.subscriptions.change_seats(ACME, 2, actor="staff", now=T0)
    with pytest.raises(StaleWrite):
        ents.subscriptions.change_seats(
            ACME, 3, actor="staff", expected_revision=sub.revision, now=T0
        )
    assert ents.subscriptions.get(ACME).seats == 2
