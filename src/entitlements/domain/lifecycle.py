"""The lifecycle kernel: what one change does to a subscription.

Every entry point that changes a subscription — ``ents.subscriptions``, billing (plan
assignment and the payment provider's events), conversion from a signed contract and the
sweep — hands the kernel the subscription as it stands, the change asked for and ``now``,
and gets back a `Step`: the new state and the audit facts to record. Provider-bound
effects are values too (`ProviderEffect`), decided here from the same inputs. The kernel
reads nothing and writes nothing: the caller's unit of work stores the new state, appends
the facts to the audit trail (which is what listeners are notified of, and what moves the
owner's change-feed revision) and queues the effects, so every entry point composes the
same functions inside its own transaction instead of calling another entry point.

The rules themselves stay where a newcomer looks for them: the transition table and its
bookkeeping in `entitlements.domain.subscription`, what time makes due in
`entitlements.domain.due`, the provider's paths through the table in
`entitlements.domain.billing`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.billing import ProviderSubscription, path_to
from entitlements.domain.due import DueChange, advance
from entitlements.domain.owner import Owner
from entitlements.domain.provider_commands import CommandKind
from entitlements.domain.subscription import (
    Event,
    Subscription,
    SubscriptionStatus,
    check_allowed,
    create,
    transition,
)

__all__ = [
    "Fact",
    "ProviderEffect",
    "Route",
    "Step",
    "begin",
    "catch_up",
    "change",
    "provider_path",
    "provider_start",
    "route",
]

_S = SubscriptionStatus


@attrs.frozen
class Fact:
    """One audit fact a step produces: who did what to the subscription, and why."""

    actor: Actor
    """Who acted (the sweep, for what time made due)."""
    action: str
    """The audited action, ``subscription.<event or use case>``."""
    before: Subscription | None
    """The subscription before (``None`` when the step started it)."""
    after: Subscription
    """The subscription after."""
    reason: str | None = None
    """Why, as the caller (or time) said it."""

    @property
    def target(self) -> str:
        """What the audit trail names as changed."""
        return f"subscription:{self.after.id}"


@attrs.frozen
class Step:
    """What one change does: the subscription before and after, and the facts to audit
    (more than one when time made changes due on the way)."""

    before: Subscription | None
    """The subscription as it stood (``None`` for a start)."""
    after: Subscription
    """The new state, to store."""
    facts: tuple[Fact, ...]
    """The audit facts, oldest first."""
    due: tuple[DueChange, ...] = ()
    """The changes time made due, when the step is a catch-up."""


def begin(
    event: Event,
    *,
    id: str,
    owner: Owner,
    plan_key: str,
    plan_version: int,
    now: datetime,
    current: Subscription | None,
    actor: Actor,
    reason: str | None = None,
    **fields: Any,
) -> Step:
    """Start a subscription (trial, subscription or checkout) for an owner with none live
    (``current`` is its last one, ended, or ``None``)."""
    started = create(
        event,
        id=id,
        owner=owner,
        plan_key=plan_key,
        plan_version=plan_version,
        now=now,
        current=current,
        **fields,
    )
    return Step(None, started, (Fact(actor, f"subscription.{event.value}", None, started, reason),))


def change(
    current: Subscription,
    event: Event,
    now: datetime,
    fields: Mapping[str, Any],
    *,
    actor: Actor,
    action: str | None = None,
    reason: str | None = None,
) -> Step:
    """Apply ``event`` with its own field updates; ``action`` names the use case in the
    audit trail when it is not the event (``convert`` for ``activate``). Refuses, with
    `IllegalTransition`, what the table does not allow."""
    check_allowed(current, event)
    after = transition(current, event, now, **fields)
    name = f"subscription.{action or event.value}"
    return Step(current, after, (Fact(actor, name, current, after, reason),))


def catch_up(current: Subscription, now: datetime, *, actor: Actor) -> Step:
    """The changes time made due by ``now`` (a trial end, a renewal...), each audited as
    done by ``actor`` and dated when it fell due."""
    after, steps = advance(current, now)
    facts = tuple(
        Fact(
            actor,
            f"subscription.{step.event.value}",
            step.before,
            step.after,
            f"due at {step.at.isoformat()}",
        )
        for step in steps
    )
    return Step(current, after, facts, tuple(steps))


# -- following the payment provider ---------------------------------------------------------


def provider_start(state: ProviderSubscription) -> Event | None:
    """How an owner with no live subscription starts following the provider's: a
    checkout while the provider waits for payment, a subscription once it is paid (or
    overdue); nothing for a subscription the provider already ended."""
    if state.status is _S.PENDING:
        return Event.BEGIN_CHECKOUT
    if state.status in (_S.ACTIVE, _S.PAST_DUE):
        return Event.SUBSCRIBE
    return None


def provider_path(current: SubscriptionStatus, wanted: SubscriptionStatus) -> list[Event]:
    """The lifecycle events that take our status to the provider's. A pending checkout the
    provider reports canceled was paid for first, then canceled."""
    if current is _S.PENDING and wanted is _S.CANCELED:
        return [Event.ACTIVATE, Event.CANCEL]
    return path_to(current, wanted) or []


def follows_plan(current: Subscription, state: ProviderSubscription) -> bool:
    """Whether the provider's plan must be applied as a plan change first: only a live
    subscription changes plans (a pending one takes the plan when it is activated)."""
    live = current.status not in (_S.PENDING, _S.FAILED)
    return live and current.plan_key != state.plan_key


# -- plan assignment through the provider ---------------------------------------------------


class Route(enum.Enum):
    """Which way ``billing.assign_plan`` goes, from the plan, the owner's live subscription
    and whether a provider is configured."""

    FREE = "free"
    """A free plan, assigned directly."""
    FREE_AFTER_PROVIDER_CANCEL = "free_after_provider_cancel"
    """A free plan; the paid provider subscription is canceled first, here and there."""
    DIRECT = "direct"
    """A paid plan assigned by staff (no provider)."""
    PROVIDER_CHANGE = "provider_change"
    """A plan change of an active paid provider subscription."""
    CHECKOUT = "checkout"
    """A checkout at the provider."""


def route(
    *, plan_is_free: bool, has_provider: bool, live: Subscription | None, live_is_paid: bool
) -> Route:
    """Seed 004's rules for where an assignment goes (see `Route`)."""
    at_provider = live is not None and bool(live.external_id) and live_is_paid
    if plan_is_free:
        return Route.FREE_AFTER_PROVIDER_CANCEL if at_provider and has_provider else Route.FREE
    if not has_provider:
        return Route.DIRECT
    if at_provider and live is not None and live.status is _S.ACTIVE:
        return Route.PROVIDER_CHANGE
    return Route.CHECKOUT


@attrs.frozen
class ProviderEffect:
    """A command the payment provider must carry out once the unit of work commits."""

    kind: CommandKind
    """What the provider is asked to do."""
    payload: Mapping[str, Any]
    """Its arguments."""

    @classmethod
    def cancel(cls, external_id: str, *, at_period_end: bool) -> ProviderEffect:
        """Cancel the provider subscription, now or at its period end."""
        return cls(CommandKind.CANCEL, {"external_id": external_id, "at_period_end": at_period_end})

    @classmethod
    def change_plan(
        cls, external_id: str, plan_key: str, plan_version: int, seats: int | None
    ) -> ProviderEffect:
        """Move the provider subscription to another plan."""
        return cls(
            CommandKind.CHANGE_PLAN,
            {
                "external_id": external_id,
                "plan_key": plan_key,
                "plan_version": plan_version,
                "seats": seats,
            },
        )

    @classmethod
    def checkout(
        cls, plan_key: str, plan_version: int, seats: int | None, manager: str | None
    ) -> ProviderEffect:
        """Open a checkout for the plan."""
        return cls(
            CommandKind.START_CHECKOUT,
            {
                "plan_key": plan_key,
                "plan_version": plan_version,
                "seats": seats,
                "manager": manager,
            },
        )
