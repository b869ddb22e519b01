"""The lifecycle steps every entry point composes inside its own unit of work.

`entitlements.domain.lifecycle` decides what a change does; these functions do the
reading and writing around it on a `Transaction` the caller opened and authorized: take
the owner's terms lock and read the subscription as time has made it (`load`), start one
(`start`), apply an event (`apply`), convert, change plan or seats with the over-quota
check (`convert`, `change_plan`, `change_seats`). ``ents.subscriptions``, billing, contract
conversion and the sweep call them; none of them calls another use case, so a call is
authorized once and reads the subscription once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain import lifecycle
from entitlements.domain.actor import Actor
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import parse_enum
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.due import as_of
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan, check_trial_days
from entitlements.domain.plan_change import (
    SubscriptionChange,
    lowers_a_limit,
    may_lower_a_limit,
    over_quota,
)
from entitlements.domain.resolution import usage_period_of
from entitlements.domain.subscription import Event, Subscription, check_allowed, trial_end
from entitlements.domain.usage import OverQuota, OverQuotaPolicy
from entitlements.errors import (
    ContractPending,
    InvalidInput,
    OverQuotaRefused,
    StaleWrite,
    SubscriptionExists,
    SubscriptionNotFound,
)
from entitlements.service.assignment import PlanAssignment
from entitlements.service.due import bring_to_now
from entitlements.service.notifications import notify_subscription
from entitlements.service.runtime import Transaction
from entitlements.service.snapshots import current_usage, resolve_with

__all__ = [
    "Deferred",
    "apply",
    "billing_terms",
    "change_plan",
    "change_seats",
    "convert",
    "load",
    "load_many",
    "set_plan_manager",
    "start",
    "store_many",
]

Fields = Callable[[Subscription], Mapping[str, Any]]
Inspect = Callable[[Subscription, Subscription], None]


def billing_terms(plan: Plan, now: datetime, cycle: BillingCycle | None) -> dict[str, Any]:
    """A period anchored at ``now`` on the plan's billing cycle (monthly for free plans,
    whose metered usage still resets each period)."""
    chosen = cycle or (plan.price.cycle if plan.price is not None else BillingCycle.monthly())
    return {
        "cycle": chosen,
        "cycle_anchor": now,
        "current_period": chosen.period_containing(now, now),
    }


def store(tx: Transaction, step: lifecycle.Step, *, new: bool = False) -> Subscription:
    """Write the step's new state and record its audit facts (a fact about the new state
    records it as stored, with its revision; steps time made record each state between)."""
    repository = tx.uow.subscriptions
    stored = repository.add(step.after) if new else repository.update(step.after)
    _record_facts(tx, step, stored)
    return stored


def store_many(tx: Transaction, steps: Sequence[lifecycle.Step]) -> list[Subscription]:
    """`store` for the steps of many owners' subscriptions, their new states in one
    write (each still refused when its row moved since it was read)."""
    stored = list(tx.uow.subscriptions.update_many([step.after for step in steps]))
    for step, written in zip(steps, stored, strict=True):
        _record_facts(tx, step, written)
    return stored


def _record_facts(tx: Transaction, step: lifecycle.Step, stored: Subscription) -> None:
    for fact in step.facts:
        event = tx.record(
            fact.actor,
            fact.action,
            fact.target,
            owner=fact.after.owner,
            before=fact.before,
            after=fact.after if step.due else stored,
            reason=fact.reason,
        )
        notify_subscription(tx, fact.action, fact.before, fact.after, event.id, fact.reason)


Writer = Callable[[Transaction, lifecycle.Step], Subscription]
"""How a change's step is written: `store` at once, or a `Deferred` for many at once."""


@attrs.define
class Deferred:
    """A `Writer` that keeps the steps of a unit of work handling many owners, for one
    `store_many` (`flush`) once all are decided. What it returns is the step's new state
    as decided, not yet stored (its revision the one read)."""

    steps: list[lifecycle.Step] = attrs.field(factory=list)

    def __call__(self, tx: Transaction, step: lifecycle.Step) -> Subscription:
        self.steps.append(step)
        return step.after

    def flush(self, tx: Transaction) -> None:
        if self.steps:
            store_many(tx, self.steps)
        self.steps.clear()


# -- reading under the lock -------------------------------------------------------------


