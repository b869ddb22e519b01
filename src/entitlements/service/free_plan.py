"""Seed 004's one free plan per tenant, held by the database on every path.

A count of the tenant's owners on free plans cannot decide alone: two assignments can
both count zero and both commit. So the check first takes the tenant's lock for the
rule (`RevisionRepository.lock_rule`, a row lock held until the unit of work ends) and
counts afterwards: the second assignment waits for the first to commit and then counts
it. Every path that puts an owner on a plan calls `OneFreePlan.check` after taking the
owner's terms lock (owner, then tenant: one lock order everywhere).
"""

from __future__ import annotations

import attrs

from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.errors import FreePlanTaken
from entitlements.service.runtime import Transaction

__all__ = ["FREE_PLAN_RULE", "OneFreePlan"]

FREE_PLAN_RULE = "one-free-plan"


@attrs.frozen
class OneFreePlan:
    """Off unless the host turns it on (``Entitlements(one_free_plan_per_tenant=True)``)."""

    enabled: bool = False

    def check(self, tx: Transaction, owner: Owner, plan: Plan) -> None:
        """Refuse with `FreePlanTaken` if ``plan`` is free and another owner of the
        tenant holds a live subscription on a free plan."""
        if not self.enabled or not plan.is_free:
            return
        tx.uow.revisions.lock_rule(FREE_PLAN_RULE)
        free = [p.key for p in tx.uow.plans.list() if p.is_free]
        if tx.uow.subscriptions.count_on_plans(free, exclude_owner=owner) > 0:
            raise FreePlanTaken(owner)
