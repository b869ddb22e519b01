"""What a plan change would do to an owner: the entitlement diff between two snapshots
and the limits current usage would exceed (seed 002's missing over-quota warning)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import attrs

from entitlements.domain.plan import Action, Plan
from entitlements.domain.resolution import Snapshot
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import OverQuota

__all__ = [
    "FeatureChange",
    "LimitChange",
    "PlanChangePreview",
    "SubscriptionChange",
    "lowers_a_limit",
    "may_lower_a_limit",
    "over_quota",
    "preview",
]


@attrs.frozen
class FeatureChange:
    """One feature whose granted actions differ between two plans."""

    key: str
    """The feature name."""
    before: frozenset[Action]
    """Actions granted before the change."""
    after: frozenset[Action]
    """Actions granted after the change."""

    @property
    def gained(self) -> frozenset[Action]:
        """Actions the change grants that were not granted."""
        return self.after - self.before

    @property
    def lost(self) -> frozenset[Action]:
        """Actions the change takes away."""
        return self.before - self.after


@attrs.frozen
class LimitChange:
    """``None`` is unlimited."""

    name: str
    """The limit name."""
    before: int | None
    """The value before the change."""
    after: int | None
    """The value after the change."""

    @property
    def raised(self) -> bool:
        """Whether the change gives more (unlimited counts as more than any number)."""
        if self.after is None:
            return self.before is not None
        return self.before is not None and self.after > self.before


@attrs.frozen
class PlanChangePreview:
    """Everything a proposed change would do, computed without changing anything. All of
    it takes effect at ``effective_at`` (now, or the instant a preview was asked for)."""

    from_plan: tuple[str, int] | None
    """The plan key and version held now (``None``: no plan)."""
    to_plan: tuple[str, int] | None
    """The plan key and version after the change (``None``: no plan)."""
    features_gained: tuple[FeatureChange, ...]
    """Features with actions the change grants."""
    features_lost: tuple[FeatureChange, ...]
    """Features with actions the change takes away; show them before the customer confirms.
    """
    limits_raised: tuple[LimitChange, ...]
    """Limits that go up."""
    limits_lowered: tuple[LimitChange, ...]
    """Limits that go down."""
    over_quota: tuple[OverQuota, ...]
    """Limits the change would bring below current usage: exactly what the change refuses
    (``if_over_quota=REFUSE``) or applies and reports (`over_quota`)."""
    effective_at: datetime
    """When the change would apply."""
    usage_as_of: datetime | None = None
    """When the usage ``over_quota`` compares was measured: a preview for a later
    instant projects usage as stored now, it does not forecast it."""
    invoice_delta: Decimal | None = None
    """What the change adds to (negative: takes from) the current period's invoice: the
    draft after making the change at ``effective_at`` less the draft now (``None``: not
    billed by period)."""


@attrs.frozen
class SubscriptionChange:
    """A change that may leave the owner over a limit: the stored subscription, and the
    limits that current usage passes because of it (empty when none)."""

    subscription: Subscription
    """The subscription as stored after the change."""
    over_quota: tuple[OverQuota, ...] = ()
    """Limits current usage passes because of the change (empty: none)."""


def _granted(snapshot: Snapshot, key: str) -> frozenset[Action]:
    return frozenset(a for a in Action if snapshot.allows(key, a))


def lowers_a_limit(before: Snapshot, after: Snapshot) -> bool:
    """Whether the change brings any limit down (or puts a limit where there was none):
    only then can usage be over a limit because of it, so only then is usage worth
    reading. Every limit ``before`` defines is compared, and seats always."""
    for metric in (*before.limits, "seats"):
        was, will = before.limit(metric, 0), after.limit(metric, 0)
        if will is not None and (was is None or will < was):
            return True
    return False


def may_lower_a_limit(before: Subscription, was: Plan, after: Subscription, will: Plan) -> bool:
    """Whether moving from ``before`` on ``was`` to ``after`` on ``will`` could bring a
    limit down (`lowers_a_limit` of their resolutions): the test that spares resolving
    both sides when it cannot. The owner's overrides are the same on both sides and
    keep the order of the values under them, so only the plans' limits and the seats
    bought are compared; any add-on on either side counts as "could" (an add-on the new
    plan does not allow goes, and its amount with it)."""
    if before.addons or after.addons:
        return True
    for metric in {*was.limits, "seats"}:
        then, now = _plan_value(before, was, metric), _plan_value(after, will, metric)
        if now is not None and (then is None or now < then):
            return True
    return False


def _plan_value(subscription: Subscription, plan: Plan, metric: str) -> int | None:
    """The value ``plan`` gives ``metric`` for ``subscription`` (0 when it has none, as
    `lowers_a_limit` counts a limit a snapshot does not define): the seats bought are the
    ``seats`` limit, as resolution has it, whether or not the plan names one."""
    if metric == "seats" and subscription.seats is not None:
        return subscription.seats
    limit = plan.limits.get(metric)
    return 0 if limit is None else limit.value


def over_quota(
    before: Snapshot, after: Snapshot, usage: Mapping[str, int]
) -> tuple[OverQuota, ...]:
    """The over-quota rule, the one both a preview and the change itself apply: the limits
    of ``after`` that current ``usage`` (metric to units in use) passes *because of the
    change*, that is where the limit came down (or was unlimited before). An owner already
    over a soft limit the change keeps or raises is not news, and a change that keeps or
    raises every limit is never refused for it."""
    found = []
    for metric in sorted(usage):
        limit = after.limit(metric, 0)
        if limit is None or usage[metric] <= limit:
            continue
        was = before.limit(metric, 0)
        if was is None or limit < was:
            found.append(OverQuota(metric, limit, usage[metric]))
    return tuple(found)


def _feature_changes(before: Snapshot, after: Snapshot) -> list[FeatureChange]:
    """Every feature either side decides, with the actions each grants."""
    keys = {d.key for d in (*before.explain_all(), *after.explain_all()) if d.limit is None}
    return [FeatureChange(k, _granted(before, k), _granted(after, k)) for k in sorted(keys)]


def _limit_changes(before: Snapshot, after: Snapshot) -> list[LimitChange]:
    """Every limit whose value differs between the two sides."""
    names = sorted(set(before.limits) | set(after.limits))
    pairs = ((n, before.limit(n, 0), after.limit(n, 0)) for n in names)
    return [LimitChange(n, was, will) for n, was, will in pairs if was != will]


def _plan_of(snapshot: Snapshot) -> tuple[str, int] | None:
    if snapshot.plan_key is None:
        return None
    return snapshot.plan_key, snapshot.plan_version or 0


def preview(
    before: Snapshot,
    after: Snapshot,
    usage: Mapping[str, int],
    at: datetime,
    *,
    usage_as_of: datetime | None = None,
) -> PlanChangePreview:
    """What moving from ``before`` to ``after`` does, with ``usage`` in use at ``at``."""
    features = _feature_changes(before, after)
    limits = _limit_changes(before, after)
    return PlanChangePreview(
        from_plan=_plan_of(before),
        to_plan=_plan_of(after),
        features_gained=tuple(c for c in features if c.gained),
        features_lost=tuple(c for c in features if c.lost),
        limits_raised=tuple(c for c in limits if c.raised),
        limits_lowered=tuple(c for c in limits if not c.raised),
        over_quota=over_quota(before, after, usage),
        effective_at=at,
        usage_as_of=at if usage_as_of is None else usage_as_of,
    )
