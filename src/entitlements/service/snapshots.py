"""Loading what resolution needs for one owner, inside a unit of work: the one place that
knows which records decide an owner's entitlements (a constant number of queries)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from entitlements.domain.access import Access, AccessPolicy, status_access
from entitlements.domain.assignment import check_may_assign
from entitlements.domain.due import as_of
from entitlements.domain.override import Override
from entitlements.domain.owner import Owner
from entitlements.domain.resolution import Snapshot, resolve
from entitlements.domain.scheduled import PendingKind
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import FOREVER, Counter, usage_period_start
from entitlements.errors import EntitlementsError
from entitlements.ports import UnitOfWork

__all__ = [
    "current_usage",
    "in_force",
    "load_past_snapshot",
    "load_snapshot",
    "pending_plan_refusal",
    "resolve_with",
]


def pending_plan_refusal(uow: UnitOfWork, subscription: Subscription, now: datetime) -> str | None:
    """Why the plan of the subscription's pending change, due by ``now``, can no longer
    be assigned (archived for an owner that does not hold it, retired, gone): the rule
    the sweep applies when it stores the change, and every read applies before it, so
    answers never show a change the sweep will record as failed. ``None``: it may."""
    pending = subscription.scheduled
    if pending is None or pending.kind is not PendingKind.CHANGE or pending.plan_key is None:
        return None
    if pending.at > now:
        return None
    held = as_of(attrs.evolve(subscription, scheduled=None), pending.at)
    if held.is_terminal:
        return None  # ended first: the ending clears it
    try:
        plan = uow.plans.get(pending.plan_key, pending.plan_version)
        check_may_assign(plan, held.owner, held)
    except EntitlementsError as refused:
        return str(refused)
    return None


def in_force(uow: UnitOfWork, subscription: Subscription, now: datetime) -> Subscription:
    """The subscription as time has made it by ``now``, as the sweep will store it: a due
    pending change whose plan can no longer be assigned is left out (one plan read, only
    while such a change waits for the sweep)."""
    if subscription.scheduled is not None and pending_plan_refusal(uow, subscription, now):
        subscription = attrs.evolve(subscription, scheduled=None)
    return as_of(subscription, now)


def load_snapshot(uow: UnitOfWork, owner: Owner, now: datetime, policy: AccessPolicy) -> Snapshot:
    """Resolve ``owner`` at ``now`` from what is stored, stamped with the owner's terms
    revision (read first: a terms write that commits between these reads moves it, and
    the snapshot is then refused by any write that enforces it)."""
    revision = uow.revisions.current(owner)
    return resolve_with(
        uow, owner, uow.subscriptions.current(owner), now, policy, revision=revision
    )


def load_past_snapshot(
    uow: UnitOfWork, owner: Owner, at: datetime, policy: AccessPolicy
) -> Snapshot:
    """Resolve ``owner`` at a past instant from what was in force then: the subscription
    as its history stood at ``at`` and the overrides set at ``at`` (removed ones too),
    read exactly as `load_snapshot` reads the current ones — time applied as of ``at``,
    the plan version the subscription held. The fallback plan is the one the policy
    names, at its latest version. The revision is 0: nothing enforces a past answer."""
    return resolve_with(
        uow,
        owner,
        uow.subscriptions.at(owner, at),
        at,
        policy,
        overrides=uow.overrides.at(owner, at),
    )


def resolve_with(
    uow: UnitOfWork,
    owner: Owner,
    subscription: Subscription | None,
    now: datetime,
    policy: AccessPolicy,
    *,
    revision: int = 0,
    overrides: Sequence[Override] | None = None,
) -> Snapshot:
    """Resolve ``owner`` as if it held ``subscription`` (previews pass a hypothetical one)
    and ``overrides`` (by default, the ones stored now)."""
    if subscription is not None:
        subscription = in_force(uow, subscription, now)
    plan = (
        None
        if subscription is None
        else uow.plans.get(subscription.plan_key, subscription.plan_version)
    )
    fallback = None
    if (
        policy.fallback_plan is not None
        and status_access(subscription, policy, now).access is Access.FALLBACK
    ):
        fallback = uow.plans.find(policy.fallback_plan)
    return resolve(
        owner,
        subscription,
        plan,
        uow.overrides.for_owner(owner) if overrides is None else overrides,
        now,
        policy,
        fallback,
        revision,
    )


def current_usage(uow: UnitOfWork, snapshot: Snapshot) -> dict[str, int]:
    """Units in use (used + reserved) of every limit the snapshot knows, in the periods
    the snapshot's limits count in, at the snapshot's time (reservations that ran out
    by then are not in use, settled or not). One read, whatever the number of limits."""
    owner = snapshot.owner
    keys = [
        (owner, name, usage_period_start(snapshot, snapshot.limit_definition(name)))
        for name in snapshot.limits
    ]
    if "seats" not in snapshot.limits:
        keys.append((owner, "seats", FOREVER))
    found = uow.usage.counters_of(keys)
    usage: dict[str, int] = {}
    for key in keys:
        stored = found.get(key)
        if stored is None:
            continue
        counter: Counter = stored[0]
        if counter.holds_expired(snapshot.resolved_at):  # ran out: no longer held
            expired = uow.usage.expired_held(*key, snapshot.resolved_at)
            counter = attrs.evolve(
                counter, reserved=counter.reserved - sum(r.amount for r in expired)
            )
        name = key[1]
        units = (
            counter.used
            if name == "seats" and name not in snapshot.limits
            else (counter.used + counter.reserved)
        )
        if units:
            usage[name] = units
    return usage
