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

from entitlements.domain.actor import Actor
from entitlements.domain.due import DueChange, as_of
from entitlements.domain.lifecycle import catch_up
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import Subscription
from entitlements.ports import UnitOfWork
from entitlements.service.notifications import notify_subscription
from entitlements.service.runtime import Transaction

__all__ = ["SWEEPER", "bring_to_now", "read_current", "read_history"]

SWEEPER = Actor.system("sweep")


def read_current(uow: UnitOfWork, owner: Owner, now: datetime) -> Subscription | None:
    """The owner's most recent subscription as time has made it by ``now`` (a trial past
    its end reads expired, a period past its end rolled over), whether or not the sweep
    stored that yet; ``None`` when it never had one. Every read of a subscription —
    ``subscriptions.get``, billing's state and guards, the CLI and the console, which call
    those — goes through here, so no two reads disagree about what time did."""
    found = uow.subscriptions.current(owner)
    return None if found is None else as_of(found, now)


def read_history(uow: UnitOfWork, owner: Owner, now: datetime) -> Sequence[Subscription]:
    """Every subscription the owner had, oldest first, each as time has made it by ``now``
    (`read_current` for each)."""
    return [as_of(subscription, now) for subscription in uow.subscriptions.history(owner)]


def bring_to_now(
    tx: Transaction, subscription: Subscription
) -> tuple[Subscription, list[DueChange]]:
    """Store and audit the steps time made due for ``subscription`` by ``tx.now``."""
    step = catch_up(subscription, tx.now, actor=SWEEPER)
    if not step.due:
        return subscription, []
    stored = tx.uow.subscriptions.update(step.after)
    for fact in step.facts:
        event = tx.record(
            fact.actor,
            fact.action,
            f"subscription:{subscription.id}",
            owner=subscription.owner,
            before=fact.before,
            after=fact.after,
            reason=fact.reason,
        )
        notify_subscription(tx, fact.action, fact.before, fact.after, event.id)
    return stored, list(step.due)
