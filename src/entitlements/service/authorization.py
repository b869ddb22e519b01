"""Who may change what. The library asks an `Authorizer` before every mutation; the host
supplies one that knows its roles, or composes the shipped rule sets.

- `AllowAll`: for hosts that authorise before calling the library (and quick starts).
- `PermissionRules` (seed 002): mutations need the ``subscriptions.manage`` permission;
  reading follows read access to the owner, which the host decides (``can_read``).
- `PlanManagerRules` (seed 003): only the member who subscribed to a paid plan — its
  plan manager — may change or cancel it.
- `AllRules`: every rule set must agree.

Denials raise `NotAuthorized` and are audited (``authorization.denied``). The
`Authorizer` protocol itself is a port (`entitlements.ports.Authorizer`), re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from entitlements.domain.actor import Actor, ActorKind
from entitlements.domain.owner import Owner
from entitlements.errors import NotAuthorized
from entitlements.ports import Authorizer

__all__ = ["AllRules", "AllowAll", "Authorizer", "PermissionRules", "PlanManagerRules"]


class AllowAll:
    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        return None


TRUSTED = frozenset({ActorKind.SYSTEM, ActorKind.PROVIDER})


class PermissionRules:
    """Seed 002: ``subscriptions.manage`` for every mutation (the sweep and the payment
    provider act on their own authority); reading (``*.read`` actions) when ``can_read``
    says the actor may read the owner."""

    def __init__(
        self,
        permission: str = "subscriptions.manage",
        can_read: Callable[[Actor, Owner | None], bool] | None = None,
    ) -> None:
        self.permission = permission
        self.can_read = can_read

    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        if action.endswith(".read"):
            if self.can_read is not None and not self.can_read(actor, owner):
                raise NotAuthorized(str(actor), action, f"no read access to {owner}")
            return
        if actor.kind in TRUSTED or self.permission in actor.permissions:
            return
        raise NotAuthorized(str(actor), action, f"the {self.permission} permission is required")


class PlanManagerRules:
    """Seed 003: "the user who subscribed to the plan is the only one that can modify it"
    — so that nobody charges someone else's card. Applies to members; staff and the
    provider are not members."""

    MANAGED = frozenset(
        {
            "billing.assign_plan",
            "billing.cancel",
            "subscription.change_plan",
            "subscription.change_seats",
            "subscription.add_addon",
            "subscription.remove_addon",
            "subscription.cancel",
            "subscription.schedule_cancel",
            "subscription.undo_cancel",
            "subscription.schedule_change",
            "subscription.cancel_pending_change",
            "subscription.pause",
            "subscription.unpause",
            "subscription.set_plan_manager",
        }
    )

    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        if actor.kind is not ActorKind.MEMBER or action not in self.MANAGED or owner is None:
            return
        current = uow.subscriptions.current(owner)
        if current is None or current.is_terminal:
            return
        manager = current.plan_manager
        if manager is None or manager == actor.id:
            return
        if uow.plans.get(current.plan_key, current.plan_version).is_free:
            return
        raise NotAuthorized(
            str(actor), action, f"only the plan manager ({manager}) may change this paid plan"
        )


class AllRules:
    def __init__(self, *rules: Authorizer) -> None:
        self.rules = rules

    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        for rule in self.rules:
            rule.authorize(actor, action, owner=owner, subject=subject, uow=uow)
