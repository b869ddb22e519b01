"""The lifecycle kernel: what one change does to a subscription.

Every entry point that changes a subscription — ``ents.subscriptions``, billing (plan
assignment and the payment provider's events), conversion from a signed contract and the
sweep — hands the kernel the subscription as it stands, the change asked for and ``now``,
and gets back a `Step`: the new state and the audit facts to record. Provider-bound
effects are values too (`ProviderEffect`), decided here from the same inputs. The kernel
reads nothing and writes nothing: the caller's unit of work stores the new state, appends
the facts to the audit trail (which is what listeners are notified of, and what moves the
owner's change-feed revision) and queues the effects, so every entry point composes the
same functions inside its own transaction instead of calling another entry point.

The rules themselves stay where a newcomer looks for them: the transition table and its
bookkeeping in `entitlements.domain.subscription`, what time makes due in
`entitlements.domain.due`, the provider's paths through the table in
`entitlements.domain.billing`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.billing import ProviderSubscription, path_to
from entitlements.domain.due import DueChange, advance, as_of, unpause_fields
from entitlements.domain.owner import Owner
from entitlements.domain.provider_commands import CommandKind
from entitlements.domain.scheduled import Pause, PendingChange, PendingKind
from entitlements.domain.subscription import (
    Event,
    Subscription,
    SubscriptionStatus,
    check_allowed,
    create,
    transition,
    with_changes,
)
from entitlements.errors import ChangePending, InvalidInput

__all__ = [
    "Fact",
    "ProviderEffect",
    "Route",
    "Step",
    "begin",
    "cancel_pending",
    "catch_up",
    "change",
    "pause",
    "provider_path",
    "provider_start",
    "route",
    "schedule",
    "unpause",
]

_S = SubscriptionStatus


@attrs.frozen
class Fact:
    """One audit fact a step produces: who did what to the subscription, and why."""

    actor: Actor
    """Who acted (the sweep, for what time made due)."""
    action: str
    """The audited action, ``subscription.<event or use case>``."""
    before: Subscription | None
    """The subscription before (``None`` when the step started it)."""
    after: Subscription
    """The subscription after."""
    reason: str | None = None
    """Why, as the caller (or time) said it."""

    @property
    def target(self) -> str:
        """What the audit trail names as changed."""
        return f"subscription:{self.after.id}"


@attrs.frozen
class Step:
    """What one change does: the subscription before and after, and the facts to audit
    (more than one when time made changes due on the way)."""

    before: Subscription | None
    """The subscription as it stood (``None`` for a start)."""
    after: Subscription
    """The new state, to store."""
    facts: tuple[Fact, ...]
    """The audit facts, oldest first."""
    due: tuple[DueChange, ...] = ()
    """The changes time made due, when the step is a catch-up."""


def begin(
    event: Event,
    *,
    id: str,
    owner: Owner,
    plan_key: str,
    plan_version: int,
    now: datetime,
    current: Subscription | None,
    actor: Actor,
    reason: str | None = None,
    **fields: Any,
) -> Step:
    """Start a subscription (trial, subscription or checkout) for an owner with none live
    (``current`` is its last one, ended, or ``None``)."""
    started = create(
        event,
        id=id,
        owner=owner,
        plan_key=plan_key,
        plan_version=plan_version,
        now=now,
        current=current,
        **fields,
    )
    return Step(None, started, (Fact(actor, f"subscription.{event.value}", None, started, reason),))


def change(
    current: Subscription,
    event: Event,
    now: datetime,
    fields: Mapping[str, Any],
    *,
    actor: Actor,
    action: str | None = None,
    reason: str | None = None,
) -> Step:
    """Apply ``event`` with its own field updates; ``action`` names the use case in the
    audit trail when it is not the event (``convert`` for ``activate``). Refuses, with
    `IllegalTransition`, what the table does not allow."""
    check_allowed(current, event)
    after = transition(current, event, now, **fields)
    name = f"subscription.{action or event.value}"
    facts = (Fact(actor, name, current, after, reason), *_cleared(current, after, actor, name))
    return Step(current, after, facts)


_OWN_PENDING = frozenset(
    f"subscription.{e.value}"
    for e in (Event.SCHEDULE_CHANGE, Event.CANCEL_PENDING_CHANGE, Event.APPLY_PENDING_CHANGE)
)


def _cleared(before: Subscription, after: Subscription, actor: Actor, by: str) -> tuple[Fact, ...]:
    """The rule for pending changes other changes meet: ending the subscription (cancel,
    expire, a failed checkout), and converting it (a new paid period on new terms) or a
    provider's plan change, clear it; every other change keeps it. A clearing is audited
    as a fact of its own, naming what cleared it."""
    pending = before.scheduled
    if pending is None or after.scheduled is not None or by in _OWN_PENDING:
        return ()
    why = f"{pending.describe()} cleared by {by.removeprefix('subscription.')}"
    return (Fact(actor, "subscription.pending_change_cleared", before, after, why),)


def _request_words(request: PendingChange) -> str:
    """The request an outcome refers to."""
    asked = "" if request.requested_at is None else f" at {request.requested_at.isoformat()}"
    who = "" if request.requested_by is None else f" by {request.requested_by}"
    revision = request.request_revision
    against = "" if revision is None else f" against revision {revision}"
    return f"{request.describe()}, requested{who}{asked}{against}"


def _due_fact(step: DueChange, actor: Actor) -> tuple[Fact, ...]:
    """The audit facts of one step time made due: a pending change that reached its
    instant is ``pending_change_applied`` or ``pending_change_failed`` (with the reason),
    naming the request; anything else is the event itself, dated when it fell due."""
    if step.request is not None:
        outcome = "failed" if step.failure else "applied"
        words = _request_words(step.request)
        reason = f"{words}; {step.failure}" if step.failure else words
        action = f"subscription.pending_change_{outcome}"
        return (Fact(actor, action, step.before, step.after, reason),)
    action = f"subscription.{step.event.value}"
    facts = (Fact(actor, action, step.before, step.after, f"due at {step.at.isoformat()}"),)
    return facts + _cleared(step.before, step.after, actor, action)


def catch_up(current: Subscription, now: datetime, *, actor: Actor) -> Step:
    """The changes time made due by ``now`` (a trial end, a renewal, a pending change
    reaching its instant...), each audited as done by ``actor`` and dated when it fell
    due."""
    after, steps = advance(current, now)
    facts = tuple(fact for step in steps for fact in _due_fact(step, actor))
    return Step(current, after, facts, tuple(steps))


def drop_pending(current: Subscription, failure: str, *, actor: Actor) -> Step:
    """A pending change that the rules refuse at its instant (its plan archived meanwhile,
    usage over a lowered limit under ``refuse``): dropped, audited as failed with the
    reason, the subscription otherwise as it was."""
    request = current.scheduled
    assert request is not None
    after = transition(current, Event.APPLY_PENDING_CHANGE, request.at, scheduled=None)
    step = DueChange(Event.APPLY_PENDING_CHANGE, request.at, current, after, failure, request)
    return Step(current, after, _due_fact(step, actor), (step,))


# -- scheduling ---------------------------------------------------------------------------


def _in_force_anyway(current: Subscription, wanted: PendingChange) -> bool:
    """Whether the terms ``wanted`` asks for are those that will be in force at its
    instant without it."""
    then = as_of(with_changes(current, scheduled=None, cancel_at_period_end=False), wanted.at)
    return (
        (
            wanted.plan_key is None
            or (then.plan_key, then.plan_version)
            == (
                wanted.plan_key,
                wanted.plan_version,
            )
        )
        and (wanted.seats is None or then.seats == wanted.seats)
        and (wanted.addons is None or then.addons == wanted.addons)
    )


def _refuse_conflicts(current: Subscription, wanted: PendingChange, replace: bool) -> None:
    """One pending change per subscription (unless ``replace``), and none dated inside a
    pause: `ChangePending` names the other."""
    existing = current.pending_change
    if existing is not None and not replace:
        raise ChangePending(current.owner, existing.describe(), wanted.describe())
    pause = current.pause
    if pause is None:
        return
    if wanted.kind is PendingKind.PAUSE or pause.until is None or wanted.at < pause.until:
        raise ChangePending(current.owner, pause.describe(), wanted.describe())


def schedule(
    current: Subscription,
    wanted: PendingChange,
    now: datetime,
    *,
    actor: Actor,
    replace: bool = False,
) -> Step:
    """Record ``wanted`` to take effect at its instant: refused while another change is
    pending (unless ``replace``) or when it falls inside a pause; a change to what will
    be in force anyway clears the pending one instead. Nothing in force changes now."""
    check_allowed(current, Event.SCHEDULE_CHANGE)
    if wanted.at <= now:
        raise InvalidInput("at", "must be after now (a change for now is made directly)")
    _refuse_conflicts(current, wanted, replace)
    kept: PendingChange | None = wanted
    if wanted.kind is PendingKind.CHANGE and _in_force_anyway(current, wanted):
        kept = None
    fields = {"scheduled": kept, "cancel_at_period_end": False}
    return change(current, Event.SCHEDULE_CHANGE, now, fields, actor=actor, reason=wanted.reason)


def cancel_pending(
    current: Subscription, now: datetime, *, actor: Actor, reason: str | None = None
) -> Step:
    """Drop the pending change (a cancellation at period end is undone): the future goes,
    nothing that was in force changes."""
    pending = current.pending_change
    if pending is None:
        raise InvalidInput("pending_change", f"{current.owner} has no pending change")
    if pending.kind is PendingKind.CANCEL:
        return change(
            current,
            Event.UNDO_CANCEL,
            now,
            {},
            actor=actor,
            action="cancel_pending_change",
            reason=reason,
        )
    return change(
        current, Event.CANCEL_PENDING_CHANGE, now, {"scheduled": None}, actor=actor, reason=reason
    )


def pause(current: Subscription, now: datetime, wanted: PendingChange, *, actor: Actor) -> Step:
    """Pause now (``wanted.at`` not after ``now``) or record the pause for its instant;
    either way refused while another change is pending, naming it."""
    if wanted.resume_at is not None and wanted.resume_at <= max(wanted.at, now):
        raise InvalidInput("resume_at", "must be after the pause begins", wanted.resume_at)
    if wanted.at > now:
        return schedule(current, wanted, now, actor=actor)
    check_allowed(current, Event.PAUSE)
    _refuse_conflicts(current, wanted, replace=False)
    began = Pause(now, wanted.resume_at, wanted.restart_period, wanted.requested_by, wanted.reason)
    return change(current, Event.PAUSE, now, {"pause": began}, actor=actor, reason=wanted.reason)


def unpause(
    current: Subscription,
    now: datetime,
    at: datetime | None,
    *,
    actor: Actor,
    reason: str | None = None,
) -> Step:
    """End a pause now, or set the date it ends (``at``); for a pause still to begin, drop
    it (no ``at``) or set its end."""
    pending = current.scheduled
    moved: dict[str, Any]
    if current.pause is None and pending is not None and pending.kind is PendingKind.PAUSE:
        if at is None:
            return cancel_pending(current, now, actor=actor, reason=reason)
        if at <= pending.at:
            raise InvalidInput("at", "must be after the pause begins", at)
        moved = {"scheduled": attrs.evolve(pending, resume_at=at)}
    else:
        check_allowed(current, Event.UNPAUSE)
        if at is None or at <= now:
            fields = unpause_fields(current, now)
            return change(current, Event.UNPAUSE, now, fields, actor=actor, reason=reason)
        if pending is not None and pending.at < at:
            raise ChangePending(current.owner, pending.describe(), f"a pause until {at:%Y-%m-%d}")
        assert current.pause is not None
        moved = {"pause": attrs.evolve(current.pause, until=at)}
    return change(
        current, Event.SCHEDULE_CHANGE, now, moved, actor=actor, action="unpause", reason=reason
    )


# -- following the payment provider ---------------------------------------------------------


def provider_start(state: ProviderSubscription) -> Event | None:
    """How an owner with no live subscription starts following the provider's: a
    checkout while the provider waits for payment, a subscription once it is paid (or
    overdue); nothing for a subscription the provider already ended."""
    if state.status is _S.PENDING:
        return Event.BEGIN_CHECKOUT
    if state.status in (_S.ACTIVE, _S.PAST_DUE):
        return Event.SUBSCRIBE
    return None


def provider_path(current: SubscriptionStatus, wanted: SubscriptionStatus) -> list[Event]:
    """The lifecycle events that take our status to the provider's. A pending checkout the
    provider reports canceled was paid for first, then canceled."""
    if current is _S.PENDING and wanted is _S.CANCELED:
        return [Event.ACTIVATE, Event.CANCEL]
    return path_to(current, wanted) or []


def follows_plan(current: Subscription, state: ProviderSubscription) -> bool:
    """Whether the provider's plan must be applied as a plan change first: only a live
    subscription changes plans (a pending one takes the plan when it is activated)."""
    live = current.status not in (_S.PENDING, _S.FAILED)
    return live and current.plan_key != state.plan_key


# -- plan assignment through the provider ---------------------------------------------------


class Route(enum.Enum):
    """Which way ``billing.assign_plan`` goes, from the plan, the owner's live subscription
    and whether a provider is configured."""

    FREE = "free"
    """A free plan, assigned directly."""
    FREE_AFTER_PROVIDER_CANCEL = "free_after_provider_cancel"
    """A free plan; the paid provider subscription is canceled first, here and there."""
    DIRECT = "direct"
    """A paid plan assigned by staff (no provider)."""
    PROVIDER_CHANGE = "provider_change"
    """A plan change of an active paid provider subscription."""
    CHECKOUT = "checkout"
    """A checkout at the provider."""


def route(
    *, plan_is_free: bool, has_provider: bool, live: Subscription | None, live_is_paid: bool
) -> Route:
    """Seed 004's rules for where an assignment goes (see `Route`)."""
    at_provider = live is not None and bool(live.external_id) and live_is_paid
    if plan_is_free:
        return Route.FREE_AFTER_PROVIDER_CANCEL if at_provider and has_provider else Route.FREE
    if not has_provider:
        return Route.DIRECT
    if at_provider and live is not None and live.status is _S.ACTIVE:
        return Route.PROVIDER_CHANGE
    return Route.CHECKOUT


