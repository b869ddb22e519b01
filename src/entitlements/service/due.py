"""Persisting what time made due: one function for the sweep and for every write that
finds a subscription time has already changed.

Answers never wait for it (resolution applies the same steps to what it reads); it is
what puts the steps on record — stored state and an audit event per step, dated when it
fell due — so a write acts on the subscription as it stands now, not as it was stored.
The steps themselves are the lifecycle kernel's (`entitlements.domain.lifecycle.catch_up`).
"""

from __future__ import annotations

from entitlements.domain.actor import Actor
from entitlements.domain.due import DueChange
from entitlements.domain.lifecycle import catch_up
from entitlements.domain.subscription import Subscription
from entitlements.service.runtime import Transaction

__all__ = ["SWEEPER", "bring_to_now"]

SWEEPER = Actor.system("sweep")


def bring_to_now(
    tx: Transaction, subscription: Subscription
) -> tuple[Subscription, list[DueChange]]:
    """Store and audit the steps time made due for ``subscription`` by ``tx.now``."""
    step = catch_up(subscription, tx.now, actor=SWEEPER)
    if not step.due:
        return subscription, []
    stored = tx.uow.subscriptions.update(step.after)
    for fact in step.facts:
        tx.record(
            fact.actor,
            fact.action,
            f"subscription:{subscription.id}",
            owner=subscription.owner,
            before=fact.before,
            after=fact.after,
            reason=fact.reason,
        )
    return stored, list(step.due)
