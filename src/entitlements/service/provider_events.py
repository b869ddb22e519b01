"""Our subscription follows the payment provider's: the lifecycle steps a provider event
(or a reconcile) applies, inside billing's unit of work.

The provider is the source of truth for what was paid: its state is reached one
transition at a time through the table (`entitlements.domain.lifecycle.provider_path`),
each step audited as done by the provider. A suspension is staff's to lift and stays.
Nothing is written (not even what time made due) unless a step is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from entitlements.domain.actor import Actor, ActorKind
from entitlements.domain.billing import ProviderLink, ProviderSubscription
from entitlements.domain.due import as_of
from entitlements.domain.lifecycle import follows_plan, provider_path, provider_start
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import Event, Subscription, SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import InvalidInput
from entitlements.service import lifecycle
from entitlements.service.assignment import PlanAssignment, live
from entitlements.service.runtime import Transaction

__all__ = ["PROVIDER", "Following", "apply_state", "follow", "link_of"]

PROVIDER = Actor("payment-provider", ActorKind.PROVIDER)
_S = SubscriptionStatus
MOVED_ON = "the owner has moved on from this provider subscription; nothing changed"
_ALLOW = OverQuotaPolicy.ALLOW  # the provider reports what was paid for: mirror it


class Following:
    """One owner's subscription as the provider's state is applied to it: ``seen`` as
    time has made it (nothing stored), then each step's stored result."""

    def __init__(
        self, tx: Transaction, rules: PlanAssignment, owner: Owner, seen: Subscription | None
    ) -> None:
        self.tx, self.rules, self.owner = tx, rules, owner
        self.seen = seen
        self.stored: Subscription | None = None
        self.changes: list[str] = []

    @property
    def current(self) -> Subscription:
        found = self.stored or self.seen
        assert found is not None
        return found

    def _writable(self) -> Subscription:
        """The subscription read for writing, under the owner's terms lock, once."""
        if self.stored is None:
            self.stored = lifecycle.load(self.tx, self.owner)
        return self.stored

    def did(self, name: str, stored: Subscription) -> None:
        self.stored = stored
        self.changes.append(name)

    def apply(
        self, event: Event, fields: Callable[[Subscription], Mapping[str, Any]] | None = None
    ) -> None:
        stored = lifecycle.apply(self.tx, PROVIDER, self._writable(), event, fields)
        self.did(event.value, stored)

    def set_plan_manager(self, member: str) -> None:
        stored = lifecycle.set_plan_manager(self.tx, PROVIDER, self._writable(), member, None)
        self.did(lifecycle.SET_PLAN_MANAGER, stored)

    def start(self, event: Event, state: ProviderSubscription, manager: str | None) -> None:
        plan = self.tx.uow.plans.get(state.plan_key)
        stored = lifecycle.start(
            self.tx,
            self.rules,
            PROVIDER,
            event,
            self.owner,
            plan,
            seats=state.seats,
            external_id=state.external_id,
            plan_manager=manager,
        )
        self.did(event.value, stored)

    def change_plan(self, plan_key: str) -> None:
        current = self.stored or lifecycle.load(self.tx, self.owner, with_plans=[(plan_key, None)])
        change = lifecycle.change_plan(
            self.tx, self.rules, PROVIDER, current, plan_key, _ALLOW, clears_pending=True
        )
        self.did("change_plan", change.subscription)

    def convert(self, state: ProviderSubscription) -> None:
        asked = lifecycle.Conversion(
            state.plan_key,
            keep_cancellation=state.cancel_at_period_end,
            # the provider reports a payment that has happened: mirror it even while a
            # contract is out for signature
            without_contract=True,
        )
        change = lifecycle.convert(self.tx, self.rules, PROVIDER, self._writable(), asked, _ALLOW)
        self.did(Event.ACTIVATE.value, change.subscription)

    def change_seats(self, seats: int) -> None:
        change = lifecycle.change_seats(self.tx, PROVIDER, self._writable(), seats, _ALLOW)
        self.did("change_seats", change.subscription)


def link_of(tx: Transaction, state: ProviderSubscription) -> ProviderLink | None:
    """What we know of the provider subscription: by its id, else by the checkout that
    created it. Refuses (`InvalidInput`) a state that names another owner than the one
    the subscription was linked to."""
    link = tx.uow.provider.link(state.external_id)
    if link is None and state.checkout_id is not None:
        link = tx.uow.provider.link_for_checkout(state.checkout_id)
    if link is not None and link.owner != state.owner:
        raise InvalidInput(
            "event",
            f"provider subscription {state.external_id} belongs to {link.owner}, not {state.owner}",
        )
    return link


def apply_state(
    tx: Transaction, rules: PlanAssignment, state: ProviderSubscription, link: ProviderLink | None
) -> tuple[list[str], Subscription | None, str | None]:
    """Follow the provider's state with the owner's subscription, unless the owner has
    moved on from the one linked to it. Returns the steps taken, the owner's subscription
    as it stands after them, and the subscription the link follows from now on."""
    bound = None if link is None else link.subscription_id
    stored = tx.uow.subscriptions.current(state.owner)
    found = None if stored is None else as_of(stored, tx.now)
    if bound is not None and getattr(found, "id", None) != bound:
        return [MOVED_ON], found, bound
    following = Following(tx, rules, state.owner, live(found))
    follow(following, state, None if link is None else link.manager)
    found = following.stored or found
    return following.changes, found, None if found is None else found.id


def follow(following: Following, state: ProviderSubscription, manager: str | None) -> None:
    """Bring our subscription to the provider's state, one transition at a time."""
    if following.seen is None:
        event = provider_start(state)
        if event is None:
            return
        following.start(event, state, manager)
    current = following.current
    if current.status is _S.SUSPENDED and state.status is not _S.CANCELED:
        return  # a suspension is staff's to lift
    if follows_plan(current, state):
        following.change_plan(state.plan_key)
    for event in provider_path(current.status, state.status):
        if event is Event.ACTIVATE:
            following.convert(state)
        else:
            following.apply(event)
    _follow_terms(following, state)
    _follow_details(following, state, manager)


def _follow_terms(following: Following, state: ProviderSubscription) -> None:
    """The seats billed and a cancellation scheduled at the provider."""
    current = following.current
    if current.is_terminal or current.status is _S.PENDING:
        return
    if state.seats is not None and current.seats != state.seats:
        following.change_seats(state.seats)
    if current.cancel_at_period_end != state.cancel_at_period_end:
        if state.cancel_at_period_end and current.scheduled is not None:
            # the provider's cancellation wins over a change scheduled here
            following.apply(Event.CANCEL_PENDING_CHANGE, lambda _: {"scheduled": None})
        following.apply(Event.SCHEDULE_CANCEL if state.cancel_at_period_end else Event.UNDO_CANCEL)


def _follow_details(following: Following, state: ProviderSubscription, manager: str | None) -> None:
    """The provider's id for the subscription, and the plan manager who checked out."""
    current = following.current
    if current.external_id != state.external_id and state.status is not _S.FAILED:
        following.apply(Event.AMEND, lambda _: {"external_id": state.external_id})
    if manager is not None and current.plan_manager is None:
        following.set_plan_manager(manager)
