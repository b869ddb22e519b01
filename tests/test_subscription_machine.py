"""The subscription state machine: the table is the whole truth."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog import build
from entitlements import (
    TRANSITIONS,
    EntitlementsError,
    Event,
    IllegalTransition,
    Owner,
    Period,
    Subscription,
    SubscriptionStatus,
)
from entitlements.domain.subscription import (
    CREATION_EVENTS,
    NEW,
    PREVIOUS,
    RULES,
    SAME,
    TERMINAL,
    transition,
)

ORG = Owner("organization", "7")
T0 = build()[1].now()


def sub_in(status: SubscriptionStatus, **kwargs) -> Subscription:
    fields = {
        "id": "s1",
        "owner": ORG,
        "plan_key": "growth",
        "plan_version": 1,
        "status": status,
        "created_at": T0,
        "updated_at": T0,
        "trial_ends_at": T0 + timedelta(days=90),
        "current_period": Period(T0, T0 + timedelta(days=30)),
        **kwargs,
    }
    return Subscription(**fields)


def test_every_event_has_exactly_one_rule():
    assert sorted(t.event for t in TRANSITIONS) == sorted(Event)


def test_terminal_statuses_only_allow_amending_and_starting_over():
    for rule in TRANSITIONS:
        for status in TERMINAL:
            if status.value in rule.sources:
                assert rule.event is Event.AMEND


@pytest.mark.parametrize("status", list(SubscriptionStatus))
@pytest.mark.parametrize("event", [e for e in Event if e not in CREATION_EVENTS])
def test_each_status_event_pair_follows_the_table(status, event):
    sub = sub_in(
        status,
        suspended_from=SubscriptionStatus.ACTIVE
        if status is SubscriptionStatus.SUSPENDED
        else None,
    )
    rule = RULES[event]
    extra = {}
    if event is Event.UNDO_CANCEL:
        sub = attrs.evolve(sub, cancel_at_period_end=True)
    later = T0 + timedelta(hours=1)
    if status.value in rule.sources:
        after = transition(sub, event, later, **extra)
        expected = {SAME: status, PREVIOUS: SubscriptionStatus.ACTIVE}.get(rule.target, rule.target)
        assert after.status == expected
        assert after.updated_at == later
    else:
        with pytest.raises(IllegalTransition) as caught:
            transition(sub, event, later)
        err = caught.value
        assert (err.state, err.event, err.key) == (status.value, event.value, "s1")
        assert set(err.allowed) == set(rule.sources)


def test_creation_events_are_not_transitions_of_an_existing_subscription():
    for event in CREATION_EVENTS:
        with pytest.raises(IllegalTransition):
            transition(sub_in(SubscriptionStatus.ACTIVE), event, T0)
        assert RULES[event].sources == frozenset({NEW})


def test_resume_returns_to_the_status_before_suspension():
    sub = sub_in(SubscriptionStatus.PAST_DUE, past_due_since=T0)
    suspended = transition(sub, Event.SUSPEND, T0)
    assert suspended.suspended_from is SubscriptionStatus.PAST_DUE
    resumed = transition(suspended, Event.RESUME, T0)
    assert resumed.status is SubscriptionStatus.PAST_DUE
    assert resumed.past_due_since == T0
    assert resumed.suspended_from is None


def test_cancel_records_when_and_clears_a_scheduled_cancel():
    sub = transition(sub_in(SubscriptionStatus.TRIALING), Event.SCHEDULE_CANCEL, T0)
    assert sub.cancel_at_period_end
    canceled = transition(sub, Event.CANCEL, T0 + timedelta(days=1))
    assert canceled.canceled_at == T0 + timedelta(days=1)
    assert not canceled.cancel_at_period_end


def test_scheduling_a_cancel_twice_is_refused():
    sub = transition(sub_in(SubscriptionStatus.TRIALING), Event.SCHEDULE_CANCEL, T0)
    with pytest.raises(IllegalTransition, match="already scheduled"):
        transition(sub, Event.SCHEDULE_CANCEL, T0)


# -- the same table, driven through the service with random sequences ----------------

OPERATIONS = {
    "start_trial": lambda e: e.subscriptions.start_trial(ORG, "growth", actor="staff"),
    "subscribe": lambda e: e.subscriptions.subscribe(ORG, "free", actor="staff"),
    "begin_checkout": lambda e: e.subscriptions.begin_checkout(ORG, "growth", actor="staff"),
    "activate": lambda e: e.subscriptions.convert(ORG, actor="staff", plan_key="growth", seats=3),
    "fail": lambda e: e.subscriptions.fail(ORG, actor="provider"),
    "mark_past_due": lambda e: e.subscriptions.mark_past_due(ORG, actor="staff"),
    "settle": lambda e: e.subscriptions.settle(ORG, actor="staff"),
    "suspend": lambda e: e.subscriptions.suspend(ORG, actor="staff"),
    "resume": lambda e: e.subscriptions.resume(ORG, actor="staff"),
    "schedule_cancel": lambda e: e.subscriptions.cancel(ORG, actor="staff", at_period_end=True),
    "undo_cancel": lambda e: e.subscriptions.undo_cancel(ORG, actor="staff"),
    "cancel": lambda e: e.subscriptions.cancel(ORG, actor="staff"),
    "expire": lambda e: e.subscriptions.expire(ORG, actor="staff"),
    "change_plan": lambda e: e.subscriptions.change_plan(ORG, "enterprise", actor="staff"),
    "change_seats": lambda e: e.subscriptions.change_seats(ORG, 9, actor="staff"),
    "amend": lambda e: e.subscriptions.amend(ORG, actor="staff", notes="called the customer"),
}

steps = st.lists(
    st.one_of(st.sampled_from(sorted(OPERATIONS)), st.integers(min_value=1, max_value=120)),
    max_size=25,
)


def _state(sub: Subscription | None, event: Event) -> str:
    if event in CREATION_EVENTS:
        return NEW if sub is None or sub.is_terminal else sub.status.value
    return "(none)" if sub is None else sub.status.value


@given(steps)
def test_no_sequence_of_calls_leaves_the_transition_table(sequence):
    ents, clock = build()
    for step in sequence:
        before = ents.subscriptions.find(ORG)
        audit_before = len(ents.audit.for_owner(ORG))
        if isinstance(step, int):
            clock.advance(days=step)
            ents.process_due()
            after = ents.subscriptions.find(ORG)
            for change in [] if after is None else ents.audit.for_owner(ORG)[audit_before:]:
                if not change.action.startswith("subscription."):
                    continue  # the sweep also invoices the periods that ended
                event = Event(change.action.removeprefix("subscription."))
                assert change.before["status"] in RULES[event].sources
            continue
        try:
            OPERATIONS[step](ents)
        except EntitlementsError:
            assert ents.subscriptions.find(ORG) == before
            assert len(ents.audit.for_owner(ORG)) == audit_before
            continue
        after = ents.subscriptions.find(ORG)
        assert after is not None
        event = Event(step)
        rule = RULES[event]
        assert _state(before, event) in rule.sources
        target = {
            SAME: before.status if before else None,
            PREVIOUS: before.suspended_from if before else None,
        }
        assert after.status == target.get(rule.target, rule.target) or (
            rule.target == PREVIOUS
            and before is not None
            and after.status is SubscriptionStatus.ACTIVE
        )
        assert len(ents.audit.for_owner(ORG)) == audit_before + 1


# -- a changed copy converts and checks only what changes -----------------------------


def _valid_subscription():
    from datetime import UTC, datetime

    from entitlements import AddOn, Owner
    from entitlements.domain.billing_cycle import BillingCycle
    from entitlements.domain.subscription import Subscription

    start = datetime(2030, 1, 31, tzinfo=UTC)
    cycle = BillingCycle.monthly()
    return Subscription(
        id="s1",
        owner=Owner("organization", "acme"),
        plan_key="pro",
        plan_version=2,
        status="active",
        created_at=start,
        updated_at=start,
        seats=4,
        cycle=cycle,
        cycle_anchor=start,
        current_period=cycle.period_containing(start, start),
        metadata={"crm": {"tags": ["a", "b"]}},
        addons=(AddOn("extra", {"projects": 2}),),
        revision=3,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"revision": 4},
        {"seats": 9, "plan_version": 3},
        {"status": "past_due", "metadata": {"x": [1]}},
        {"scheduled": None, "cancel_at_period_end": True},
    ],
)
def test_a_changed_copy_equals_what_evolve_builds(changes) -> None:
    from entitlements.domain.subscription import with_changes

    sub = _valid_subscription()
    made = with_changes(sub, **changes)
    assert made == attrs.evolve(sub, **changes)
    assert hash(made) == hash(attrs.evolve(sub, **changes))
    assert sub == _valid_subscription()  # the original is untouched


def test_a_changed_copy_still_refuses_a_bad_changed_field() -> None:
    from datetime import datetime

    from entitlements.domain.subscription import with_changes
    from entitlements.errors import InvalidInput, NaiveDatetime

    sub = _valid_subscription()
    with pytest.raises(InvalidInput):
        with_changes(sub, seats=-1)
    with pytest.raises(NaiveDatetime):
        with_changes(sub, updated_at=datetime(2030, 2, 1))
    with pytest.raises(InvalidInput):
        with_changes(sub, metadata={"bad": object()})
    with pytest.raises(TypeError):
        with_changes(sub, colour="red")