def load(
    tx: Transaction,
    owner: Owner,
    *,
    expected_revision: int | None = None,
    with_plans: Sequence[tuple[str, int | None]] = (),
) -> Subscription:
    """The owner's subscription as time has made it, stored so, under the owner's terms
    lock: taken before anything the change is checked against is read, the subscription
    included, so a write that committed meanwhile is built upon, not overwritten. Only its
    usage period says which counters to stamp, so they are stamped once it is read,
    before any usage is. ``expected_revision``: refuse with `StaleWrite` if the stored
    revision is another."""
    tx.change_terms(owner, stamp=False)
    current = tx.uow.subscriptions.current(owner, with_plans=with_plans)
    if current is None:
        raise SubscriptionNotFound(owner)
    if expected_revision is not None and current.revision != expected_revision:
        raise StaleWrite("subscription", current.id, expected_revision)
    tx.stamp_terms(owner, usage_period_of(as_of(current, tx.now), tx.now).start)
    current, _ = bring_to_now(tx, current)
    return current


def load_many(
    tx: Transaction,
    owners: Sequence[Owner],
    *,
    with_plans: Sequence[tuple[str, int | None]] = (),
) -> dict[Owner, Subscription]:
    """`load` for many owners (in a stable order) at once: their terms locks in one
    write, then their subscriptions, overrides and the plan versions ``with_plans`` in
    one read each, their counters stamped in one write; each subscription then brought
    to now. Owners with no subscription are left out."""
    tx.change_terms_of(owners)
    found = tx.uow.subscriptions.current_many(owners, with_plans=with_plans)
    tx.uow.revisions.stamp_many(
        {owner: usage_period_of(as_of(s, tx.now), tx.now).start for owner, s in found.items()}
    )
    return {owner: bring_to_now(tx, s)[0] for owner, s in found.items()}


# -- starting ----------------------------------------------------------------------------


def trial_fields(plan: Plan, now: datetime, trial_days: int | None) -> dict[str, Any]:
    """When a trial of ``plan`` started at ``now`` ends (``trial_days`` overrides the
    plan's)."""
    days = plan.trial_days if trial_days is None else check_trial_days(trial_days)
    return {"trial_ends_at": trial_end(now, days)}


def start(
    tx: Transaction,
    rules: PlanAssignment,
    who: Actor,
    event: Event,
    owner: Owner,
    plan: Plan,
    *,
    seats: int | None = None,
    cycle: BillingCycle | None = None,
    trial_days: int | None = None,
    reason: str | None = None,
    **fields: Any,
) -> Subscription:
    """Start a trial, subscription or checkout on ``plan`` for an owner with none live
    (``trial_days``: a trial's length, when not the plan's)."""
    tx.change_terms(owner)
    rules.check(tx, owner, plan, None, who)
    terms: dict[str, Any] = {**fields, **billing_terms(plan, tx.now, cycle)}
    if event is Event.START_TRIAL:
        terms.update(trial_fields(plan, tx.now, trial_days))

    def begun(current: Subscription | None) -> lifecycle.Step:
        return lifecycle.begin(
            event,
            id=tx.runtime.new_id(),
            owner=owner,
            plan_key=plan.key,
            plan_version=plan.version,
            now=tx.now,
            current=current,
            actor=who,
            reason=reason,
            seats=seats,
            **terms,
        )

    try:
        # the store's one-live-subscription rule says whether the owner has one: no read
        return store(tx, begun(None), new=True)
    except SubscriptionExists:
        # it has, as stored; time may have ended it since (a trial run out before any
        # sweep), and once that is stored the owner may start anew
        current = tx.uow.subscriptions.current(owner)
        if current is None:
            raise
        current, _ = bring_to_now(tx, current)
        return store(tx, begun(current), new=True)


# -- changing ----------------------------------------------------------------------------


def apply(
    tx: Transaction,
    who: Actor,
    current: Subscription,
    event: Event,
    fields: Fields | None = None,
    *,
    action: str | None = None,
    reason: str | None = None,
    inspect: Inspect | None = None,
    writer: Writer = store,
) -> Subscription:
    """Apply ``event`` to ``current`` (read with `load`): the table refuses it first, then
    ``fields`` computes the event's own updates from ``current`` and ``inspect`` sees
    before and after, before anything is written (by ``writer``)."""
    check_allowed(current, event)
    changes = fields(current) if fields is not None else {}
    step = lifecycle.change(
        current, event, tx.now, changes, actor=who, action=action, reason=reason
    )
    if inspect is not None:
        inspect(current, step.after)
    return writer(tx, step)


SET_PLAN_MANAGER = "set_plan_manager"
"""The action a plan manager amendment is audited under, whoever makes it."""


def set_plan_manager(
    tx: Transaction, who: Actor, current: Subscription, member: str | None, reason: str | None
) -> Subscription:
    """Seed 003's plan manager (the member whose card pays) named anew, ``None`` for
    nobody: staff's transfer, the provider's checkout and `Subscriptions.set_plan_manager`
    all write this one amendment, so the stored row and its audit entry cannot drift apart
    by path."""
    return apply(
        tx,
        who,
        current,
        Event.AMEND,
        lambda _: {"plan_manager": member},
        action=SET_PLAN_MANAGER,
        reason=reason,
    )


