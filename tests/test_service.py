"""The application service over the in-memory store: lifecycle, audit, atomicity, cache."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog import build
from entitlements import (
    AccessPolicy,
    Actor,
    EntitlementsError,
    InvalidInput,
    NaiveDatetime,
    OverrideKind,
    OverrideNotFound,
    Owner,
    Reason,
    SubscriptionExists,
    SubscriptionNotFound,
    SubscriptionStatus,
)

ORG = Owner("organization", "acme")


def dump(ents):
    """Everything the memory store holds, as plain comparable data."""
    return copy.deepcopy(vars(ents.store.tables))


def test_the_whole_lifecycle_of_seed_000():
    ents, clock = build()
    trial = ents.subscriptions.start_trial(
        ORG, "growth", actor="staff:ann", notes="signed up at the fair"
    )
    assert trial.status is SubscriptionStatus.TRIALING
    assert trial.trial_ends_at == clock.now() + timedelta(days=90)
    assert ents.allows(ORG, "export")
    clock.advance(days=30)
    active = ents.subscriptions.convert(
        ORG, actor="staff:ann", plan_key="enterprise", seats=12, notes="contract 7"
    )
    assert (active.status, active.plan_key, active.seats) == (
        SubscriptionStatus.ACTIVE,
        "enterprise",
        12,
    )
    assert ents.allows(ORG, "sso")
    assert ents.limit(ORG, "seats") == 12
    ents.subscriptions.change_plan(ORG, "growth", actor="staff:ann", reason="downgrade requested")
    assert not ents.allows(ORG, "sso")
    ents.subscriptions.mark_past_due(ORG, actor="staff:ann")
    ents.subscriptions.settle(ORG, actor="staff:ann")
    ents.subscriptions.suspend(ORG, actor="staff:ann", reason="abuse report")
    assert ents.allows(ORG, "export", "read")
    assert not ents.allows(ORG, "export", "create")
    ents.subscriptions.resume(ORG, actor="staff:ann")
    assert ents.allows(ORG, "export", "create")
    ents.subscriptions.cancel(ORG, actor="staff:ann", reason="customer left")
    assert not ents.allows(ORG, "export")
    actions = [e.action for e in ents.audit.for_owner(ORG)]
    assert actions == [
        "subscription.start_trial",
        "subscription.convert",
        "subscription.change_plan",
        "subscription.mark_past_due",
        "subscription.settle",
        "subscription.suspend",
        "subscription.resume",
        "subscription.cancel",
    ]


def test_every_mutation_is_audited_with_actor_before_after_reason_and_time():
    ents, clock = build()
    ents.subscriptions.start_trial(ORG, "growth", actor=Actor("ann"))
    clock.advance(hours=1)
    ents.subscriptions.change_seats(ORG, 8, actor="bob", reason="two new hires")
    event = ents.audit.for_owner(ORG)[-1]
    assert event.actor == "staff:bob"
    assert event.action == "subscription.change_seats"
    assert event.reason == "two new hires"
    assert event.at == clock.now()
    assert event.before["seats"] is None
    assert event.after["seats"] == 8
    assert event.target.startswith("subscription:")
    plan_events = ents.audit.for_target("plan:growth")
    assert [e.action for e in plan_events] == ["plan.define"]


def test_overrides_need_a_reason_and_can_expire():
    ents, clock = build()
    ents.subscriptions.subscribe(ORG, "free", actor="staff")
    with pytest.raises(InvalidInput, match="reason"):
        ents.overrides.set_feature(ORG, "export", enabled=True, actor="ann", reason="  ")
    ents.overrides.set_feature(
        ORG,
        "export",
        enabled=True,
        actor="ann",
        reason="early access",
        expires_at=clock.now() + timedelta(days=7),
    )
    assert ents.allows(ORG, "export")
    assert ents.explain(ORG, "export").reason is Reason.OVERRIDE
    clock.advance(days=8)
    assert not ents.allows(ORG, "export"), "the warm answer follows the clock, no sweep needed"
    report = ents.process_due()
    assert [o.key for o in report.expired_overrides] == ["export"]
    assert not ents.allows(ORG, "export")
    assert ents.audit.for_owner(ORG)[-1].action == "override.expire"
    assert ents.process_due().nothing_due


def test_limit_override_and_removal():
    ents, _ = build()
    ents.subscriptions.subscribe(ORG, "free", actor="staff")
    ents.overrides.set_limit(ORG, "projects", 50, actor="ann", reason="migration project")
    assert ents.limit(ORG, "projects") == 50
    ents.overrides.remove(ORG, OverrideKind.LIMIT, "projects", actor="ann", reason="migration done")
    assert ents.limit(ORG, "projects") == 3
    with pytest.raises(OverrideNotFound):
        ents.overrides.remove(ORG, "limit", "projects", actor="ann", reason="again")
    with pytest.raises(InvalidInput):
        ents.overrides.remove(ORG, "colour", "projects", actor="ann", reason="bad kind")


def test_trial_expires_through_the_sweep_idempotently():
    ents, clock = build()
    ents.subscriptions.start_trial(ORG, "growth", actor="staff")
    clock.advance(days=91)
    first = ents.process_due()
    assert ents.subscriptions.get(ORG).status is SubscriptionStatus.EXPIRED
    assert [c.event.value for c in first.changes][-1] == "end_trial"
    ended = next(c for c in first.changes if c.event.value == "end_trial")
    assert ended.at == ents.subscriptions.get(ORG).created_at + timedelta(days=90)
    before = dump(ents)
    assert ents.process_due().nothing_due
    assert dump(ents) == before


def test_cancel_at_period_end_keeps_access_until_the_period_ends():
    ents, clock = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    sub = ents.subscriptions.cancel(ORG, actor="owner", at_period_end=True)
    assert sub.status is SubscriptionStatus.ACTIVE
    assert sub.cancel_at_period_end
    undone = ents.subscriptions.undo_cancel(ORG, actor="owner")
    assert not undone.cancel_at_period_end
    ents.subscriptions.cancel(ORG, actor="owner", at_period_end=True)
    clock.set(sub.current_period.end - timedelta(seconds=1))
    assert ents.process_due().nothing_due
    clock.advance(seconds=1)
    ents.process_due()
    ended = ents.subscriptions.get(ORG)
    assert ended.status is SubscriptionStatus.CANCELED
    assert ended.canceled_at == sub.current_period.end
    assert not ents.allows(ORG, "export")


def test_canceled_owner_falls_back_to_the_default_plan():
    ents, _ = build(policy=AccessPolicy(fallback_plan="free"))
    assert ents.snapshot(ORG).plan_key == "free"
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    assert ents.allows(ORG, "export")
    ents.subscriptions.cancel(ORG, actor="staff")
    assert not ents.allows(ORG, "export")
    assert ents.limit(ORG, "projects") == 3
    assert ents.explain(ORG, "premium", "read").reason is Reason.FALLBACK


def test_periods_roll_over_on_the_anchor():
    ents, clock = build()
    clock.set(datetime.fromisoformat("2026-01-31T10:00:00+00:00"))
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    clock.set(datetime.fromisoformat("2026-03-31T10:00:00+00:00"))
    report = ents.process_due()
    periods = [c.after.current_period for c in report.changes]
    assert [p.start.date().isoformat() for p in periods] == ["2026-02-28", "2026-03-31"]


def test_a_second_live_subscription_is_refused_but_one_may_start_over_after_the_end():
    ents, _ = build()
    ents.subscriptions.start_trial(ORG, "growth", actor="staff")
    with pytest.raises(SubscriptionExists):
        ents.subscriptions.subscribe(ORG, "free", actor="staff")
    ents.subscriptions.cancel(ORG, actor="staff")
    again = ents.subscriptions.subscribe(ORG, "free", actor="staff")
    assert again.status is SubscriptionStatus.ACTIVE
    assert len(ents.subscriptions.history(ORG)) == 2


def test_missing_subscription_is_a_lookup_error():
    ents, _ = build()
    with pytest.raises(SubscriptionNotFound) as caught:
        ents.subscriptions.suspend(ORG, actor="staff")
    assert isinstance(caught.value, LookupError)


def test_naive_datetimes_are_refused_and_nothing_is_stored():
    ents, _ = build()
    before = dump(ents)
    with pytest.raises(NaiveDatetime):
        ents.subscriptions.start_trial(ORG, "growth", actor="staff", now=datetime(2026, 1, 1))
    with pytest.raises(NaiveDatetime):
        ents.subscriptions.start_trial(
            ORG, "growth", actor="staff", expires_at=datetime(2027, 1, 1)
        )
    assert dump(ents) == before


def test_metadata_must_be_json():
    ents, _ = build()
    with pytest.raises(InvalidInput, match="metadata"):
        ents.subscriptions.start_trial(
            ORG, "growth", actor="staff", metadata={"when": datetime.now}
        )
    sub = ents.subscriptions.start_trial(ORG, "growth", actor="staff", metadata={"stripe": "sub_1"})
    assert sub.metadata == {"stripe": "sub_1"}


def test_warm_checks_are_served_from_the_snapshot_and_writes_invalidate_it():
    ents, _ = build()
    ents.subscriptions.subscribe(ORG, "free", actor="staff")
    first = ents.snapshot(ORG)
    assert ents.snapshot(ORG) is first
    ents.subscriptions.change_plan(ORG, "growth", actor="staff")
    assert ents.snapshot(ORG) is not first
    assert ents.allows(ORG, "export")


def test_plan_status_changes_drop_every_cached_snapshot():
    ents, _ = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    cached = ents.snapshot(ORG)
    ents.plans.rename("growth", "Growth+", actor="staff")
    assert ents.snapshot(ORG) is not cached


def test_atomic_groups_calls_and_rolls_everything_back_on_error():
    ents, _ = build()
    other = Owner("organization", "globex")
    before = dump(ents)

    def provision_then_fail():
        with ents.atomic():
            ents.subscriptions.start_trial(ORG, "growth", actor="staff")
            ents.subscriptions.start_trial(other, "growth", actor="staff")
            raise RuntimeError("the host's own insert failed")

    with pytest.raises(RuntimeError):
        provision_then_fail()
    assert dump(ents) == before
    with ents.atomic():
        ents.subscriptions.start_trial(ORG, "growth", actor="staff")
        with pytest.raises(SubscriptionExists):
            ents.subscriptions.start_trial(ORG, "growth", actor="staff")
        ents.subscriptions.start_trial(other, "growth", actor="staff")
    assert ents.subscriptions.get(other).status is SubscriptionStatus.TRIALING
    assert len(ents.audit.for_owner(ORG)) == 1


def test_atomic_blocks_are_for_one_tenant():
    ents, _ = build()
    with pytest.raises(InvalidInput, match="tenant"), ents.atomic("t1"):
        ents.subscriptions.start_trial(Owner("app", "1", tenant="t2"), "growth", actor="staff")


def test_listeners_hear_events_after_commit_and_cannot_undo_them():
    heard = []

    def listener(event):
        heard.append(event.action)
        raise RuntimeError("webhook endpoint down")

    ents, _ = build(listeners=[listener])
    heard.clear()
    ents.subscriptions.start_trial(ORG, "growth", actor="staff")
    assert heard == ["subscription.start_trial"]
    assert ents.subscriptions.get(ORG).status is SubscriptionStatus.TRIALING
    with pytest.raises(SubscriptionExists):
        ents.subscriptions.start_trial(ORG, "growth", actor="staff")
    assert heard == ["subscription.start_trial"]


def test_tenants_do_not_see_each_other():
    ents, _ = build()
    a = Owner("app", "1", tenant="tenant-a")
    b = Owner("app", "1", tenant="tenant-b")
    ents.subscriptions.subscribe(a, "growth", actor="staff")
    assert ents.subscriptions.find(b) is None
    assert not ents.allows(b, "export")
    ents.subscriptions.subscribe(b, "free", actor="staff")
    assert ents.subscriptions.get(a).plan_key == "growth"
    assert [e.owner for e in ents.audit.for_owner(b)] == [b]


operations = st.lists(
    st.sampled_from(
        [
            "trial",
            "convert",
            "suspend",
            "resume",
            "cancel",
            "seats",
            "override",
            "plan",
            "past_due",
            "bad_seats",
        ]
    ),
    max_size=15,
)


@given(operations)
def test_a_refused_call_leaves_storage_exactly_as_it_was(sequence):
    ents, clock = build()
    calls = {
        "trial": lambda: ents.subscriptions.start_trial(ORG, "growth", actor="s"),
        "convert": lambda: ents.subscriptions.convert(ORG, actor="s", seats=2),
        "suspend": lambda: ents.subscriptions.suspend(ORG, actor="s"),
        "resume": lambda: ents.subscriptions.resume(ORG, actor="s"),
        "cancel": lambda: ents.subscriptions.cancel(ORG, actor="s"),
        "seats": lambda: ents.subscriptions.change_seats(ORG, 3, actor="s"),
        "bad_seats": lambda: ents.subscriptions.change_seats(ORG, -3, actor="s"),
        "override": lambda: ents.overrides.set_feature(
            ORG, "sso", enabled=True, actor="s", reason="r"
        ),
        "plan": lambda: ents.subscriptions.change_plan(ORG, "enterprise", actor="s"),
        "past_due": lambda: ents.subscriptions.mark_past_due(ORG, actor="s"),
    }
    for name in sequence:
        clock.advance(minutes=5)
        before = dump(ents)
        try:
            calls[name]()
        except EntitlementsError:
            assert dump(ents) == before


def test_amend_edits_staff_details_and_an_expiry_date_ends_the_subscription():
    ents, clock = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    until = clock.now() + timedelta(days=10)
    sub = ents.subscriptions.amend(
        ORG,
        actor="staff",
        notes="pays by invoice",
        external_id="inv-77",
        metadata={"po": "4711"},
        expires_at=until,
    )
    assert (sub.notes, sub.external_id, sub.metadata, sub.expires_at) == (
        "pays by invoice",
        "inv-77",
        {"po": "4711"},
        until,
    )
    with pytest.raises(InvalidInput):
        ents.subscriptions.amend(ORG, actor="staff")
    clock.advance(days=11)
    ents.process_due()
    ended = ents.subscriptions.get(ORG)
    assert ended.status is SubscriptionStatus.EXPIRED
    assert ents.audit.for_owner(ORG)[-1].action == "subscription.expire"


def test_staff_can_expire_explicitly():
    ents, _ = build()
    ents.subscriptions.start_trial(ORG, "growth", actor="staff")
    assert (
        ents.subscriptions.expire(ORG, actor="staff", reason="fraud").status
        is SubscriptionStatus.EXPIRED
    )


def test_past_due_grace_ends_on_the_warm_path_without_a_sweep():
    ents, clock = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    ents.subscriptions.mark_past_due(ORG, actor="billing")
    assert ents.allows(ORG, "export", "create")
    clock.advance(days=8)
    assert not ents.allows(ORG, "export", "create"), "the grace ended: read-only"
    assert ents.allows(ORG, "export", "read")


def test_a_warm_check_does_no_io_and_no_resolution(monkeypatch):
    ents, _ = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    assert ents.allows(ORG, "export")

    def forbidden(*args, **kwargs):
        raise AssertionError("the warm path touched storage or resolved")

    monkeypatch.setattr(ents.store, "unit_of_work", forbidden)
    monkeypatch.setattr("entitlements.service.snapshots.resolve", forbidden)
    monkeypatch.setattr(ents.runtime.clock, "now", forbidden)
    assert ents.allows(ORG, "export")
    assert ents.allows(Owner("organization", "acme"), "export", "create")
    assert ents.limit(ORG, "projects") == 20
    assert not ents.allows(ORG, "sso")


def test_manual_clock_does_not_go_backwards():
    _, clock = build()
    with pytest.raises(InvalidInput):
        clock.advance(days=-1)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Owner("Organization", "1"), "owner.kind"),
        (lambda: Owner("org", ""), "owner.id"),
        (lambda: Owner("org", "1", tenant=""), "owner.tenant"),
    ],
)
def test_bad_owners_are_refused(make, field):
    with pytest.raises(InvalidInput) as caught:
        make()
    assert caught.value.field == field


def test_non_owner_arguments_get_a_clear_error():
    ents, _ = build()
    with pytest.raises(InvalidInput, match="Owner"):
        ents.subscriptions.start_trial("acme", "growth", actor="staff")


def test_reads_inside_an_atomic_block_see_its_writes_but_are_not_cached():
    ents, _ = build()
    assert not ents.allows(ORG, "export")

    def provision_then_fail():
        with ents.atomic():
            ents.subscriptions.subscribe(ORG, "growth", actor="staff")
            assert ents.allows(ORG, "export"), "the block reads its own writes"
            assert ents.plans.get("growth").key == "growth"
            raise RuntimeError("host failed")

    with pytest.raises(RuntimeError):
        provision_then_fail()
    assert not ents.allows(ORG, "export"), "nothing of the rolled-back block may stay cached"


def test_reads_of_another_tenant_inside_an_atomic_block_use_their_own_unit_of_work():
    ents, _ = build()
    other = Owner("app", "1", tenant="t2")
    ents.subscriptions.subscribe(other, "growth", actor="staff")
    with ents.atomic("t1"):
        ents.subscriptions.subscribe(Owner("app", "1", tenant="t1"), "free", actor="staff")
        assert ents.allows(other, "export")
