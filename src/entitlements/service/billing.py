"""Plan assignment through a payment provider (seeds 003 and 004), provider events in,
reconciliation, and the guards hosts call before deleting owners or members.

With no provider configured, paid plans are assigned directly: seed 000's staff-managed
billing (contracts, no card). External calls to the provider happen inside the unit of
work, before our writes: if the provider refuses, nothing of ours changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.actor import Actor, ActorKind, as_actor
from entitlements.domain.billing import (
    Assignment,
    AssignmentKind,
    ProviderEvent,
    ProviderLink,
    ProviderSubscription,
    path_to,
)
from entitlements.domain.checks import MAX_COUNT, check_key, check_optional_count, parse_enum
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.subscription import Event, Subscription, SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import (
    BillingActionRequired,
    FreePlanTaken,
    InvalidInput,
    OwnerHasActivePlan,
    PlanManagerProtected,
    SubscriptionNotFound,
)
from entitlements.ports import PaymentProvider
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.subscriptions import Subscriptions

__all__ = ["Billing", "ProviderOutcome"]

PROVIDER = Actor("payment-provider", ActorKind.PROVIDER)
HOLD = frozenset({SubscriptionStatus.PAST_DUE})


@attrs.frozen
class ProviderOutcome:
    """What applying a provider event (or a reconcile) did: ``outcome`` is ``applied``,
    ``duplicate`` (already applied) or ``stale`` (older than what was applied)."""

    outcome: str
    subscription: Subscription | None = None
    changes: tuple[str, ...] = ()


class Billing:
    def __init__(
        self,
        runtime: Runtime,
        subscriptions: Subscriptions,
        provider: PaymentProvider | None = None,
        *,
        one_free_plan_per_tenant: bool = False,
    ) -> None:
        self._rt = runtime
        self._subs = subscriptions
        self.provider = provider
        self.one_free_plan_per_tenant = one_free_plan_per_tenant

    # -- assignment ----------------------------------------------------------------------

    def assign_plan(
        self,
        owner: Owner,
        plan_key: str,
        *,
        actor: Actor | str,
        seats: int | None = None,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
        now: datetime | None = None,
    ) -> Assignment:
        """Seed 004's rules: a free plan is assigned directly (a paid provider subscription
        is cancelled at the provider first); a paid plan with an active paid subscription
        is a provider plan change; a paid plan without one opens a checkout (the owner
        stays where it is — or pending, if it had nothing — until the provider confirms).
        Past-due owners may not change their own plan until billing is resolved."""
        owner, who = as_owner(owner), as_actor(actor)
        plan_key = check_key(plan_key, "plan_key")
        check_optional_count(seats, "seats", maximum=MAX_COUNT)
        parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "billing.assign_plan", owner, plan_key)
            plan = tx.uow.plans.get(plan_key)
            current = tx.uow.subscriptions.current(owner)
            live = current if current is not None and not current.is_terminal else None
            plan.check_assignable(
                owner.kind, already_held=live is not None and live.plan_key == plan.key
            )
            if live is not None and live.status in HOLD and who.kind is ActorKind.MEMBER:
                raise BillingActionRequired(owner, live.status.value)
            if live is not None and (live.plan_key, live.plan_version) == (plan.key, plan.version):
                raise InvalidInput("plan_key", f"{owner} is already on {plan.key}")
            if plan.is_free:
                return self._assign_free(tx, who, owner, live, plan_key, seats, if_over_quota)
            if self.provider is None:
                return self._assign_directly(who, owner, live, plan_key, seats, if_over_quota)
            if (
                live is not None
                and live.external_id
                and live.status is SubscriptionStatus.ACTIVE
                and self._is_paid(tx, live)
            ):
                state = self.provider.change_plan(live.external_id, plan, seats=seats)
                change = self._subs.change_plan(
                    owner, plan.key, actor=who, if_over_quota=if_over_quota
                )
                self._remember(tx, state, change.subscription)
                return Assignment(AssignmentKind.PROVIDER_CHANGE, change.subscription)
            checkout = self.provider.start_checkout(
                owner, plan, seats=seats, reference=self._rt.new_id()
            )
            manager = who.id if who.kind is ActorKind.MEMBER else None
            tx.uow.provider.put_link(
                ProviderLink(checkout.id, owner, None, checkout.id, plan.key, manager)
            )
            subscription = live
            if subscription is None:
                subscription = self._subs.begin_checkout(
                    owner, plan.key, actor=who, seats=seats, metadata={"checkout_id": checkout.id}
                )
            tx.record(
                who,
                "billing.checkout",
                f"checkout:{checkout.id}",
                owner=owner,
                after={"plan": plan.key, "checkout": checkout.id},
            )
            return Assignment(AssignmentKind.CHECKOUT, subscription, checkout)

    def _assign_free(
        self,
        tx: Transaction,
        who: Actor,
        owner: Owner,
        live: Subscription | None,
        plan_key: str,
        seats: int | None,
        if_over_quota: OverQuotaPolicy,
    ) -> Assignment:
        if self.one_free_plan_per_tenant:
            free = [p.key for p in tx.uow.plans.list() if p.is_free]
            if tx.uow.subscriptions.count_on_plans(free, exclude_owner=owner) > 0:
                raise FreePlanTaken(owner)
        if (
            live is not None
            and live.external_id
            and self.provider is not None
            and self._is_paid(tx, live)
        ):
            self.provider.cancel(live.external_id, at_period_end=False)
            self._subs.cancel(owner, actor=who, reason=f"moving to the free plan {plan_key}")
            live = None
        return self._assign_directly(who, owner, live, plan_key, seats, if_over_quota)

    def _assign_directly(
        self,
        who: Actor,
        owner: Owner,
        live: Subscription | None,
        plan_key: str,
        seats: int | None,
        if_over_quota: OverQuotaPolicy,
    ) -> Assignment:
        if live is None:
            return Assignment(
                AssignmentKind.DIRECT, self._subs.subscribe(owner, plan_key, actor=who, seats=seats)
            )
        change = self._subs.change_plan(owner, plan_key, actor=who, if_over_quota=if_over_quota)
        return Assignment(AssignmentKind.DIRECT, change.subscription)

    def cancel(
        self, owner: Owner, *, actor: Actor | str, now: datetime | None = None
    ) -> Subscription:
        """Seed 003: cancelling means at the end of the paid period (active until then,
        back to the default plan after), at the provider too."""
        owner, who = as_owner(owner), as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "billing.cancel", owner)
            current = tx.uow.subscriptions.current(owner)
            if current is None or current.is_terminal:
                raise SubscriptionNotFound(owner)
            if current.external_id and self.provider is not None:
                self.provider.cancel(current.external_id, at_period_end=True)
            return self._subs.cancel(owner, actor=who, at_period_end=True)

    # -- the provider's events -----------------------------------------------------------

    def apply_provider_event(
        self, event: ProviderEvent, *, now: datetime | None = None
    ) -> ProviderOutcome:
        """Apply a provider webhook: idempotent by event id, and an event older than one
        already applied for the same provider subscription never overwrites newer state.
        Unknown event types are refused by `ProviderEvent` itself."""
        if not isinstance(event, ProviderEvent):
            raise InvalidInput("event", "must be a ProviderEvent", event)
        state = event.subscription
        with self._rt.transaction(state.owner.tenant, now) as tx:
            if tx.uow.provider.seen(event.id):
                return ProviderOutcome("duplicate")
            tx.uow.provider.mark_seen(event.id, tx.now)
            return self._follow(tx, state, event.occurred_at)

    def reconcile(self, owner: Owner, *, now: datetime | None = None) -> ProviderOutcome:
        """Ask the provider for its state of the owner's subscription and repair ours
        (webhooks get lost). Without evidence from the provider — no provider, no
        subscription there — nothing changes."""
        owner = as_owner(owner)
        if self.provider is None:
            raise InvalidInput(
                "provider", "no payment provider is configured; billing is staff-managed"
            )
        with self._rt.transaction(owner.tenant, now) as tx:
            current = tx.uow.subscriptions.current(owner)
            if current is None or not current.external_id:
                return ProviderOutcome(
                    "applied", current, ("no provider subscription to reconcile",)
                )
            state = self.provider.fetch(current.external_id)
            if state is None:
                return ProviderOutcome(
                    "applied", current, ("the provider has no such subscription; nothing changed",)
                )
            outcome = self._follow(tx, state, state.updated_at)
            tx.record(
                PROVIDER,
                "billing.reconcile",
                f"subscription:{current.id}",
                owner=owner,
                after={"changes": list(outcome.changes), "outcome": outcome.outcome},
            )
            return outcome

    def _follow(
        self, tx: Transaction, state: ProviderSubscription, at: datetime
    ) -> ProviderOutcome:
        owner = state.owner
        link = tx.uow.provider.link(state.external_id)
        if link is None and state.checkout_id is not None:
            link = tx.uow.provider.link_for_checkout(state.checkout_id)
        if link is not None and link.owner != owner:
            raise InvalidInput(
                "event",
                f"provider subscription {state.external_id} belongs to {link.owner}, not {owner}",
            )
        if link is not None and link.last_applied_at is not None and at < link.last_applied_at:
            return ProviderOutcome("stale")
        bound = None if link is None else link.subscription_id
        current = self._subs.find(owner)
        changes: list[str] = []
        if bound is not None and (current is None or current.id != bound):
            changes.append(
                "the owner has moved on from this provider subscription; nothing changed"
            )
        else:
            if current is not None and current.is_terminal:
                current = None
            changes = self._move(owner, current, state, None if link is None else link.manager)
            current = self._subs.find(owner)
            bound = None if current is None else current.id
        tx.uow.provider.put_link(
            ProviderLink(
                state.external_id,
                owner,
                at,
                state.checkout_id or (link.checkout_id if link else None),
                state.plan_key,
                None if link is None else link.manager,
                bound,
            )
        )
        return ProviderOutcome("applied", self._subs.find(owner), tuple(changes))

    def _remember(
        self, tx: Transaction, state: ProviderSubscription, subscription: Subscription
    ) -> None:
        existing = tx.uow.provider.link(state.external_id)
        tx.uow.provider.put_link(
            ProviderLink(
                state.external_id,
                state.owner,
                existing.last_applied_at if existing else None,
                existing.checkout_id if existing else state.checkout_id,
                state.plan_key,
                existing.manager if existing else None,
                subscription.id,
            )
        )

    def _move(
        self,
        owner: Owner,
        current: Subscription | None,
        state: ProviderSubscription,
        manager: str | None,
    ) -> list[str]:
        """Bring our subscription to the provider's state, one transition at a time."""
        subs, changes = self._subs, []
        if current is None:
            if state.status not in (
                SubscriptionStatus.ACTIVE,
                SubscriptionStatus.PAST_DUE,
                SubscriptionStatus.PENDING,
            ):
                return []
            metadata = {} if manager is None else {"plan_manager": manager}
            start = (
                subs.begin_checkout
                if state.status is SubscriptionStatus.PENDING
                else subs.subscribe
            )
            start(
                owner,
                state.plan_key,
                actor=PROVIDER,
                seats=state.seats,
                external_id=state.external_id,
                metadata=metadata,
            )
            changes.append(
                "begin_checkout" if state.status is SubscriptionStatus.PENDING else "subscribe"
            )
            current = subs.get(owner)
        if (
            current.status is SubscriptionStatus.SUSPENDED
            and state.status is not SubscriptionStatus.CANCELED
        ):
            return changes  # a suspension is staff's to lift
        live = current.status not in (SubscriptionStatus.PENDING, SubscriptionStatus.FAILED)
        if live and current.plan_key != state.plan_key:
            subs.change_plan(
                owner, state.plan_key, actor=PROVIDER, if_over_quota=OverQuotaPolicy.ALLOW
            )
            changes.append("change_plan")
        path = path_to(current.status, state.status) or []
        if (
            current.status is SubscriptionStatus.PENDING
            and state.status is SubscriptionStatus.CANCELED
        ):
            path = [Event.ACTIVATE, Event.CANCEL]  # it was paid for, then canceled
        for event in path:
            if event is Event.ACTIVATE:
                subs.convert(owner, actor=PROVIDER, plan_key=state.plan_key)
            elif event is Event.FAIL:
                subs.fail(owner, actor=PROVIDER)
            elif event is Event.MARK_PAST_DUE:
                subs.mark_past_due(owner, actor=PROVIDER)
            elif event is Event.SETTLE:
                subs.settle(owner, actor=PROVIDER)
            elif event is Event.CANCEL:
                subs.cancel(owner, actor=PROVIDER)
            changes.append(event.value)
        current = subs.get(owner)
        if not current.is_terminal and current.status is not SubscriptionStatus.PENDING:
            if state.seats is not None and current.seats != state.seats:
                subs.change_seats(
                    owner, state.seats, actor=PROVIDER, if_over_quota=OverQuotaPolicy.ALLOW
                )
                changes.append("change_seats")
            if current.cancel_at_period_end != state.cancel_at_period_end:
                if state.cancel_at_period_end:
                    subs.cancel(owner, actor=PROVIDER, at_period_end=True)
                else:
                    subs.undo_cancel(owner, actor=PROVIDER)
                changes.append("schedule_cancel" if state.cancel_at_period_end else "undo_cancel")
        current = subs.get(owner)
        amend: dict[str, Any] = {}
        if (
            current.external_id != state.external_id
            and state.status is not SubscriptionStatus.FAILED
        ):
            amend["external_id"] = state.external_id
        if manager is not None and current.metadata.get("plan_manager") != manager:
            amend["metadata"] = {**current.metadata, "plan_manager": manager}
        if amend:
            subs.amend(owner, actor=PROVIDER, **amend)
            changes.append("amend")
        return changes

    # -- guards for the host ---------------------------------------------------------------

    def ensure_deletable(self, owner: Owner) -> None:
        """Seed 003: refuse to delete an owner whose paid plan is active and not set to
        cancel at the end of its period. Call it before deleting the owner."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            current = uow.subscriptions.current(owner)
            if current is None or current.is_terminal or current.cancel_at_period_end:
                return
            if not uow.plans.get(current.plan_key, current.plan_version).is_free:
                raise OwnerHasActivePlan(owner, current.plan_key)

    def ensure_member_removable(self, owner: Owner, member: str) -> None:
        """Seed 003: the plan manager — the member who subscribed — cannot be removed or
        lose admin while the paid plan is active. Call it before either."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            current = uow.subscriptions.current(owner)
            if current is None or current.is_terminal:
                return
            if (
                current.metadata.get("plan_manager") == member
                and not uow.plans.get(current.plan_key, current.plan_version).is_free
            ):
                raise PlanManagerProtected(owner, member)

    def _is_paid(self, tx: Transaction, subscription: Subscription) -> bool:
        return not tx.uow.plans.get(subscription.plan_key, subscription.plan_version).is_free
