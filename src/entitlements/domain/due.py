"""Changes that time alone causes: a trial ends, a scheduled cancellation or an expiry
date is reached, an add-on ends, a billing period rolls over, a checkout lapses, an
invoice staff bill directly is still unpaid at its due date.

This module is the one place that knows them. Resolution calls `as_of` on every
subscription it reads, so answers follow time whether or not the sweep ran; the sweep
calls `advance` to persist and audit the same steps. `advance` applies them in the order
they fell due, each at the instant it fell due (a cancellation at period end is dated at
the period end, not when anyone noticed), so running it twice, or late, gives the same
result as running it on time. It never proposes an event the transition table forbids
from the subscription's status.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

import attrs

from entitlements.domain.instant import Period, utc
from entitlements.domain.scheduled import Pause, PendingChange, PendingKind
from entitlements.domain.subscription import (
    RULES,
    TERMS,
    Event,
    Subscription,
    SubscriptionStatus,
    as_one_of,
    transition,
)

__all__ = [
    "DueChange",
    "advance",
    "as_of",
    "could_read_as",
    "next_change_at",
    "next_due",
    "pending_fields",
    "shared_terms",
    "unpause_fields",
]

MAX_STEPS = 10_000
_TICK = timedelta(microseconds=1)
_S = SubscriptionStatus


@attrs.frozen
class DueChange:
    """One change time caused: the event, the instant it fell due, and the subscription
    before and after."""

    event: Event
    """The lifecycle event time caused (``end_trial``, ``renew_period``...)."""
    at: datetime
    """When it fell due, which is when it is dated, however late it was stored."""
    before: Subscription
    """The subscription before the change."""
    after: Subscription
    """The subscription after the change."""
    failure: str | None = None
    """Why a pending change that reached its instant could not apply (it was dropped and
    the subscription left as it was); ``None`` otherwise."""
    request: PendingChange | None = None
    """The pending change that reached its instant, when the step is one."""


def _allowed(subscription: Subscription, event: Event) -> bool:
    return subscription.status.value in RULES[event].sources


def _underlying(subscription: Subscription) -> SubscriptionStatus:
    """The status time acts on: a suspension caps access but does not stop a trial from
    running out underneath it."""
    if subscription.status is _S.SUSPENDED and subscription.suspended_from is not None:
        return subscription.suspended_from
    return subscription.status


_Candidate = tuple[datetime, int, Event]
"""A time-driven event, the instant it is due, and its rank among events due together."""


def _ending(subscription: Subscription) -> _Candidate | None:
    """The expiry date ends a live subscription, and fails a checkout still pending."""
    if subscription.expires_at is None:
        return None
    if _allowed(subscription, Event.EXPIRE):
        return subscription.expires_at, 0, Event.EXPIRE
    if subscription.status is _S.PENDING:
        return subscription.expires_at, 0, Event.FAIL
    return None


def _cancellation(subscription: Subscription) -> _Candidate | None:
    """A cancellation scheduled for the period (or trial) end."""
    cancel_at = subscription.cancel_effective_at
    if cancel_at is None or not _allowed(subscription, Event.CANCEL):
        return None
    return cancel_at, 1, Event.CANCEL


def _trial_end(subscription: Subscription) -> _Candidate | None:
    """A trial's end, which a suspension does not stop."""
    if _underlying(subscription) is not _S.TRIALING or subscription.trial_ends_at is None:
        return None
    return subscription.trial_ends_at, 2, Event.END_TRIAL


def _addon_end(subscription: Subscription) -> _Candidate | None:
    """The first add-on to run out."""
    ends = [a.ends_at for a in subscription.addons if a.ends_at is not None]
    if not ends or not _allowed(subscription, Event.CHANGE_ADDONS):
        return None
    return min(ends), 3, Event.CHANGE_ADDONS


def _not_before_last_change(subscription: Subscription, at: datetime) -> datetime:
    """An instant an event gated on the current status falls due: never before the
    subscription's last change, which is when a status that held the event back
    (paused, suspended) ended — a due date passed during a pause makes the subscription
    past due when the pause ends, not backdated to the due date."""
    return max(at, subscription.updated_at)


def _overdue(subscription: Subscription) -> _Candidate | None:
    """An invoice staff bill directly, unpaid at its due date, makes an active
    subscription past due at that instant (or when it became active again, if later)."""
    if subscription.payment_due_at is None or not _allowed(subscription, Event.MARK_PAST_DUE):
        return None
    return (
        _not_before_last_change(subscription, subscription.payment_due_at),
        4,
        Event.MARK_PAST_DUE,
    )


def _renewal(subscription: Subscription) -> _Candidate | None:
    """The billing period's end, when it renews on a cycle."""
    period = subscription.current_period
    if period is None or subscription.cycle is None:
        return None
    if not _allowed(subscription, Event.RENEW_PERIOD):
        return None
    return period.end, 5, Event.RENEW_PERIOD


