"""Test doubles for integrators: a fake payment provider.

`FakePaymentProvider` does what a real provider does, in memory: it keeps its own view of
subscriptions, records every call the library makes, and queues the webhook events a real
provider would send. The customer's side is simulated by `complete_checkout`,
`expire_checkout`, `fail_payment` and `pay`; `deliver` hands the queued events to
``ents.billing.apply_provider_event`` — in order, duplicated, shuffled or with some lost,
as real webhooks arrive.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import attrs

from entitlements.domain.billing import (
    Checkout,
    ProviderEvent,
    ProviderEventType,
    ProviderSubscription,
)
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.subscription import SubscriptionStatus
from entitlements.errors import NotFound
from entitlements.ports import Clock

__all__ = ["FakePaymentProvider"]

_S = SubscriptionStatus


class FakePaymentProvider:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.subscriptions: dict[str, ProviderSubscription] = {}
        self.checkouts: dict[str, tuple[Owner, str, int | None]] = {}
        self.outbox: list[ProviderEvent] = []
        self.acted: list[str] = []
        """Idempotency keys the provider acted on, once each (a retry replays the answer)."""
        self.unavailable = False
        """While true every call raises `ConnectionError`, as an outage does."""
        self._lose = 0
        self._answers: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._tick = itertools.count(1)

    def lose_answers(self, calls: int = 1) -> None:
        """The next ``calls`` act at the provider but their answers never arrive (a
        timeout after the provider committed): only idempotency keys make the retry safe."""
        self._lose += calls

    # -- the PaymentProvider protocol -------------------------------------------------------

    def start_checkout(
        self, owner: Owner, plan: Plan, *, seats: int | None, reference: str
    ) -> Checkout:
        self.calls.append(("start_checkout", {"owner": owner, "plan": plan.key, "seats": seats}))

        def act() -> Checkout:
            checkout_id = f"cs_{next(self._ids)}"
            self.checkouts[checkout_id] = (owner, plan.key, seats)
            url = f"https://pay.example/checkout/{checkout_id}"
            return Checkout(checkout_id, url, owner, plan.key)

        answer: Checkout = self._once(reference, act)
        return answer

    def change_plan(
        self,
        external_id: str,
        plan: Plan,
        *,
        seats: int | None,
        idempotency_key: str | None = None,
    ) -> ProviderSubscription:
        self.calls.append(
            ("change_plan", {"external_id": external_id, "plan": plan.key, "seats": seats})
        )
        answer: ProviderSubscription = self._once(
            idempotency_key,
            lambda: self._update(
                external_id,
                ProviderEventType.SUBSCRIPTION_UPDATED,
                plan_key=plan.key,
                seats=seats if seats is not None else self._get(external_id).seats,
            ),
        )
        return answer

    def cancel(
        self, external_id: str, *, at_period_end: bool, idempotency_key: str | None = None
    ) -> ProviderSubscription:
        self.calls.append(("cancel", {"external_id": external_id, "at_period_end": at_period_end}))

        def act() -> ProviderSubscription:
            if at_period_end:
                return self._update(
                    external_id, ProviderEventType.SUBSCRIPTION_UPDATED, cancel_at_period_end=True
                )
            return self._update(
                external_id, ProviderEventType.SUBSCRIPTION_CANCELED, status=_S.CANCELED
            )

        answer: ProviderSubscription = self._once(idempotency_key, act)
        return answer

    def fetch(self, external_id: str) -> ProviderSubscription | None:
        self.calls.append(("fetch", {"external_id": external_id}))
        if self.unavailable:
            raise ConnectionError("the payment provider is unreachable")
        return self.subscriptions.get(external_id)

    # -- what the customer does at the provider ----------------------------------------------

    def complete_checkout(self, checkout_id: str) -> ProviderSubscription:
        owner, plan_key, seats = self.checkouts.pop(checkout_id)
        external_id = f"sub_{next(self._ids)}"
        state = ProviderSubscription(
            external_id,
            owner,
            plan_key,
            _S.ACTIVE,
            self._now(),
            seats=seats,
            checkout_id=checkout_id,
        )
        self.subscriptions[external_id] = state
        self._emit(ProviderEventType.CHECKOUT_COMPLETED, state)
        return state

    def expire_checkout(self, checkout_id: str) -> None:
        owner, plan_key, seats = self.checkouts.pop(checkout_id)
        state = ProviderSubscription(
            f"expired_{checkout_id}",
            owner,
            plan_key,
            _S.FAILED,
            self._now(),
            seats=seats,
            checkout_id=checkout_id,
        )
        self._emit(ProviderEventType.CHECKOUT_EXPIRED, state)

    def fail_payment(self, external_id: str) -> ProviderSubscription:
        return self._update(external_id, ProviderEventType.PAYMENT_FAILED, status=_S.PAST_DUE)

    def pay(self, external_id: str) -> ProviderSubscription:
        return self._update(external_id, ProviderEventType.PAYMENT_SUCCEEDED, status=_S.ACTIVE)

    def end_period(self, external_id: str) -> ProviderSubscription:
        """The period ended for a subscription set to cancel at its end."""
        return self._update(
            external_id, ProviderEventType.SUBSCRIPTION_CANCELED, status=_S.CANCELED
        )

    # -- webhooks ------------------------------------------------------------------------

    def take_events(self) -> list[ProviderEvent]:
        events, self.outbox = self.outbox, []
        return events

    def deliver(
        self,
        ents: Any,
        events: Iterable[ProviderEvent] | None = None,
        *,
        duplicate: bool = False,
        shuffle: random.Random | None = None,
        drop: Iterable[str] = (),
    ) -> list[Any]:
        """Apply queued (or given) events to ``ents``; returns the outcomes."""
        batch = list(self.take_events() if events is None else events)
        dropped = set(drop)
        batch = [e for e in batch if e.id not in dropped]
        if duplicate:
            batch = batch + batch
        if shuffle is not None:
            shuffle.shuffle(batch)
        return [ents.billing.apply_provider_event(event) for event in batch]

    # -- machinery -----------------------------------------------------------------------

    def _once(self, key: str | None, act: Any) -> Any:
        """Act once per idempotency key (no key: a call made at the provider's own
        console, say, which always acts)."""
        if self.unavailable:
            raise ConnectionError("the payment provider is unreachable")
        if key is None:
            key = f"direct-{next(self._ids)}"
        if key not in self._answers:
            self._answers[key] = act()
            self.acted.append(key)
        if self._lose:
            self._lose -= 1
            raise TimeoutError("the payment provider's answer was lost")
        return self._answers[key]

    def _now(self) -> Any:
        return self.clock.now() + timedelta(microseconds=next(self._tick))

    def _get(self, external_id: str) -> ProviderSubscription:
        found = self.subscriptions.get(external_id)
        if found is None:
            raise NotFound(f"the provider has no subscription {external_id}")
        return found

    def _update(
        self, external_id: str, type: ProviderEventType, **changes: Any
    ) -> ProviderSubscription:
        state = attrs.evolve(self._get(external_id), updated_at=self._now(), **changes)
        self.subscriptions[external_id] = state
        self._emit(type, state)
        return state

    def _emit(self, type: ProviderEventType, state: ProviderSubscription) -> None:
        self.outbox.append(ProviderEvent(f"evt_{next(self._ids)}", type, state.updated_at, state))
