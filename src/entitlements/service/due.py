"""Subscriptions as time has made them: the one door every read goes through
(`read_current`, `read_history`), and the one function that persists what time made due,
for the sweep and for every write that finds a subscription time has already changed.

Answers never wait for it (resolution applies the same steps to what it reads); it is
what puts the steps on record — stored state and an audit event per step, dated when it
fell due — so a write acts on the subscription as it stands now, not as it was stored.
The steps themselves are the lifecycle kernel's (`entitlements.domain.lifecycle.catch_up`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from entitlements.domain.access import AccessPolicy
from entitlements.domain.actor import Actor
from entitlements.domain.due import DueChange
from entitlements.domain.lifecycle import Fact, catch_up, drop_pending, pending_effects
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import Subscription
from entitlements.ports import UnitOfWork
from entitlements.service.notifications import notify_subscription
from entitlements.service.runtime import Transaction
from entitlements.service.snapshots import in_force, pending_refusal

__all__ = ["SWEEPER", "bring_to_now", "read_current", "read_history", "status_counts"]

SWEEPER = Actor.system("sweep")


def read_current(
    uow: UnitOfWork, owner: Owner, now: datetime, policy: AccessPolicy
) -> Subscription | None:
    """The owner's most recent subscription as time has made it by ``now`` (a trial past
    its end reads expired, a period past its end rolled over), whether or not the sweep
    stored that yet; ``None`` when it never had one. Every read of a subscription —
    ``subscriptions.get``, billing's state and guards, the CLI and the console, which call
    those — goes through here, so no two reads disagree about what time did."""
    found = uow.subscriptions.current(owner)
    return None if found is None else in_force(uow, found, now, policy)


def read_history(
    uow: UnitOfWork, owner: Owner, now: datetime, policy: AccessPolicy
) -> Sequence[Subscription]:
    """Every subscription the owner had, oldest first, each as time has made it by ``now``
    (`read_current` for each)."""
    return [
        in_force(uow, subscription, now, policy)
        for subscription in uow.subscriptions.history(owner)
    ]


def status_counts(uow: UnitOfWork, now: datetime, policy: AccessPolicy) -> Counter[str]:
    """How many owners of the unit of work's tenant are in each status now, each by its
    most recent subscription as `read_current` reads it: the store's counts of stored
    statuses, corrected by the subscriptions time has moved since they were stored."""
    stored, moved = uow.subscriptions.status_counts(now)
    counts = Counter({status: count for status, count in stored.items() if count})
    for subscription in moved:
        counts[subscription.status.value] -= 1
        counts[in_force(uow, subscription, now, policy).status.value] += 1
    return +counts


def bring_to_now(
    tx: Transaction, subscription: Subscription
) -> tuple[Subscription, list[DueChange]]:
    """Store and audit the steps time made due for ``subscription`` by ``tx.now``; a
    pending change the rules refuse at its instant is dropped first, audited as failed.
    Inside `Transaction.states_held` (the sweep's groups), the new state is kept for one
    write with the group's and returned as decided (its revision the one read).
    """
    refusal = pending_refusal(tx.uow, subscription, tx.now, tx.runtime.policy)
    dropped: list[DueChange] = []
    if refusal is not None:
        drop = drop_pending(subscription, refusal, actor=SWEEPER)
        subscription = _store(tx, subscription, drop.after, drop.facts, hold=False)
        dropped = list(drop.due)
    step = catch_up(subscription, tx.now, actor=SWEEPER)
    if not step.due:
        return subscription, dropped
    stored = _store(tx, subscription, step.after, step.facts, hold=True)
    effects = pending_effects(step.due)
    if effects:
        # the outbox (and billing) loads only for a host whose provider bills a change
        from entitlements.service.provider_outbox import queue

        for effect in effects:
            queue(tx, effect.kind, stored.owner, effect.payload, subscription_id=stored.id)
    ended = tx.runtime.periods_ended
    if ended is not None:
        if tx.held_states is None:
            ended(tx, step.due)
        else:  # once the held states are stored: the invoices read them back
            tx.ended.extend(step.due)
    return stored, dropped + list(step.due)


def _store(
    tx: Transaction,
    subscription: Subscription,
    after: Subscription,
    facts: Sequence[Fact],
    *,
    hold: bool,
) -> Subscription:
    if hold and tx.held_states is not None:
        tx.held_states.append(after)
        stored = after
    else:
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
