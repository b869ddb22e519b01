"""Subscriptions as time has made them: the one door every read goes through
(`read_current`, `read_history`), and the one function that persists what time made due,
for the sweep and for every write that finds a subscription time has already changed.

Answers never wait for it (resolution applies the same steps to what it reads); it is
what puts the steps on record — stored state and an audit event per step, dated when it
fell due — so a write acts on the subscription as it stands now, not as it was stored.
The steps themselves are the lifecycle kernel's (`entitlements.domain.lifecycle.catch_up`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.due import DueChange, as_of
from entitlements.domain.lifecycle import Fact, catch_up, drop_pending, pending_effects
from entitlements.domain.owner import Owner
from entitlements.domain.plan_change import lowers_a_limit, may_lower_a_limit, over_quota
from entitlements.domain.scheduled import PendingKind
from entitlements.domain.subscription import Subscription
from entitlements.ports import UnitOfWork
from entitlements.service.notifications import notify_subscription
from entitlements.service.runtime import Transaction
from entitlements.service.snapshots import (
    current_usage,
    in_force,
    pending_plan_refusal,
    resolve_with,
)

__all__ = ["SWEEPER", "bring_to_now", "read_current", "read_history"]

SWEEPER = Actor.system("sweep")


def read_current(uow: UnitOfWork, owner: Owner, now: datetime) -> Subscription | None:
    """The owner's most recent subscription as time has made it by ``now`` (a trial past
    its end reads expired, a period past its end rolled over), whether or not the sweep
    stored that yet; ``None`` when it never had one. Every read of a subscription —
    ``subscriptions.get``, billing's state and guards, the CLI and the console, which call
    those — goes through here, so no two reads disagree about what time did."""
    found = uow.subscriptions.current(owner)
    return None if found is None else in_force(uow, found, now)


def read_history(uow: UnitOfWork, owner: Owner, now: datetime) -> Sequence[Subscription]:
    """Every subscription the owner had, oldest first, each as time has made it by ``now``
    (`read_current` for each)."""
    return [in_force(uow, subscription, now) for subscription in uow.subscriptions.history(owner)]


def refusal_at_instant(tx: Transaction, subscription: Subscription) -> str | None:
    """Why the subscription's pending change, due by ``tx.now``, cannot apply at its
    instant: the lifecycle rules run again then — the plan must still be assignable (not
    archived for an owner that does not hold it, not retired, still existing), and a
    change scheduled with ``if_over_quota="refuse"`` must not put usage (as stored now)
    over a lowered limit. ``None``: it applies."""
    pending = subscription.scheduled
    if pending is None or pending.kind is not PendingKind.CHANGE or pending.at > tx.now:
        return None
    held = as_of(attrs.evolve(subscription, scheduled=None), pending.at)
    if held.is_terminal:
        return None  # ended first: the ending clears it, audited as such
    refused = pending_plan_refusal(tx.uow, subscription, tx.now)
    if refused is not None or pending.if_over_quota != "refuse":
        return refused
    return _over_quota_refusal(tx, held, as_of(subscription, pending.at), pending.at)


def _over_quota_refusal(
    tx: Transaction, held: Subscription, will: Subscription, at: datetime
) -> str | None:
    """Why moving from ``held`` to ``will`` at ``at`` puts usage (as stored now) over a
    limit the move lowers; the owner is resolved (twice) only when a limit can come
    down."""
    plans = tx.uow.plans
    if not may_lower_a_limit(
        held,
        plans.get(held.plan_key, held.plan_version),
        will,
        plans.get(will.plan_key, will.plan_version),
    ):
        return None
    policy = tx.runtime.policy
    was = resolve_with(tx.uow, held.owner, held, at, policy)
    then = resolve_with(tx.uow, held.owner, will, at, policy)
    if not lowers_a_limit(was, then):
        return None
    found = over_quota(was, then, current_usage(tx.uow, was))
    if not found:
        return None
    words = ", ".join(f"{o.metric} {o.used} > {o.limit}" for o in found)
    return f"usage over the new limits: {words}"


def bring_to_now(
    tx: Transaction, subscription: Subscription
) -> tuple[Subscription, list[DueChange]]:
    """Store and audit the steps time made due for ``subscription`` by ``tx.now``; a
    pending change the rules refuse at its instant is dropped first, audited as failed.
    """
    refusal = refusal_at_instant(tx, subscription)
    dropped: list[DueChange] = []
    if refusal is not None:
        drop = drop_pending(subscription, refusal, actor=SWEEPER)
        subscription = _store(tx, subscription, drop.after, drop.facts)
        dropped = list(drop.due)
    step = catch_up(subscription, tx.now, actor=SWEEPER)
    if not step.due:
        return subscription, dropped
    stored = _store(tx, subscription, step.after, step.facts)
    effects = pending_effects(step.due)
    if effects:
        # the outbox (and billing) loads only for a host whose provider bills a change
        from entitlements.service.provider_outbox import queue

        for effect in effects:
            queue(tx, effect.kind, stored.owner, effect.payload, subscription_id=stored.id)
    if tx.runtime.periods_ended is not None:
        tx.runtime.periods_ended(tx, step.due)
    return stored, dropped + list(step.due)


def _store(
    tx: Transaction, subscription: Subscription, after: Subscription, facts: Sequence[Fact]
) -> Subscription:
    stored = tx.uow.subscriptions.update(after)
    for fact in facts:
        event = tx.record(
            fact.actor,
            fact.action,
            f"subscription:{subscription.id}",
            owner=subscription.owner,
            before=fact.before,
            after=fact.after,
            reason=fact.reason,
        )
        notify_subscription(tx, fact.action, fact.before, fact.after, event.id, fact.reason)
    return stored
