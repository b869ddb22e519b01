"""Persisting what time made due: one function for the sweep and for every write that
finds a subscription time has already changed.

Answers never wait for it (resolution applies the same steps to what it reads); it is
what puts the steps on record — stored state and an audit event per step, dated when it
fell due — so a write acts on the subscription as it stands now, not as it was stored.
"""

from __future__ import annotations

from entitlements.domain.actor import Actor
from entitlements.domain.due import DueChange, advance
from entitlements.domain.subscription import Subscription
from entitlements.service.runtime import Transaction

__all__ = ["SWEEPER", "bring_to_now"]

SWEEPER = Actor.system("sweep")


def bring_to_now(
    tx: Transaction, subscription: Subscription
) -> tuple[Subscription, list[DueChange]]:
    """Store and audit the steps time made due for ``subscription`` by ``tx.now``."""
    after, steps = advance(subscription, tx.now)
    if not steps:
        return subscription, []
    stored = tx.uow.subscriptions.update(after)
    for step in steps:
        tx.record(
            SWEEPER,
            f"subscription.{step.event.value}",
            f"subscription:{subscription.id}",
            owner=subscription.owner,
            before=step.before,
            after=step.after,
            reason=f"due at {step.at.isoformat()}",
        )
    return stored, steps
