"""Loading what resolution needs for one owner, inside a unit of work: the one place that
knows which records decide an owner's entitlements (a constant number of queries)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from entitlements.domain.access import Access, AccessPolicy, status_access
from entitlements.domain.assignment import check_may_assign
from entitlements.domain.due import as_of
from entitlements.domain.override import Override
from entitlements.domain.owner import Owner
from entitlements.domain.plan_change import lowers_a_limit, may_lower_a_limit, over_quota
from entitlements.domain.resolution import Snapshot, resolve
from entitlements.domain.scheduled import PendingChange, PendingKind
from entitlements.domain.subscription import Subscription, with_changes
from entitlements.domain.usage import FOREVER, Counter, usage_period_start
from entitlements.errors import EntitlementsError
from entitlements.ports import UnitOfWork

__all__ = [
    "current_usage",
    "in_force",
    "load_past_snapshot",
    "load_snapshot",
    "pending_refusal",
    "resolve_with",
]

_INSTANT = timedelta(microseconds=1)
"""How long an answer that hung on usage as stored is valid: at its own instant only."""


def pending_refusal(
    uow: UnitOfWork, subscription: Subscription, now: datetime, policy: AccessPolicy
) -> str | None:
    """Why the subscription's pending change, due by ``now``, cannot apply at its
    instant: the lifecycle rules run again then — its plan must still be assignable (not
    archived for an owner that does not hold it, not retired, still existing), and a
    change scheduled with ``if_over_quota="refuse"`` must not leave usage (as stored now)
    over a limit it lowers. The sweep stores this decision; every read applies it first,
    so no answer shows a change the sweep will record as failed. ``None``: it applies."""
    return _pending_decision(uow, subscription, now, policy)[0]


def _pending_decision(
    uow: UnitOfWork, subscription: Subscription, now: datetime, policy: AccessPolicy
) -> tuple[str | None, bool]:
    """`pending_refusal`, and whether the decision hung on usage as stored (a due change
    under REFUSE that lowers a limit): usage may move before the sweep stores it."""
    pending = subscription.scheduled
    if pending is None or pending.kind is not PendingKind.CHANGE or pending.at > now:
        return None, False
    held = as_of(with_changes(subscription, scheduled=None), pending.at)
    if held.is_terminal:
        return None, False  # ended first: the ending clears it
    refused = _plan_refusal(uow, pending, held)
    if refused is not None or pending.if_over_quota != "refuse":
        return refused, False
    return _quota_refusal(uow, held, as_of(subscription, pending.at), pending.at, policy)


def _plan_refusal(uow: UnitOfWork, pending: PendingChange, held: Subscription) -> str | None:
    if pending.plan_key is None:
        return None
    try:
        check_may_assign(uow.plans.get(pending.plan_key, pending.plan_version), held.owner, held)
    except EntitlementsError as refused:
        return str(refused)
    return None


def _quota_refusal(
    uow: UnitOfWork, held: Subscription, will: Subscription, at: datetime, policy: AccessPolicy
) -> tuple[str | None, bool]:
    """The owner is resolved (twice) only when the move can lower a limit: its plans'
    limits and the seats bought say so without resolving."""
    was_plan = uow.plans.get(held.plan_key, held.plan_version)
    if not may_lower_a_limit(held, was_plan, will, uow.plans.get(will.plan_key, will.plan_version)):
        return None, False
    was = resolve_with(uow, held.owner, held, at, policy)
    then = resolve_with(uow, held.owner, will, at, policy)
    if not lowers_a_limit(was, then):
        return None, False  # an upgrade: usage cannot refuse it
    found = over_quota(was, then, current_usage(uow, was))
    if not found:
        return None, True
    words = ", ".join(f"{o.metric} {o.used} > {o.limit}" for o in found)
    return f"usage over the new limits: {words}", True


def in_force(
    uow: UnitOfWork, subscription: Subscription, now: datetime, policy: AccessPolicy
) -> Subscription:
    """The subscription as time has made it by ``now``, as the sweep will store it: a due
    pending change the rules refuse at its instant (`pending_refusal`) is left out (reads
    only while such a change waits for the sweep)."""
    return _in_force(uow, subscription, now, policy)[0]


def _in_force(
    uow: UnitOfWork, subscription: Subscription, now: datetime, policy: AccessPolicy
) -> tuple[Subscription, bool]:
    """`in_force`, and whether it hung on usage as stored (`_pending_decision`)."""
    if subscription.scheduled is None:
        return as_of(subscription, now), False
    refused, on_usage = _pending_decision(uow, subscription, now, policy)
    if refused:
        subscription = with_changes(subscription, scheduled=None)
    return as_of(subscription, now), on_usage


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
    fleeting = False
    if subscription is not None:
        subscription, fleeting = _in_force(uow, subscription, now, policy)
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
    snapshot = resolve(
        owner,
        subscription,
        plan,
        uow.overrides.for_owner(owner) if overrides is None else overrides,
        now,
        policy,
        fallback,
        revision,
    )
    if fleeting:  # holds at its own instant only: never kept, never answered from later
        until = now + _INSTANT
        return attrs.evolve(snapshot, valid_until=until, expires_ts=until.timestamp())
    return snapshot


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
