"""What each subscription status grants: the status policy of entitlement resolution.

The defaults follow the seeds: trialing and active grant the plan; past_due grants it for
a grace period, then read-only; suspended is read-only (seed 002), and so is paused;
pending, failed, canceled and expired grant nothing — or the fallback plan when one is
configured (seed 003 puts every workspace back on Free).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from entitlements.domain.checks import check_key, parse_enum
from entitlements.domain.frozen import FrozenDict
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import InvalidInput

__all__ = ["Access", "AccessPolicy", "Source", "StatusAccess", "grace_end", "status_access"]


class Access(enum.StrEnum):
    """What a subscription status grants: everything (``full``), reads only (``read_only``),
    nothing (``none``), or the fallback plan (``fallback``)."""

    FULL = "full"
    READ_ONLY = "read_only"
    NONE = "none"
    FALLBACK = "fallback"


class Source(enum.StrEnum):
    """Where a decision came from, highest precedence first in `DEFAULT_PRECEDENCE`."""

    OVERRIDE = "override"
    """A per-owner override."""
    ADDON = "addon"
    """An add-on on the subscription."""
    PLAN = "plan"
    """The subscription's plan version."""
    FALLBACK = "fallback"
    """The policy's fallback plan."""
    STATUS_POLICY = "status_policy"
    """The access the subscription status grants, which caps every other layer."""
    NONE = "none"
    """Nothing: the feature or limit is unknown, or there is no plan at all."""


DEFAULT_PRECEDENCE: tuple[Source, ...] = (Source.OVERRIDE, Source.ADDON, Source.PLAN)

_S = SubscriptionStatus
DEFAULT_ACCESS: Mapping[SubscriptionStatus, Access] = {
    _S.TRIALING: Access.FULL,
    _S.ACTIVE: Access.FULL,
    _S.PAST_DUE: Access.FULL,
    _S.SUSPENDED: Access.READ_ONLY,
    _S.PAUSED: Access.READ_ONLY,
    _S.PENDING: Access.FALLBACK,
    _S.FAILED: Access.FALLBACK,
    _S.CANCELED: Access.FALLBACK,
    _S.EXPIRED: Access.FALLBACK,
}


def _access(value: object) -> Access:
    return parse_enum(Access, value, "after_grace")


def _by_status(value: Mapping[SubscriptionStatus, Access]) -> Mapping[SubscriptionStatus, Access]:
    if not isinstance(value, Mapping):
        raise InvalidInput("by_status", "must map subscription statuses to access", value)
    merged = dict(DEFAULT_ACCESS)
    for status, access in dict(value).items():
        merged[parse_enum(SubscriptionStatus, status, "by_status")] = parse_enum(
            Access, access, "by_status"
        )
    return FrozenDict(merged)


def _precedence(value: tuple[Source, ...]) -> tuple[Source, ...]:
    order = tuple(parse_enum(Source, s, "precedence") for s in value)
    if sorted(order) != sorted(DEFAULT_PRECEDENCE):
        raise InvalidInput("precedence", "must order exactly: override, addon, plan", value)
    return order


def _fallback(value: str | None) -> str | None:
    return None if value is None else check_key(value, "fallback_plan")


@attrs.frozen
class AccessPolicy:
    """``by_status`` overrides the defaults per status; ``fallback_plan`` is the plan key
    that ``fallback`` access (and owners with no subscription) resolve to, or ``None`` for
    nothing at all (seed 004: no plan, no limits claim)."""

    by_status: Mapping[SubscriptionStatus, Access] = attrs.field(factory=dict, converter=_by_status)
    """Overrides of the default access per status (for instance ``past_due`` to ``full``).
    """
    past_due_grace: timedelta = timedelta(days=7)
    """How long a past-due owner keeps its status's access before ``after_grace`` applies.
    """
    after_grace: Access = attrs.field(default=Access.READ_ONLY, converter=_access)
    """The access once the past-due grace period is over (read-only by default)."""
    fallback_plan: str | None = attrs.field(default=None, converter=_fallback)
    """The plan owners without a live subscription resolve to (``None``: nothing at all)."""
    precedence: tuple[Source, ...] = attrs.field(default=DEFAULT_PRECEDENCE, converter=_precedence)
    """Which layer wins when several decide the same feature or limit, highest first."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.past_due_grace, timedelta):
            raise InvalidInput("past_due_grace", "must be a timedelta", self.past_due_grace)
        if self.past_due_grace < timedelta(0):
            raise InvalidInput("past_due_grace", "must not be negative", self.past_due_grace)


@attrs.frozen
class StatusAccess:
    """What a subscription's status grants at one instant, why, and until when."""

    access: Access
    """What the status grants now."""
    why: str
    """The same in words (``past due, in grace until 2026-05-08 09:00``)."""
    until: datetime | None
    """When time alone changes it (the end of a past-due grace), or ``None``."""


def grace_end(subscription: Subscription, policy: AccessPolicy) -> datetime | None:
    """When the past-due grace of ``subscription`` ends, or ``None`` when no grace runs:
    it is not past due, or the policy does not grant past-due owners full access (there is
    nothing to lose then). Grace counts from when payment first failed
    (``past_due_since``), through any suspension in between."""
    if (
        subscription.status is not SubscriptionStatus.PAST_DUE
        or policy.by_status[SubscriptionStatus.PAST_DUE] is not Access.FULL
        or subscription.past_due_since is None
    ):
        return None
    return subscription.past_due_since + policy.past_due_grace


def status_access(
    subscription: Subscription | None, policy: AccessPolicy, now: datetime
) -> StatusAccess:
    """The past-due grace and status policy, decided in one place: what
    ``subscription`` (already brought to ``now``) grants at ``now``. Resolution caps
    every layer with it, loading a snapshot asks it whether the fallback plan is needed,
    and a snapshot stays valid until its ``until`` (which is how the sweep and every
    cache see a grace end: nothing is stored then, the answers change)."""
    if subscription is None:
        return StatusAccess(Access.FALLBACK, "no subscription", None)
    status = subscription.status
    access = policy.by_status[status]
    ends = grace_end(subscription, policy)
    if ends is None:
        words = access.value.replace("_", "-")
        return StatusAccess(access, f"status {status.value} grants {words} access", None)
    if now >= ends:
        since = f"{subscription.past_due_since:%Y-%m-%d}"
        return StatusAccess(policy.after_grace, f"past due since {since}, grace ended", None)
    return StatusAccess(access, f"past due, in grace until {ends:%Y-%m-%d %H:%M}", ends)