def _scheduled(subscription: Subscription) -> _Candidate | None:
    """A pending change or pause reaching its instant: before the period rolls over at
    the same instant, so a change at period end starts the next period on the new terms.
    """
    pending = subscription.scheduled
    if pending is None or not _allowed(subscription, Event.APPLY_PENDING_CHANGE):
        return None
    return pending.at, 1, Event.APPLY_PENDING_CHANGE


def _pause_end(subscription: Subscription) -> _Candidate | None:
    """A pause's end date, or the resumption of a suspension that outlasted it: a
    suspended pause does not end underneath the suspension."""
    pause = subscription.pause
    if subscription.status is not _S.PAUSED or pause is None or pause.until is None:
        return None
    return _not_before_last_change(subscription, pause.until), 1, Event.UNPAUSE


_KINDS = (
    _ending,
    _cancellation,
    _scheduled,
    _pause_end,
    _trial_end,
    _addon_end,
    _overdue,
    _renewal,
)


def _candidates(subscription: Subscription) -> list[_Candidate]:
    """Every time-driven event that will happen to the subscription as it stands, with
    the instant it is due; ties break in the order listed."""
    if subscription.is_terminal:
        return []
    return [found for kind in _KINDS if (found := kind(subscription)) is not None]


def next_change_at(subscription: Subscription) -> datetime | None:
    """The earliest instant at which time alone changes the subscription."""
    found = _candidates(subscription)
    return min(found)[0] if found else None


def next_due(subscription: Subscription, now: datetime) -> tuple[Event, datetime] | None:
    """The earliest time-driven event due at or before ``now``, if any."""
    due = [c for c in _candidates(subscription) if c[0] <= now]
    if not due:
        return None
    at, _, event = min(due)
    return event, at


def _renewed_period(subscription: Subscription, now: datetime, *, jump: bool) -> Period:
    """The period after a renewal: the next one, or (``jump``) straight the one that holds
    ``now`` — or that ends just before the next other event — rather than one renewal per
    elapsed period."""
    cycle, period = subscription.cycle, subscription.current_period
    assert cycle is not None
    assert period is not None
    anchor = subscription.cycle_anchor or period.start
    if not jump:
        return cycle.next_period(anchor, period)
    others = [c[0] for c in _candidates(subscription) if c[2] is not Event.RENEW_PERIOD]
    target = min([now, *(o - _TICK for o in others if o <= now)])
    return cycle.period_containing(anchor, max(target, period.end))


def unpause_fields(subscription: Subscription, at: datetime) -> dict[str, Any]:
    """What ending a pause at ``at`` changes besides the status: with ``restart_period``,
    the billing period starts again at ``at`` (anchored there); otherwise the anchor
    stays, and the periods that rolled over during the pause stand."""
    pause, cycle = subscription.pause, subscription.cycle
    if pause is None or not pause.restart_period or cycle is None:
        return {}
    return {"cycle_anchor": at, "current_period": cycle.period_containing(at, at)}


def pending_fields(subscription: Subscription, at: datetime) -> tuple[Event, dict[str, Any]]:
    """The event and fields of the subscription's pending change taking effect at ``at``
    (the same fields a change made by hand at ``at`` sets). A pause the status does not
    allow is dropped, with the reason in ``"failure"``."""
    pending = subscription.scheduled
    assert pending is not None
    if pending.kind is PendingKind.PAUSE:
        if not _allowed(subscription, Event.PAUSE):
            why = f"a {subscription.status.value} subscription cannot be paused"
            return Event.APPLY_PENDING_CHANGE, {"scheduled": None, "failure": why}
        pause = Pause(
            at, pending.resume_at, pending.restart_period, pending.requested_by, pending.reason
        )
        return Event.PAUSE, {"scheduled": None, "pause": pause}
    changes: dict[str, Any] = {"scheduled": None}
    if pending.plan_key is not None:
        changes.update(plan_key=pending.plan_key, plan_version=pending.plan_version)
        period = subscription.current_period
        if pending.cycle is not None and pending.cycle != subscription.cycle and period:
            changes.update(cycle=pending.cycle, cycle_anchor=period.end)
    if pending.seats is not None:
        changes["seats"] = pending.seats
    if pending.addons is not None:
        changes["addons"] = pending.addons
    return Event.APPLY_PENDING_CHANGE, changes


