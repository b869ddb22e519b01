"""The payment-provider seam's values: checkouts, the provider's view of a subscription,
provider events, and how our subscription follows the provider's state.

Every provider event carries the provider's full state of the subscription after the
event (as real providers' webhooks do). Applying an event means moving our subscription
to that state, unless a newer event was already applied: so duplicates change nothing,
and any order of delivery ends in the state of the newest event.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from entitlements.domain.checks import check_key, parse_enum
from entitlements.domain.instant import (
    as_utc,
    aware,
    optional_instant,
)
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import RULES, Event, SubscriptionStatus
from entitlements.errors import InvalidInput

__all__ = [
    "Assignment",
    "AssignmentKind",
    "Checkout",
    "ProviderEvent",
    "ProviderEventType",
    "ProviderLink",
    "ProviderSubscription",
    "path_to",
]


class ProviderEventType(enum.StrEnum):
    """The provider events the library understands; a provider adapter maps its own event
    names onto these."""

    CHECKOUT_COMPLETED = "checkout.completed"
    CHECKOUT_EXPIRED = "checkout.expired"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"


PROVIDER_STATUSES = frozenset(
    {
        SubscriptionStatus.PENDING,
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.FAILED,
    }
)


def _status(value: object) -> SubscriptionStatus:
    status = parse_enum(SubscriptionStatus, value, "provider.status")
    if status not in PROVIDER_STATUSES:
        known = ", ".join(sorted(PROVIDER_STATUSES))
        raise InvalidInput("provider.status", f"a provider reports one of: {known}", value)
    return status


def _text(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise InvalidInput(
            "provider id", "must be a non-empty string of at most 255 characters", value
        )
    return value


def _plan(value: object) -> str:
    return check_key(value, "plan_key")


@attrs.frozen
class Checkout:
    """A started checkout: where to send the customer (``url``) and the provider's id."""

    id: str = attrs.field(converter=_text)
    """The provider's id for the checkout; its completion event carries it back."""
    url: str
    """Where to send the customer to pay."""
    owner: Owner
    """Who is buying."""
    plan_key: str = attrs.field(converter=_plan)
    """The plan being bought."""


@attrs.frozen
class ProviderSubscription:
    """The provider's authoritative state of one subscription."""

    external_id: str = attrs.field(converter=_text)
    """The provider's id for the subscription."""
    owner: Owner
    """The owner it belongs to."""
    plan_key: str = attrs.field(converter=_plan)
    """The plan the provider bills."""
    status: SubscriptionStatus = attrs.field(converter=_status)
    """The status the provider reports; ours is moved there through the transition table."""
    updated_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When the provider's state was last changed; older states than one applied are
    ignored."""
    cancel_at_period_end: bool = False
    """Whether the provider has a cancellation scheduled for the period end."""
    seats: int | None = None
    """The seat quantity billed (``None``: not seat-based)."""
    checkout_id: str | None = None
    """The checkout that created it, linking it to the owner who started it."""


def _event_type(value: object) -> ProviderEventType:
    try:
        return ProviderEventType(str(value))
    except ValueError:
        known = ", ".join(t.value for t in ProviderEventType)
        raise InvalidInput(
            "event.type", f"unknown provider event type {value!r} (known: {known})", value
        ) from None


@attrs.frozen
class ProviderEvent:
    """One event from the payment provider, as its webhook delivered it."""

    id: str = attrs.field(converter=_text)
    """The provider's event id; a delivery seen before is ignored."""
    type: ProviderEventType = attrs.field(converter=_event_type)
    """What happened."""
    occurred_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it happened at the provider (events arrive out of order)."""
    subscription: ProviderSubscription
    """The provider's state of the subscription after the event."""


@attrs.frozen
class ProviderLink:
    """What we know of one provider subscription: whose it is, and the time of the newest
    provider state applied (older events are ignored)."""

    external_id: str
    """The provider's id for the subscription."""
    owner: Owner
    """Whose subscription it is."""
    last_applied_at: datetime | None = optional_instant()
    """The provider time of the newest state applied; older events change nothing."""
    checkout_id: str | None = None
    """The checkout it came from."""
    plan_key: str | None = None
    """The plan bought through the checkout."""
    manager: str | None = None
    """The member who started the checkout: seed 003's plan manager."""
    subscription_id: str | None = None
    """Our subscription that follows this provider subscription; events for it never
    touch another (a later subscription of the same owner, say)."""


class AssignmentKind(enum.StrEnum):
    """How ``assign_plan`` went: assigned ``direct``ly, asked the provider for a
    ``provider_change``, or started a ``checkout``."""

    DIRECT = "direct"
    PROVIDER_CHANGE = "provider_change"
    CHECKOUT = "checkout"


@attrs.frozen
class Assignment:
    """What ``assign_plan`` did: assigned directly, asked the provider to change the plan,
    or started a checkout (send the customer to ``checkout.url``)."""

    kind: AssignmentKind
    """Which of the three it was."""
    subscription: object
    """The subscription as it stands after the call (a checkout leaves it pending)."""
    checkout: Checkout | None = None
    """The checkout to send the customer to (``None`` unless one was started)."""
    command: object = None
    """The `ProviderCommand` this assignment sent to the provider (``None``: none was
    needed). Pending when the provider has not answered yet: the sweep retries it."""


_FOLLOW = (Event.ACTIVATE, Event.FAIL, Event.MARK_PAST_DUE, Event.SETTLE, Event.CANCEL)


def path_to(current: SubscriptionStatus, wanted: SubscriptionStatus) -> list[Event] | None:
    """The shortest sequence of provider-driven events (activate, fail, mark past due,
    settle, cancel) from ``current`` to ``wanted``; ``None`` if the table has none (a
    suspension is staff's to lift, not the provider's)."""
    frontier: list[tuple[SubscriptionStatus, list[Event]]] = [(current, [])]
    seen = {current}
    targets: Mapping[Event, SubscriptionStatus] = {
        e: SubscriptionStatus(RULES[e].target) for e in _FOLLOW
    }
    while frontier:
        status, path = frontier.pop(0)
        if status is wanted:
            return path
        for event in _FOLLOW:
            nxt = targets[event]
            if status.value in RULES[event].sources and nxt not in seen:
                seen.add(nxt)
                frontier.append((nxt, [*path, event]))
    return None