class _ReadOnce:
    """The unit of work as resolving twice (before and after a change) sees it: the
    owner's overrides and each plan version are read once."""

    def __init__(self, uow: Any, seen: dict[tuple[str, int | None], Plan] | None) -> None:
        self._uow = uow
        self.plans = self
        self.overrides = self
        self._plans: dict[tuple[str, int | None], Any] = dict(seen or {})
        self._overrides: dict[Owner, Any] = {}

    def get(self, key: str, version: int | None = None) -> Plan:
        if (key, version) not in self._plans:
            self._plans[(key, version)] = self._uow.plans.get(key, version)
        plan: Plan = self._plans[(key, version)]
        return plan

    def find(self, key: str) -> Plan | None:
        found: Plan | None = self._uow.plans.find(key)
        return found

    def for_owner(self, owner: Owner) -> Any:
        if owner not in self._overrides:
            self._overrides[owner] = self._uow.overrides.for_owner(owner)
        return self._overrides[owner]


@attrs.define
class QuotaGuard:
    """The over-quota check a change that may lower a limit runs between deciding and
    writing: usage the change puts over a limit is refused (`OverQuotaRefused`, audited
    as refused) or, when the policy allows it, applied and audited."""

    tx: Transaction
    who: Actor
    name: str
    policy: OverQuotaPolicy
    reason: str | None = None
    seen: dict[tuple[str, int | None], Plan] | None = None
    found: tuple[OverQuota, ...] = ()

    def __call__(self, before: Subscription, after: Subscription) -> None:
        tx, policy = self.tx, self.tx.runtime.policy
        uow: Any = _ReadOnce(tx.uow, self.seen)
        if _keeps_every_limit(uow, before, after):
            return
        was = resolve_with(uow, before.owner, before, tx.now, policy)
        will = resolve_with(uow, before.owner, after, tx.now, policy)
        if lowers_a_limit(was, will):
            self.found = over_quota(was, will, current_usage(tx.uow, was))
        if not self.found:
            return
        report = {"over_quota": [attrs.asdict(o) for o in self.found]}
        if self.policy is OverQuotaPolicy.REFUSE:
            refused = OverQuotaRefused(before.owner, self.found)
            # on record once the refused unit of work has rolled back
            tx.runtime.record_refusal(
                tx.tenant,
                self.who,
                "subscription.over_quota_refused",
                self.name,
                owner=before.owner,
                after=report,
                reason=str(refused),
            )
            raise refused
        tx.record(
            self.who,
            "subscription.over_quota",
            f"subscription:{before.id}",
            owner=before.owner,
            after=report,
            reason=self.reason,
        )


def _keeps_every_limit(uow: Any, before: Subscription, after: Subscription) -> bool:
    """Whether the change cannot bring a limit down, from the two plan versions and the
    seats bought alone (`may_lower_a_limit`): then nothing can be over quota because of
    it, and neither side is resolved. Only for a change that keeps the status and the
    pause (access follows them) and leaves no pending change to apply on reading."""
    if before.status is not after.status or before.pause != after.pause:
        return False
    if after.scheduled is not None and after.scheduled != before.scheduled:
        return False
    was = uow.get(before.plan_key, before.plan_version)
    will = uow.get(after.plan_key, after.plan_version)
    return not may_lower_a_limit(before, was, after, will)


def apply_checked(
    tx: Transaction,
    who: Actor,
    current: Subscription,
    event: Event,
    fields: Fields,
    if_over_quota: OverQuotaPolicy,
    *,
    action: str | None = None,
    reason: str | None = None,
    seen: dict[tuple[str, int | None], Plan] | None = None,
    writer: Writer = store,
) -> SubscriptionChange:
    """`apply`, plus the over-quota check against current usage (``seen``: plan versions
    the change read already)."""
    policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
    name = f"subscription.{action or event.value}"
    guard = QuotaGuard(tx, who, name, policy, reason, seen)
    stored = apply(
        tx, who, current, event, fields, action=action, reason=reason, inspect=guard, writer=writer
    )
    return SubscriptionChange(stored, guard.found)


def target_plan(
    tx: Transaction,
    rules: PlanAssignment,
    who: Actor,
    current: Subscription,
    plan_key: str | None,
    version: int | None,
) -> Plan:
    """The plan a conversion moves to: the version asked for, the one held when no plan
    is named, else the plan's latest; checked for assignment."""
    key = plan_key or current.plan_key
    if version is not None:
        plan = tx.uow.plans.get(key, version)
    elif key == current.plan_key and plan_key is None:
        plan = tx.uow.plans.get(key, current.plan_version)
    else:
        plan = tx.uow.plans.get(key)
    rules.check(tx, current.owner, plan, current, who)
    return plan