def _step_changes(
    subscription: Subscription, event: Event, at: datetime, now: datetime, *, jump: bool
) -> dict[str, Any]:
    """The fields an event time caused changes besides the status."""
    if event is Event.UNPAUSE:
        return unpause_fields(subscription, at)
    if event is Event.RENEW_PERIOD:
        return {"current_period": _renewed_period(subscription, now, jump=jump)}
    if event is Event.CHANGE_ADDONS:
        return {
            "addons": tuple(a for a in subscription.addons if a.ends_at is None or a.ends_at > at)
        }
    return {}


_Advanced = tuple[Subscription, list[DueChange]]
_SHARED: ContextVar[dict[tuple[Any, ...], tuple[Subscription, _Advanced]] | None] = ContextVar(
    "entitlements_shared_terms", default=None
)


@contextmanager
def shared_terms() -> Iterator[None]:
    """Inside the block, `advance` works out each set of terms once: a subscription on the
    same `TERMS` as one advanced before (to the same instant, the same way) gets that
    result as its own (`as_one_of`) — what the rules give it too, as they read only its
    terms. For a job bringing many subscriptions to one instant (the sweep's groups),
    where many renew on the same plan and anchor."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _terms_key(subscription: Subscription, now: datetime, jump: bool) -> tuple[Any, ...] | None:
    key = (now, jump, *(getattr(subscription, name) for name in TERMS))
    try:
        hash(key)
    except TypeError:  # a term holding a mutable value is not shared
        return None
    return key


def _as_one_of(
    done: _Advanced, first: Subscription, subscription: Subscription, *, steps: bool
) -> _Advanced:
    """``done`` (``first`` advanced) as ``subscription``'s own result (only the state,
    without ``steps``)."""
    mine = {id(first): subscription}

    def own(state: Subscription) -> Subscription:
        found = mine.get(id(state))
        if found is None:
            found = mine[id(state)] = as_one_of(state, subscription)
        return found

    if not steps:
        return own(done[0]), []
    return own(done[0]), [
        DueChange(s.event, s.at, own(s.before), own(s.after), s.failure, s.request) for s in done[1]
    ]


def advance(
    subscription: Subscription, now: datetime, *, jump: bool = False
) -> tuple[Subscription, list[DueChange]]:
    """Apply every change due at or before ``now``; returns the new state and the steps
    (one renewal per elapsed period, each an event a host may bill; ``jump`` folds them
    into one, for readers that only need the state)."""
    return _shared_advance(subscription, utc(now, "now"), jump, steps=True)


def _shared_advance(
    subscription: Subscription, now: datetime, jump: bool, *, steps: bool
) -> _Advanced:
    """`advance`, taken from the result for the same terms inside `shared_terms`."""
    shared = _SHARED.get()
    key = None if shared is None else _terms_key(subscription, now, jump)
    if shared is None or key is None:
        return _advance(subscription, now, jump)
    found = shared.get(key)
    if found is None:
        done = _advance(subscription, now, jump)
        shared[key] = (subscription, done)
        return done[0], list(done[1])
    return _as_one_of(found[1], found[0], subscription, steps=steps)


def _advance(subscription: Subscription, now: datetime, jump: bool) -> _Advanced:
    steps: list[DueChange] = []
    current = subscription
    for _ in range(MAX_STEPS):
        due = next_due(current, now)
        if due is None:
            break
        event, at = due
        if event is Event.END_TRIAL and current.status is _S.SUSPENDED:
            event = Event.EXPIRE  # the trial ran out while suspended: it ends all the same
        request = current.scheduled if event is Event.APPLY_PENDING_CHANGE else None
        if request is not None:
            event, changes = pending_fields(current, at)
        else:
            changes = _step_changes(current, event, at, now, jump=jump)
        failure = changes.pop("failure", None)
        after = transition(current, event, at, **changes)
        steps.append(DueChange(event, at, current, after, failure, request))
        current = after
    return current, steps


def as_of(subscription: Subscription, now: datetime) -> Subscription:
    """The subscription as time has made it by ``now`` (what resolution reads)."""
    now = utc(now, "now")
    if _SHARED.get() is None and next_due(subscription, now) is None:
        return subscription  # (shared steps answer that as cheaply)
    return _shared_advance(subscription, now, True, steps=False)[0]


_BY_TIME = (
    Event.EXPIRE,
    Event.FAIL,
    Event.CANCEL,
    Event.END_TRIAL,
    Event.PAUSE,
    Event.UNPAUSE,
    Event.MARK_PAST_DUE,
)


def could_read_as(wanted: frozenset[str]) -> frozenset[str]:
    """The stored statuses a subscription may have while time has already made it one of
    ``wanted`` (a stored ``trialing`` row whose trial ended reads ``expired``), for
    queries that filter stored rows and then read them as of now."""
    found = set(wanted)
    while True:
        more = {
            source
            for event in _BY_TIME
            if RULES[event].target in found
            for source in RULES[event].sources
            if source not in found
        }
        if not more:
            return frozenset(found)
        found |= more
