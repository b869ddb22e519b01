"""Scheduled changes and pauses are data: in force at their instant on every store, warm
and cold, with or without a sweep; canceling one leaves nothing behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    AddOn,
    ChangePending,
    Entitlements,
    Event,
    IllegalTransition,
    InvalidInput,
    LimitExceeded,
    ManualClock,
    Owner,
    PendingKind,
    SubscriptionStatus,
)
from entitlements.domain.subscription import transition_table_markdown
from entitlements.testing.contract import CATALOG, START

ACME = Owner("organization", "acme")
STAFF = "staff"
_S = SubscriptionStatus
_owners = count()


def fresh() -> Owner:
    return Owner("organization", f"o{next(_owners)}")


@pytest.fixture(params=STORE_KINDS)
def setup(request, make_store):
    store = make_store(request.param)
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock)
    for plan in CATALOG:
        ents.plans.define(plan, actor=STAFF)

    def cold() -> Entitlements:
        return Entitlements(store, clock=clock)

    return ents, clock, cold


def terms(ents: Entitlements, owner: Owner) -> dict:
    """The stored state that answers depend on (bookkeeping of writes left out)."""
    found = attrs.asdict(ents.subscriptions.get(owner), recurse=False)
    for name in ("id", "owner", "revision", "updated_at"):
        found.pop(name)
    return found


def answers(ents: Entitlements, owner: Owner) -> tuple:
    snap = ents.snapshot(owner)
    return (
        snap.plan_key,
        snap.status,
        tuple(snap.allows(f) for f in ("export", "premium", "sso")),
        tuple(snap.limit(m, 0) for m in ("seats", "projects")),
    )


def test_a_change_at_period_end_flips_at_its_instant_warm_and_cold(setup):
    ents, clock, cold = setup
    ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
    pending = ents.subscriptions.schedule_change(
        ACME, plan="growth", actor=STAFF, reason="upgrade at renewal"
    )
    assert pending is not None
    assert pending.at == datetime(2026, 2, 28, 9, 30, 15, 123456, tzinfo=UTC)
    assert (pending.kind, pending.plan_key, pending.requested_by) == (
        PendingKind.CHANGE,
        "growth",
        "staff",
    )
    assert ents.subscriptions.pending_change(ACME) == pending
    assert not ents.allows(ACME, "export")
    assert ents.snapshot(ACME).valid_until <= pending.at, "snapshot ends at the change"
    clock.set(pending.at - timedelta(microseconds=1))
    assert not ents.allows(ACME, "export")
    assert not cold().allows(ACME, "export")
    clock.advance(microseconds=1)
    assert ents.allows(ACME, "export"), "warm"
    assert cold().allows(ACME, "export"), "cold"
    assert ents.subscriptions.get(ACME).plan_key == "growth"
    assert ents.subscriptions.pending_change(ACME) is None
    report = ents.process_due()
    applied = [c for c in report.changes if c.request is not None]
    assert [(c.event, c.failure) for c in applied] == [(Event.APPLY_PENDING_CHANGE, None)]
    actions = [e.action for e in ents.audit.for_owner(ACME)]
    assert "subscription.pending_change_applied" in actions
    assert ents.process_due().changes == (), "applied once"


@pytest.mark.parametrize(
    ("start", "boundaries"),
    [
        (
            datetime(2026, 1, 31, 12, tzinfo=UTC),
            [datetime(2026, 2, 28, 12, tzinfo=UTC), datetime(2026, 3, 31, 12, tzinfo=UTC)],
        ),
        (
            datetime(2028, 1, 31, 12, tzinfo=UTC),
            [datetime(2028, 2, 29, 12, tzinfo=UTC), datetime(2028, 3, 31, 12, tzinfo=UTC)],
        ),
        (
            datetime(2026, 3, 31, 12, tzinfo=UTC),
            [datetime(2026, 4, 30, 12, tzinfo=UTC), datetime(2026, 5, 31, 12, tzinfo=UTC)],
        ),
    ],
)
def test_a_change_at_period_end_takes_the_clamped_month_end(setup, start, boundaries):
    ents, clock, _ = setup
    owner = fresh()
    clock.set(start)
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, seats=3, actor=STAFF)
    assert pending is not None
    assert pending.at == boundaries[0]
    clock.set(boundaries[0])
    now = ents.subscriptions.get(owner)
    assert now.seats == 3
    assert now.current_period is not None
    assert (now.current_period.start, now.current_period.end) == tuple(boundaries)


def test_one_pending_change_at_a_time(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    ents.subscriptions.schedule_change(owner, plan="growth", actor=STAFF)
    with pytest.raises(ChangePending, match="plan growth"):
        ents.subscriptions.schedule_change(owner, seats=1, actor=STAFF)
    replaced = ents.subscriptions.schedule_change(owner, seats=1, actor=STAFF, replace=True)
    assert replaced is not None
    assert ents.subscriptions.pending_change(owner) == replaced
    with pytest.raises(ChangePending, match="seats"):
        ents.subscriptions.cancel(owner, actor=STAFF, at_period_end=True)


def test_a_request_equal_to_what_will_be_in_force_clears_the_pending_one(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    ents.subscriptions.schedule_change(owner, plan="growth", actor=STAFF)
    cleared = ents.subscriptions.schedule_change(owner, plan="free", actor=STAFF, replace=True)
    assert cleared is None
    assert ents.subscriptions.pending_change(owner) is None


def test_cancel_at_period_end_is_a_pending_change(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    ents.subscriptions.cancel(owner, actor=STAFF, at_period_end=True)
    pending = ents.subscriptions.pending_change(owner)
    assert pending is not None
    assert pending.kind is PendingKind.CANCEL
    with pytest.raises(ChangePending, match="cancellation"):
        ents.subscriptions.schedule_change(owner, seats=2, actor=STAFF)
    with pytest.raises(ChangePending, match="cancellation"):
        ents.subscriptions.pause(owner, actor=STAFF)
    ents.subscriptions.cancel_pending_change(owner, actor=STAFF)
    assert not ents.subscriptions.get(owner).cancel_at_period_end
    ents.subscriptions.cancel(owner, actor=STAFF, at_period_end=True)
    ents.subscriptions.undo_cancel(owner, actor=STAFF)
    assert ents.subscriptions.pending_change(owner) is None


def test_ending_the_subscription_clears_the_pending_change_audited(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    ents.subscriptions.schedule_change(owner, plan="growth", actor=STAFF)
    ended = ents.subscriptions.cancel(owner, actor=STAFF)
    assert ended.scheduled is None
    cleared = [e for e in ents.audit.for_owner(owner) if e.action.endswith("_cleared")]
    assert len(cleared) == 1
    assert "cleared by cancel" in (cleared[0].reason or "")


def test_a_plan_archived_meanwhile_fails_the_change_and_leaves_the_subscription(setup):
    ents, clock, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="enterprise", actor=STAFF)
    assert pending is not None
    ents.plans.archive("enterprise", actor=STAFF)
    clock.set(pending.at + timedelta(hours=1))
    assert ents.subscriptions.get(owner).plan_key == "free", "reads agree with the sweep"
    assert not ents.allows(owner, "sso")
    report = ents.process_due()
    failed = [c for c in report.changes if c.failure]
    assert len(failed) == 1
    assert "enterprise" in failed[0].failure
    held = ents.subscriptions.get(owner)
    assert held.plan_key == "free"
    assert held.scheduled is None
    audited = [e for e in ents.audit.for_owner(owner) if e.action.endswith("_failed")]
    assert len(audited) == 1


def test_a_downgrade_over_quota_under_refuse_fails_at_its_instant(setup):
    ents, clock, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="free", actor=STAFF)
    assert pending is not None
    ents.usage.set_gauge(owner, "projects", 10)
    clock.set(pending.at)
    ents.process_due()
    held = ents.subscriptions.get(owner)
    assert held.plan_key == "growth"
    assert held.scheduled is None
    failed = [e for e in ents.audit.for_owner(owner) if e.action.endswith("_failed")]
    assert "projects" in (failed[0].reason or "")


def test_reads_before_the_sweep_show_what_the_sweep_will_decide_under_refuse(setup):
    """From the instant on, every read answers as the sweep will store it: over quota
    under REFUSE the change does not show; the answer follows usage until it is stored,
    and is never kept in the cache meanwhile."""
    ents, clock, cold = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="free", actor=STAFF)
    assert pending is not None
    ents.usage.set_gauge(owner, "projects", 10)  # free allows 3
    ents.allows(owner, "export")  # warm before the instant
    clock.set(pending.at + timedelta(minutes=1))
    for reader in (ents, cold()):
        assert reader.snapshot(owner).plan_key == "growth"
        assert reader.limit(owner, "projects") == 20
        assert reader.subscriptions.get(owner).plan_key == "growth"
        assert reader.billing.state(owner).subscription.plan_key == "growth"
    assert ents.runtime.cache.snapshots.get(owner) is None, "an answer for its instant only"
    ents.usage.set_gauge(owner, "projects", 2)  # under quota now: the change applies
    for reader in (ents, cold()):
        assert reader.snapshot(owner).plan_key == "free"
        assert reader.subscriptions.get(owner).plan_key == "free"
    ents.process_due()
    stored = ents.subscriptions.get(owner)
    assert (stored.plan_key, stored.scheduled) == ("free", None)
    assert ents.snapshot(owner).plan_key == "free"
    applied = [e for e in ents.audit.for_owner(owner) if e.action.endswith("_applied")]
    assert len(applied) == 1


@given(projects=st.integers(min_value=0, max_value=25), minutes=st.integers(0, 600))
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_what_reads_show_after_the_instant_is_what_the_sweep_stores(setup, projects, minutes):
    ents, clock, cold = setup
    clock.set(START)
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="free", actor=STAFF)
    assert pending is not None
    ents.usage.set_gauge(owner, "projects", projects)
    clock.set(pending.at + timedelta(minutes=minutes))
    before = (answers(ents, owner), answers(cold(), owner), terms(ents, owner))
    ents.process_due()
    after = (answers(ents, owner), answers(cold(), owner), terms(ents, owner))
    assert before == after
    assert after[0][0] == ("growth" if projects > 3 else "free")


# -- pauses ---------------------------------------------------------------------------


def test_a_pause_from_a_date_until_a_date(setup):
    ents, clock, cold = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    begins, ends = START + timedelta(days=3), START + timedelta(days=10)
    ents.subscriptions.pause(owner, at=begins, resume_at=ends, actor=STAFF, reason="holiday")
    pending = ents.subscriptions.pending_change(owner)
    assert pending is not None
    assert pending.kind is PendingKind.PAUSE, "a future pause is visible"
    assert ents.allows(owner, "export")
    clock.set(begins)
    assert ents.subscriptions.get(owner).status is _S.PAUSED
    assert not ents.allows(owner, "export", action="create"), "read-only"
    assert cold().snapshot(owner).status is _S.PAUSED
    with pytest.raises(ChangePending, match="pause"):
        ents.subscriptions.schedule_change(
            owner, seats=2, at=begins + timedelta(days=1), actor=STAFF
        )
    clock.set(ends)
    assert ents.subscriptions.get(owner).status is _S.ACTIVE
    assert cold().allows(owner, "export", action="create")
    ents.process_due()
    actions = [e.action for e in ents.audit.for_owner(owner)]
    assert "subscription.pending_change_applied" in actions
    assert "subscription.unpause" in actions


def test_a_pause_and_a_suspension_hold_at_once(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    ents.subscriptions.pause(owner, actor=STAFF)
    suspended = ents.subscriptions.suspend(owner, actor=STAFF)
    assert (suspended.status, suspended.suspended_from) == (_S.SUSPENDED, _S.PAUSED)
    assert suspended.pause is not None
    assert ents.subscriptions.resume(owner, actor=STAFF).status is _S.PAUSED
    assert ents.subscriptions.unpause(owner, actor=STAFF).status is _S.ACTIVE
    with pytest.raises(IllegalTransition):
        ents.subscriptions.unpause(owner, actor=STAFF)


def test_unpause_restarts_the_period_when_asked(setup):
    ents, clock, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    kept = fresh()
    ents.subscriptions.subscribe(kept, "growth", actor=STAFF)
    ents.subscriptions.pause(owner, actor=STAFF, restart_period=True)
    ents.subscriptions.pause(kept, actor=STAFF)
    clock.advance(days=40)
    back = ents.subscriptions.unpause(owner, actor=STAFF)
    assert back.current_period is not None
    assert back.current_period.start == clock.now()
    same = ents.subscriptions.unpause(kept, actor=STAFF)
    assert same.current_period is not None
    assert same.current_period.start == datetime(2026, 2, 28, 9, 30, 15, 123456, tzinfo=UTC)


def test_bad_requests_are_refused_and_change_nothing(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    before = ents.subscriptions.get(owner)
    with pytest.raises(InvalidInput):
        ents.subscriptions.schedule_change(owner, actor=STAFF)
    with pytest.raises(InvalidInput):
        ents.subscriptions.schedule_change(
            owner, seats=2, at=START - timedelta(days=1), actor=STAFF
        )
    with pytest.raises(InvalidInput):
        ents.subscriptions.schedule_change(owner, seats=2, at=datetime(2026, 5, 1), actor=STAFF)
    with pytest.raises(InvalidInput):
        ents.subscriptions.schedule_change(owner, addons=["x"], actor=STAFF)
    with pytest.raises(InvalidInput):
        ents.subscriptions.cancel_pending_change(owner, actor=STAFF)
    with pytest.raises(InvalidInput):
        ents.subscriptions.pause(owner, resume_at=START - timedelta(days=1), actor=STAFF)
    assert ents.subscriptions.get(owner) == before


def test_preview_at_the_effective_instant(setup):
    ents, _, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    ents.usage.set_gauge(owner, "projects", 10)
    at = START + timedelta(days=45)
    shown = ents.subscriptions.preview_change(owner, "free", at=at)
    assert shown.effective_at == at
    assert shown.usage_as_of == START
    assert [o.metric for o in shown.over_quota] == ["projects"]


# -- the properties -------------------------------------------------------------------

CHANGES = st.sampled_from(
    [
        {"plan": "growth"},
        {"seats": 4},
        {"addons": [AddOn("boost", {"projects": 5})]},
        {"plan": "growth", "seats": 2},
    ]
)


def _by_hand(ents: Entitlements, owner: Owner, change: dict) -> None:
    if "plan" in change:
        ents.subscriptions.change_plan(owner, change["plan"], actor=STAFF)
    if "seats" in change:
        ents.subscriptions.change_seats(owner, change["seats"], actor=STAFF)
    for addon in change.get("addons", ()):
        ents.subscriptions.add_addon(owner, addon, actor=STAFF)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    change=CHANGES,
    offset=st.one_of(st.none(), st.integers(min_value=1, max_value=60 * 24 * 50)),
    beyond=st.integers(min_value=0, max_value=60 * 24 * 40),
    sweep=st.booleans(),
)
def test_scheduled_then_time_passes_equals_the_change_by_hand(setup, change, offset, beyond, sweep):
    ents, clock, cold = setup
    clock.set(START)
    scheduled, by_hand, never = fresh(), fresh(), fresh()
    for owner in (scheduled, by_hand, never):
        ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    at = None if offset is None else START + timedelta(minutes=offset)
    pending = ents.subscriptions.schedule_change(scheduled, actor=STAFF, at=at, **change)
    assert pending is not None
    # the same change scheduled, then canceled, is as if never scheduled
    ents.subscriptions.schedule_change(never, actor=STAFF, at=at, **change)
    ents.subscriptions.cancel_pending_change(never, actor=STAFF)
    clock.set(pending.at)
    _by_hand(ents, by_hand, change)
    clock.advance(minutes=beyond)
    if sweep:
        ents.process_due()
    assert terms(ents, scheduled) == terms(ents, by_hand)
    assert answers(ents, scheduled) == answers(ents, by_hand)
    assert answers(cold(), scheduled) == answers(cold(), by_hand)
    untouched = fresh()
    clock.set(START)
    ents.subscriptions.subscribe(untouched, "free", actor=STAFF)
    clock.set(pending.at + timedelta(minutes=beyond))
    assert terms(ents, never) == terms(ents, untouched)


def test_the_docs_show_the_paused_transitions():
    table = transition_table_markdown()
    assert "| `pause` | `active` | `paused` |" in table
    assert "| `unpause` | `paused` | `active` |" in table


# -- the payment provider -------------------------------------------------------------


def _provider_app():
    from decimal import Decimal

    from entitlements import MemoryStore, Plan, Price
    from entitlements.testing.fakes import FakePaymentProvider

    clock = ManualClock(START)
    provider = FakePaymentProvider(clock)
    ents = Entitlements(MemoryStore(), clock=clock, payment_provider=provider)
    for key, amount in (("basic", "9"), ("pro", "29"), ("max", "99")):
        plan = Plan(key, key, price=Price(Decimal(amount), "USD"), status="active")
        ents.plans.define(plan, actor=STAFF)
    started = ents.billing.assign_plan(ACME, "basic", actor=STAFF)
    provider.complete_checkout(started.checkout.id)
    provider.deliver(ents)
    return ents, clock, provider


def test_a_provider_billed_change_goes_to_the_provider_when_it_applies():
    ents, clock, provider = _provider_app()
    pending = ents.subscriptions.schedule_change(ACME, plan="pro", actor=STAFF)
    assert pending is not None
    calls = len(provider.calls)
    clock.set(pending.at + timedelta(seconds=1))
    report = ents.process_due()
    sent = [c for c in report.provider_commands if c.kind.value == "change_plan"]
    assert len(sent) == 1
    assert sent[0].payload["plan_key"] == "pro"
    assert provider.calls[calls][0] == "change_plan"
    assert ents.subscriptions.get(ACME).plan_key == "pro"


def test_a_provider_plan_change_clears_the_pending_change():
    ents, _, provider = _provider_app()
    ents.subscriptions.schedule_change(ACME, plan="pro", actor=STAFF)
    external_id = ents.subscriptions.get(ACME).external_id
    provider.change_plan(external_id, ents.plans.get("max"), seats=None)
    provider.deliver(ents)
    held = ents.subscriptions.get(ACME)
    assert (held.plan_key, held.scheduled) == ("max", None)
    cleared = [e for e in ents.audit.for_owner(ACME) if e.action.endswith("_cleared")]
    assert len(cleared) == 1


def test_writes_enforce_the_new_limits_from_the_instant_without_a_sweep(setup):
    ents, clock, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    ents.seats.assign(owner, "m1", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="growth", actor=STAFF)
    assert pending is not None
    with pytest.raises(LimitExceeded):
        ents.seats.assign(owner, "m2", actor=STAFF)
    clock.set(pending.at)
    ents.seats.assign(owner, "m2", actor=STAFF)
    assert len(ents.seats.list(owner)) == 2


def test_a_pause_in_force_gets_an_end_date_and_ends_then(setup):
    ents, clock, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    ents.subscriptions.pause(owner, actor=STAFF)
    ends = START + timedelta(days=5)
    held = ents.subscriptions.unpause(owner, at=ends, actor=STAFF)
    assert held.pause is not None
    assert held.pause.until == ends
    assert ents.subscriptions.pending_change(owner) is None
    clock.set(ends)
    assert ents.subscriptions.get(owner).status is _S.ACTIVE


def test_a_pause_that_reaches_a_suspended_subscription_fails_and_says_why(setup):
    ents, clock, _ = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    begins = START + timedelta(days=2)
    ents.subscriptions.pause(owner, at=begins, actor=STAFF)
    ents.subscriptions.suspend(owner, actor=STAFF)
    clock.set(begins + timedelta(hours=1))
    held = ents.subscriptions.get(owner)
    assert (held.status, held.scheduled, held.pause) == (_S.SUSPENDED, None, None)
    ents.process_due()
    failed = [e for e in ents.audit.for_owner(owner) if e.action.endswith("_failed")]
    assert len(failed) == 1
    assert "suspended subscription cannot be paused" in (failed[0].reason or "")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    offset=st.integers(min_value=1, max_value=60 * 24 * 50),
    length=st.one_of(st.none(), st.integers(min_value=1, max_value=60 * 24 * 60)),
    restart=st.booleans(),
    beyond=st.integers(min_value=0, max_value=60 * 24 * 90),
)
def test_a_pause_scheduled_for_t_equals_the_pause_made_at_t(setup, offset, length, restart, beyond):
    ents, clock, cold = setup
    clock.set(START)
    scheduled, by_hand, never = fresh(), fresh(), fresh()
    for owner in (scheduled, by_hand, never):
        ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    at = START + timedelta(minutes=offset)
    if restart:  # a restarting pause begins at a period's start (no billed days lost)
        held = ents.subscriptions.get(scheduled)
        at = held.cycle.period_containing(held.cycle_anchor or START, at).end
    until = None if length is None else at + timedelta(minutes=length)
    for owner in (scheduled, never):
        ents.subscriptions.pause(owner, at=at, resume_at=until, restart_period=restart, actor=STAFF)
    ents.subscriptions.cancel_pending_change(never, actor=STAFF)
    clock.set(at)
    ents.subscriptions.pause(by_hand, resume_at=until, restart_period=restart, actor=STAFF)
    clock.advance(minutes=beyond)
    assert terms(ents, scheduled) == terms(ents, by_hand)
    assert answers(cold(), scheduled) == answers(cold(), by_hand)
    untouched = fresh()
    clock.set(START)
    ents.subscriptions.subscribe(untouched, "growth", actor=STAFF)
    clock.set(at + timedelta(minutes=beyond))
    assert terms(ents, never) == terms(ents, untouched)
