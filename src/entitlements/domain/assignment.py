"""May this owner be put on this plan now? The rules of the plan and of the owner's
standing, in one place; every entry point that assigns a plan asks here (through
`entitlements.service.assignment`), so a rule added here holds on all of them.

Seed 004: only active plans go to new owners, an owner keeps an archived plan it holds,
drafts and retired plans are never assigned, a plan may be for some kinds of owner only;
an owner on hold (past due) may not change its own plan until billing is resolved —
staff may. The one-free-plan-per-tenant rule needs the database and lives beside this
in the service layer; so does the over-quota policy, which needs current usage.
"""

from __future__ import annotations

from entitlements.domain.actor import Actor, ActorKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import BillingActionRequired

__all__ = ["ON_HOLD", "check_may_assign"]

ON_HOLD = frozenset({SubscriptionStatus.PAST_DUE})
"""Statuses in which the owner's own plan changes wait for billing (seed 004's on hold)."""


def check_may_assign(
    plan: Plan, owner: Owner, live: Subscription | None, actor: Actor | None = None
) -> None:
    """Refuse (`PlanNotAssignable`, `BillingActionRequired`) putting ``owner`` on ``plan``
    when ``live`` is what it holds now (``None``: nothing live) and ``actor`` asks."""
    plan.check_assignable(owner.kind, already_held=live is not None and live.plan_key == plan.key)
    if (
        live is not None
        and live.status in ON_HOLD
        and actor is not None
        and actor.kind is ActorKind.MEMBER
    ):
        raise BillingActionRequired(owner, live.status.value)