@attrs.frozen
class ProviderEffect:
    """A command the payment provider must carry out once the unit of work commits."""

    kind: CommandKind
    """What the provider is asked to do."""
    payload: Mapping[str, Any]
    """Its arguments."""

    @classmethod
    def cancel(cls, external_id: str, *, at_period_end: bool) -> ProviderEffect:
        """Cancel the provider subscription, now or at its period end."""
        return cls(CommandKind.CANCEL, {"external_id": external_id, "at_period_end": at_period_end})

    @classmethod
    def change_plan(
        cls, external_id: str, plan_key: str, plan_version: int, seats: int | None
    ) -> ProviderEffect:
        """Move the provider subscription to another plan."""
        return cls(
            CommandKind.CHANGE_PLAN,
            {
                "external_id": external_id,
                "plan_key": plan_key,
                "plan_version": plan_version,
                "seats": seats,
            },
        )

    @classmethod
    def checkout(
        cls, plan_key: str, plan_version: int, seats: int | None, manager: str | None
    ) -> ProviderEffect:
        """Open a checkout for the plan."""
        return cls(
            CommandKind.START_CHECKOUT,
            {
                "plan_key": plan_key,
                "plan_version": plan_version,
                "seats": seats,
                "manager": manager,
            },
        )


def pending_effects(steps: tuple[DueChange, ...]) -> tuple[ProviderEffect, ...]:
    """What the payment provider must do for the pending changes among ``steps`` that
    applied: a subscription the provider bills (it has the provider's id) moves there
    to the plan and seats now in force, through the outbox, when the change applies —
    the provider is not asked to schedule it, so canceling the pending change never
    needs the provider."""
    effects = []
    for step in steps:
        after = step.after
        if step.request is None or step.failure or after.external_id is None:
            continue
        before = step.before
        if (after.plan_key, after.plan_version, after.seats) == (
            before.plan_key,
            before.plan_version,
            before.seats,
        ):
            continue
        effects.append(
            ProviderEffect.change_plan(
                after.external_id, after.plan_key, after.plan_version, after.seats
            )
        )
    return tuple(effects)