def refuse_if_contract_pending(tx: Transaction, owner: Owner) -> None:
    """`ContractPending` while the owner has a contract out for signature."""
    pending = [
        c.id for c in tx.uow.contracts.for_owner(owner) if not c.is_closed and c.expires_at > tx.now
    ]
    if pending:
        raise ContractPending(owner, pending)


@attrs.frozen
class Conversion:
    """What a conversion applies on top of the plan: every field is optional."""

    plan_key: str | None = None
    version: int | None = None
    given: Mapping[str, Any] = attrs.field(factory=dict)
    """Fields set as given (``seats``, ``notes``); those left out keep their value."""
    cycle: BillingCycle | None = None
    keep_cancellation: bool = False
    link: ContractLink | None = None
    without_contract: bool = False


def convert(
    tx: Transaction,
    rules: PlanAssignment,
    who: Actor,
    current: Subscription,
    asked: Conversion,
    if_over_quota: OverQuotaPolicy,
    *,
    reason: str | None = None,
) -> SubscriptionChange:
    """Trial (or pending checkout) → active on the plan ``asked`` names; the first paid
    period starts now."""

    def fields(current: Subscription) -> dict[str, Any]:
        if asked.link is None and asked.without_contract is not True:
            refuse_if_contract_pending(tx, current.owner)
        plan = target_plan(tx, rules, who, current, asked.plan_key, asked.version)
        changes: dict[str, Any] = {
            "plan_key": plan.key,
            "plan_version": plan.version,
            **billing_terms(plan, tx.now, asked.cycle),
        }
        changes.update(asked.given)
        if not asked.keep_cancellation:
            changes["cancel_at_period_end"] = False
        # a conversion starts new paid terms: a change scheduled on the trial's is dropped
        changes["scheduled"] = None
        if asked.link is not None:
            changes["metadata"] = {**current.metadata, "contract_id": asked.link.contract_id}
            changes["contract"] = asked.link
        return changes

    return apply_checked(
        tx, who, current, Event.ACTIVATE, fields, if_over_quota, action="convert", reason=reason
    )


def change_plan(
    tx: Transaction,
    rules: PlanAssignment,
    who: Actor,
    current: Subscription,
    plan_key: str,
    if_over_quota: OverQuotaPolicy,
    *,
    version: int | None = None,
    reason: str | None = None,
    clears_pending: bool = False,
    action: str | None = None,
    writer: Writer = store,
) -> SubscriptionChange:
    """Move to another plan (its latest version, or ``version``); ``clears_pending``
    drops the pending change (the payment provider changed the plan: its word wins over
    what was scheduled here); ``action`` names the use case in the audit trail when it is
    not ``change_plan`` (a migration's ``migrate``)."""
    seen: dict[tuple[str, int | None], Plan] = {}

    def fields(current: Subscription) -> dict[str, Any]:
        # the plan left behind is read with the one moved to: the over-quota check
        # compares the two
        plan, left = tx.uow.plans.get_many(
            [(plan_key, version), (current.plan_key, current.plan_version)]
        )
        rules.check(tx, current.owner, plan, current, who)
        seen[(plan.key, plan.version)] = plan
        seen[(left.key, left.version)] = left
        if (plan.key, plan.version) == (current.plan_key, current.plan_version):
            raise InvalidInput(
                "plan_key", f"{current.owner} is already on {plan.key} v{plan.version}"
            )
        changes: dict[str, Any] = {"plan_key": plan.key, "plan_version": plan.version}
        if clears_pending:
            changes["scheduled"] = None
        new_cycle = plan.price.cycle if plan.price is not None else current.cycle
        if new_cycle != current.cycle and current.current_period is not None:
            changes.update(cycle=new_cycle, cycle_anchor=current.current_period.end)
        return changes

    return apply_checked(
        tx,
        who,
        current,
        Event.CHANGE_PLAN,
        fields,
        if_over_quota,
        action=action,
        reason=reason,
        seen=seen,
        writer=writer,
    )


def change_seats(
    tx: Transaction,
    who: Actor,
    current: Subscription,
    seats: int,
    if_over_quota: OverQuotaPolicy,
    *,
    reason: str | None = None,
) -> SubscriptionChange:
    """Set the purchased seats (fewer than assigned: refused unless allowed)."""
    return apply_checked(
        tx,
        who,
        current,
        Event.CHANGE_SEATS,
        lambda _: {"seats": seats},
        if_over_quota,
        reason=reason,
    )
