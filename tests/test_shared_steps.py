"""Time's steps worked out once per set of terms (`shared_terms`, the sweep's groups) give
every subscription exactly what working them out for it alone gives: the rules read only
a subscription's terms, never which one it is, whose, or the host's data on it."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from entitlements import Actor, Owner
from entitlements.domain import lifecycle
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.due import advance, as_of, shared_terms
from entitlements.domain.scheduled import PendingChange, PendingKind
from entitlements.domain.subscription import CARRIED, TERMS, Subscription, with_changes
from entitlements.errors import EntitlementsError
from entitlements.testing.strategies import addons, instants, owners, subscriptions

SWEEP = Actor.system("sweep")


@st.composite
def _terms(draw: st.DrawFn) -> Subscription:
    """A subscription reached through the table, perhaps with add-ons ending and a change
    or a pause scheduled."""
    sub = draw(subscriptions())
    if draw(st.booleans()):
        ends = sub.updated_at + timedelta(days=draw(st.integers(1, 400)))
        extra = draw(st.lists(addons(), max_size=2, unique_by=lambda a: a.key))
        sub = with_changes(sub, addons=tuple(attrs.evolve(a, ends_at=ends) for a in extra))
    if draw(st.booleans()):
        at = sub.updated_at + timedelta(days=draw(st.integers(1, 400)))
        kind = draw(st.sampled_from([PendingKind.CHANGE, PendingKind.PAUSE]))
        wanted = PendingChange(
            kind,
            at,
            plan_key=draw(st.sampled_from([None, "other"])) if kind is PendingKind.CHANGE else None,
            plan_version=1,
            seats=draw(st.one_of(st.none(), st.integers(1, 50))),
            resume_at=at + timedelta(days=draw(st.integers(1, 60)))
            if kind is PendingKind.PAUSE
            else None,
        )
        with contextlib.suppress(EntitlementsError):  # one the rules refuse: none scheduled
            sub = lifecycle.schedule(sub, wanted, sub.updated_at, actor=SWEEP).after
    return sub


_SIGNED = ContractLink("ctr_1", Decimal("1200.00"), "EUR", "12 months")


@st.composite
def _alike(draw: st.DrawFn, sub: Subscription) -> Subscription:
    """Another subscription on the same terms: which one, whose and the host's data on it
    differ."""
    owner: Owner = draw(owners())
    return attrs.evolve(
        sub,
        id=draw(st.uuids()).hex,
        owner=owner,
        created_at=sub.created_at - timedelta(hours=draw(st.integers(0, 5000))),
        external_id=draw(st.one_of(st.none(), st.just("sub_1"))),
        metadata=draw(st.dictionaries(st.sampled_from("abc"), st.integers(0, 9), max_size=2)),
        notes=draw(st.sampled_from(["", "vip"])),
        revision=draw(st.integers(1, 90)),
        plan_manager=draw(st.one_of(st.none(), st.just("member-1"))),
        contract=draw(st.one_of(st.none(), st.just(_SIGNED))),
    )


def test_the_carried_fields_and_the_terms_split_every_field():
    names = {f.name for f in attrs.fields(Subscription)}
    assert set(CARRIED) | set(TERMS) == names
    assert not set(CARRIED) & set(TERMS)


@settings(max_examples=300, deadline=None)
@given(st.data(), _terms(), st.integers(0, 900), st.booleans())
def test_shared_steps_are_each_subscriptions_own(data, first, days, jump):
    other = data.draw(_alike(first))
    now = first.updated_at + timedelta(days=days, hours=data.draw(st.integers(0, 23)))
    alone = advance(other, now, jump=jump)
    with shared_terms():
        advance(first, now, jump=jump)
        shared = advance(other, now, jump=jump)
        state = as_of(other, now)
        step = lifecycle.catch_up(other, now, actor=SWEEP)
    assert shared == alone
    assert state == as_of(other, now)
    assert step == lifecycle.catch_up(other, now, actor=SWEEP)
    assert all(s.before.owner == s.after.owner == other.owner for s in shared[1])


@given(_terms(), instants(days=2000))
def test_a_subscription_advanced_twice_in_a_block_gets_its_own_result_again(sub, now):
    now = max(now, sub.updated_at)
    with shared_terms():
        first = advance(sub, now)
        again = advance(sub, now)
    assert first == again == advance(sub, now)
