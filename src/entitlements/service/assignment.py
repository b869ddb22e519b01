"""The one check every path runs before it puts an owner on a plan: the domain's rules
(`entitlements.domain.assignment`) and, for free plans, the tenant rule the database
holds (`OneFreePlan`). Subscribe, trial, conversion, plan change, billing assignment,
conversion from a contract and provider-driven changes all call `PlanAssignment.check`
after taking the owner's terms lock (owner, then tenant: one lock order everywhere)."""

from __future__ import annotations

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.assignment import check_may_assign
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.subscription import Subscription
from entitlements.service.free_plan import OneFreePlan
from entitlements.service.runtime import Transaction

__all__ = ["PlanAssignment", "live"]


def live(subscription: Subscription | None) -> Subscription | None:
    return subscription if subscription is not None and not subscription.is_terminal else None


@attrs.frozen
class PlanAssignment:
    free_plan: OneFreePlan = attrs.field(factory=OneFreePlan)

    def check(
        self,
        tx: Transaction,
        owner: Owner,
        plan: Plan,
        current: Subscription | None,
        actor: Actor | None = None,
    ) -> None:
        check_may_assign(plan, owner, live(current), actor)
        self.free_plan.check(tx, owner, plan)
