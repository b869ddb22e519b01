"""Use cases for an owner's subscription: trial, convert, change plan and seats, suspend,
resume, past due, cancel (now or at period end), expire, amend.

Each call is one unit of work: it loads the owner's subscription, asks the state machine
for the new state (which refuses illegal events before anything is written), stores it
with an optimistic-concurrency check and records the audit event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.addon import AddOn
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import (
    MAX_COUNT,
    check_bool,
    check_instance,
    check_key,
    check_optional_count,
    check_optional_id,
    check_reason,
    check_version,
    parse_enum,
)
from entitlements.domain.due import as_of
from entitlements.domain.instant import optional_given_utc
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import Plan
from entitlements.domain.plan_change import (
    PlanChangePreview,
    SubscriptionChange,
    over_quota,
    preview,
)
from entitlements.domain.resolution import usage_period_of
from entitlements.domain.subscription import (
    Event,
    Subscription,
    check_allowed,
    create,
    transition,
    trial_end,
)
from entitlements.domain.usage import OverQuota, OverQuotaPolicy
from entitlements.errors import (
    InvalidInput,
    NotAuthorized,
    OverQuotaRefused,
    StaleWrite,
    SubscriptionNotFound,
)
from entitlements.service.due import bring_to_now
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import current_usage, resolve_with

__all__ = ["Subscriptions"]

UNSET: Any = attrs.NOTHING


def billing_terms(plan: Plan, now: datetime, cycle: BillingCycle | None) -> dict[str, Any]:
    """A period anchored at ``now`` on the plan's billing cycle (monthly for free plans,
    whose metered usage still resets each period)."""
    chosen = cycle or (plan.price.cycle if plan.price is not None else BillingCycle.monthly())
    return {
        "cycle": chosen,
        "cycle_anchor": now,
        "current_period": chosen.period_containing(now, now),
    }


def _caused_by_change(over: OverQuota, limit_before: int | None, usage: dict[str, int]) -> bool:
    """Over the new limit because of the change: the limit went down, or the owner was
    within the old one (an owner already over a soft limit is not news)."""
    return limit_before is None or over.limit < limit_before or usage[over.metric] <= limit_before


class Subscriptions:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- reading ---------------------------------------------------------------------

    def find(self, owner: Owner, *, actor: Actor | str | None = None) -> Subscription | None:
        """The owner's most recent subscription (possibly ended), or ``None``. With
        ``actor``, the authorizer decides first (``subscription.read``)."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            self._authorize_read(uow, owner, actor)
            return uow.subscriptions.current(owner)

    def get(self, owner: Owner, *, actor: Actor | str | None = None) -> Subscription:
        found = self.find(owner, actor=actor)
        if found is None:
            raise SubscriptionNotFound(owner)
        return found

    def history(self, owner: Owner, *, actor: Actor | str | None = None) -> Sequence[Subscription]:
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            self._authorize_read(uow, owner, actor)
            return uow.subscriptions.history(owner)

    def _authorize_read(self, uow: Any, owner: Owner, actor: Actor | str | None) -> None:
        if actor is None:
            return
        who = as_actor(actor)
        try:
            self._rt.authorizer.authorize(
                who, "subscription.read", owner=owner, subject=None, uow=uow
            )
        except NotAuthorized as denied:
            self._rt.record_refusal(
                owner.tenant,
                who,
                "authorization.denied",
                f"owner:{owner}",
                owner=owner,
                after={"action": "subscription.read"},
                reason=denied.reason,
            )
            raise

    # -- starting --------------------------------------------------------------------

    def start_trial(
        self,
        owner: Owner,
        plan_key: str,
        *,
        actor: Actor | str,
        trial_days: int | None = None,
        seats: int | None = None,
        now: datetime | None = None,
        reason: str | None = None,
        **details: Any,
    ) -> Subscription:
        """Put ``owner`` on a trial of the plan (90 days unless the plan or ``trial_days``
        says otherwise). ``details``: ``metadata``, ``notes``, ``external_id``,
        ``expires_at``."""
        return self._start(
            Event.START_TRIAL,
            owner,
            plan_key,
            actor,
            now,
            reason,
            seats,
            trial_days=trial_days,
            **details,
        )

    def subscribe(
        self,
        owner: Owner,
        plan_key: str,
        *,
        actor: Actor | str,
        seats: int | None = None,
        cycle: BillingCycle | None = None,
        now: datetime | None = None,
        reason: str | None = None,
        **details: Any,
    ) -> Subscription:
        """Assign the plan directly, active from now (free plans, staff-managed billing)."""
        return self._start(
            Event.SUBSCRIBE, owner, plan_key, actor, now, reason, seats, cycle=cycle, **details
        )

    def begin_checkout(
        self,
        owner: Owner,
        plan_key: str,
        *,
        actor: Actor | str,
        seats: int | None = None,
        now: datetime | None = None,
        reason: str | None = None,
        **details: Any,
    ) -> Subscription:
        """A pending subscription that the payment provider's confirmation activates."""
        return self._start(
            Event.BEGIN_CHECKOUT, owner, plan_key, actor, now, reason, seats, **details
        )

    def _start(
        self,
        event: Event,
        owner: Owner,
        plan_key: str,
        actor: Actor | str,
        now: datetime | None,
        reason: str | None,
        seats: int | None,
        *,
        trial_days: int | None = None,
        cycle: BillingCycle | None = None,
        **details: Any,
    ) -> Subscription:
        owner, who = as_owner(owner), as_actor(actor)
        plan_key, reason = check_key(plan_key, "plan_key"), check_reason(reason)
        seats = check_optional_count(seats, "seats", maximum=MAX_COUNT)
        if cycle is not None:
            check_instance(cycle, BillingCycle, "cycle")
        unknown = set(details) - {"metadata", "notes", "external_id", "expires_at"}
        if unknown:
            raise InvalidInput("details", f"unknown field(s): {', '.join(sorted(unknown))}")
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, f"subscription.{event.value}", owner)
            plan = tx.uow.plans.get(plan_key)
            plan.check_assignable(owner.kind, already_held=False)
            tx.change_terms(owner)
            current = tx.uow.subscriptions.current(owner)
            if current is not None:
                current, _ = bring_to_now(tx, current)
            fields: dict[str, Any] = {**details, **billing_terms(plan, tx.now, cycle)}
            if event is Event.START_TRIAL:
                days = plan.trial_days if trial_days is None else trial_days
                if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
                    raise InvalidInput(
                        "trial_days", "must be a whole number of days from 1 to 3650", days
                    )
                fields["trial_ends_at"] = trial_end(tx.now, days)
            new = create(
                event,
                id=self._rt.new_id(),
                owner=owner,
                plan_key=plan.key,
                plan_version=plan.version,
                now=tx.now,
                current=current,
                seats=seats,
                **fields,
            )
            stored = tx.uow.subscriptions.add(new)
            tx.record(
                who,
                f"subscription.{event.value}",
                f"subscription:{stored.id}",
                owner=owner,
                after=stored,
                reason=reason,
            )
            return stored

    # -- changing --------------------------------------------------------------------

    def convert(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        plan_key: str | None = None,
        seats: int | None = UNSET,
        notes: str = UNSET,
        cycle: BillingCycle | None = None,
        now: datetime | None = None,
        reason: str | None = None,
        contract_id: str | None = None,
    ) -> Subscription:
        """Trial (or pending checkout) → active, optionally onto another plan and seat
        count; the first paid period starts now. ``contract_id`` links the subscription
        to the signed contract it came from (in its metadata)."""
        if plan_key is not None:
            check_key(plan_key, "plan_key")
        if cycle is not None:
            check_instance(cycle, BillingCycle, "cycle")
        check_optional_id(contract_id, "contract_id", max_length=64)

        def change(tx: Transaction, current: Subscription) -> dict[str, Any]:
            plan = self._target_plan(tx, current, plan_key)
            changes: dict[str, Any] = {
                "plan_key": plan.key,
                "plan_version": plan.version,
                **billing_terms(plan, tx.now, cycle),
            }
            if seats is not UNSET:
                changes["seats"] = seats
            if notes is not UNSET:
                changes["notes"] = notes
            if contract_id is not None:
                changes["metadata"] = {**current.metadata, "contract_id": contract_id}
            return changes

        return self._apply(owner, Event.ACTIVATE, actor, now, reason, change, action="convert")

    def change_plan(
        self,
        owner: Owner,
        plan_key: str,
        *,
        actor: Actor | str,
        version: int | None = None,
        now: datetime | None = None,
        reason: str | None = None,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
    ) -> SubscriptionChange:
        """Move to another plan (its latest version), or to another version of the same
        plan (an explicit migration; grandfathered owners stay until this is called).

        If current usage would pass a new limit, ``if_over_quota`` decides: refuse
        (`OverQuotaRefused`, nothing changes) or apply. Either way the over-quota report
        is audited, and returned with the change."""
        check_key(plan_key, "plan_key")
        check_version(version)

        def change(tx: Transaction, current: Subscription) -> dict[str, Any]:
            plan = self._target_plan(tx, current, plan_key, version)
            if (plan.key, plan.version) == (current.plan_key, current.plan_version):
                raise InvalidInput("plan_key", f"{owner} is already on {plan.key} v{plan.version}")
            changes: dict[str, Any] = {"plan_key": plan.key, "plan_version": plan.version}
            new_cycle = plan.price.cycle if plan.price is not None else current.cycle
            if new_cycle != current.cycle and current.current_period is not None:
                changes.update(cycle=new_cycle, cycle_anchor=current.current_period.end)
            return changes

        return self._apply_checked(
            owner, Event.CHANGE_PLAN, actor, now, reason, change, if_over_quota
        )

    def migrate(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
    ) -> SubscriptionChange:
        """Move a grandfathered owner to the latest version of the plan it holds."""
        current = self.get(owner)
        return self.change_plan(
            owner,
            current.plan_key,
            actor=actor,
            now=now,
            reason=reason,
            if_over_quota=if_over_quota,
        )

    def change_seats(
        self,
        owner: Owner,
        seats: int,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
    ) -> SubscriptionChange:
        """Set the purchased seats. Fewer seats than members assigned is refused unless
        ``if_over_quota`` allows it (and is then reported). Pass ``expected_revision`` (the
        revision the caller read) to refuse with `StaleWrite` if someone changed it."""
        return self._apply_checked(
            owner,
            Event.CHANGE_SEATS,
            actor,
            now,
            reason,
            lambda tx, cur: {"seats": seats},
            if_over_quota,
            expected_revision=expected_revision,
        )

    def add_addon(
        self,
        owner: Owner,
        addon: AddOn,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> SubscriptionChange:
        """Add an add-on (or replace the one with the same key: change its quantity)."""
        if not isinstance(addon, AddOn):
            raise InvalidInput("addon", "must be an AddOn", addon)

        def change(tx: Transaction, current: Subscription) -> dict[str, Any]:
            return {"addons": (*(a for a in current.addons if a.key != addon.key), addon)}

        return self._apply_checked(
            owner,
            Event.CHANGE_ADDONS,
            actor,
            now,
            reason,
            change,
            OverQuotaPolicy.REFUSE,
            action="add_addon",
        )

    def remove_addon(
        self,
        owner: Owner,
        key: str,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
    ) -> SubscriptionChange:
        check_key(key, "addon.key")

        def change(tx: Transaction, current: Subscription) -> dict[str, Any]:
            if key not in {a.key for a in current.addons}:
                raise InvalidInput("addon", f"{owner} has no add-on {key!r}", key)
            return {"addons": tuple(a for a in current.addons if a.key != key)}

        return self._apply_checked(
            owner,
            Event.CHANGE_ADDONS,
            actor,
            now,
            reason,
            change,
            if_over_quota,
            action="remove_addon",
        )

    def preview_change(
        self,
        owner: Owner,
        plan_key: str,
        *,
        version: int | None = None,
        now: datetime | None = None,
    ) -> PlanChangePreview:
        """What moving to ``plan_key`` would do — features gained and lost, limits raised
        and lowered, limits current usage would pass — without changing anything."""
        owner = as_owner(owner)
        check_key(plan_key, "plan_key")
        check_version(version)
        at = self._rt.now(now)
        with self._rt.read(owner.tenant) as uow:
            current = uow.subscriptions.current(owner)
            if current is None or current.is_terminal:
                raise SubscriptionNotFound(owner)
            plan = uow.plans.get(plan_key, version)
            plan.check_assignable(owner.kind, already_held=plan.key == current.plan_key)
            proposed = attrs.evolve(current, plan_key=plan.key, plan_version=plan.version)
            before = resolve_with(uow, owner, current, at, self._rt.policy)
            after = resolve_with(uow, owner, proposed, at, self._rt.policy)
            return preview(before, after, current_usage(uow, before), at)

    def suspend(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        return self._apply(owner, Event.SUSPEND, actor, now, reason)

    def resume(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        return self._apply(owner, Event.RESUME, actor, now, reason)

    def fail(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """A pending checkout failed at the payment provider."""
        return self._apply(owner, Event.FAIL, actor, now, reason)

    def mark_past_due(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        return self._apply(owner, Event.MARK_PAST_DUE, actor, now, reason)

    def settle(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        return self._apply(owner, Event.SETTLE, actor, now, reason)

    def cancel(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        at_period_end: bool = False,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """End now, or (``at_period_end``) stay active until the period (or trial) ends."""
        event = (
            Event.SCHEDULE_CANCEL if check_bool(at_period_end, "at_period_end") else Event.CANCEL
        )
        return self._apply(owner, event, actor, now, reason)

    def undo_cancel(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        return self._apply(owner, Event.UNDO_CANCEL, actor, now, reason)

    def expire(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        return self._apply(owner, Event.EXPIRE, actor, now, reason)

    def amend(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        notes: str = UNSET,
        external_id: str | None = UNSET,
        metadata: Mapping[str, Any] = UNSET,
        expires_at: datetime | None = UNSET,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """Edit the staff-facing details: notes, external id, metadata, expiry date."""
        given = {
            "notes": notes,
            "external_id": external_id,
            "metadata": metadata,
            "expires_at": expires_at,
        }
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not UNSET}
        if "expires_at" in changes:
            changes["expires_at"] = optional_given_utc(changes["expires_at"], "expires_at")
        if not changes:
            raise InvalidInput(
                "amend", "give at least one of notes, external_id, metadata, expires_at"
            )
        return self._apply(owner, Event.AMEND, actor, now, reason, lambda tx, cur: changes)

    # -- machinery -------------------------------------------------------------------

    def _apply_checked(
        self,
        owner: Owner,
        event: Event,
        actor: Actor | str,
        now: datetime | None,
        reason: str | None,
        changes: Any,
        if_over_quota: OverQuotaPolicy,
        *,
        action: str | None = None,
        expected_revision: int | None = None,
    ) -> SubscriptionChange:
        """`_apply`, plus the over-quota check against current usage."""
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        found: list[OverQuota] = []

        def check(tx: Transaction, before: Subscription, after: Subscription) -> None:
            was = resolve_with(tx.uow, before.owner, before, tx.now, self._rt.policy)
            will = resolve_with(tx.uow, before.owner, after, tx.now, self._rt.policy)
            usage = current_usage(tx.uow, was)
            found.extend(
                o
                for o in over_quota(will, usage)
                if _caused_by_change(o, was.limit(o.metric, 0), usage)
            )
            if not found:
                return
            if policy is OverQuotaPolicy.REFUSE:
                raise OverQuotaRefused(before.owner, found)
            tx.record(
                as_actor(actor),
                "subscription.over_quota",
                f"subscription:{before.id}",
                owner=before.owner,
                after={"over_quota": [attrs.asdict(o) for o in found]},
                reason=reason,
            )

        name = f"subscription.{action or event.value}"
        try:
            stored = self._apply(
                owner,
                event,
                actor,
                now,
                reason,
                changes,
                action=action,
                expected_revision=expected_revision,
                inspect=check,
            )
        except OverQuotaRefused as refused:
            self._rt.record_refusal(
                as_owner(owner).tenant,
                as_actor(actor),
                "subscription.over_quota_refused",
                name,
                owner=as_owner(owner),
                after={"over_quota": [attrs.asdict(o) for o in refused.over_quota]},
                reason=str(refused),
            )
            raise
        return SubscriptionChange(stored, tuple(found))

    def _target_plan(
        self,
        tx: Transaction,
        current: Subscription,
        plan_key: str | None,
        version: int | None = None,
    ) -> Plan:
        key = plan_key or current.plan_key
        if version is not None:
            plan = tx.uow.plans.get(key, version)
        elif key == current.plan_key and plan_key is None:
            plan = tx.uow.plans.get(key, current.plan_version)
        else:
            plan = tx.uow.plans.get(key)
        plan.check_assignable(current.owner.kind, already_held=key == current.plan_key)
        return plan

    def _apply(
        self,
        owner: Owner,
        event: Event,
        actor: Actor | str,
        now: datetime | None,
        reason: str | None,
        changes: Any = None,
        *,
        action: str | None = None,
        expected_revision: int | None = None,
        inspect: Any = None,
    ) -> Subscription:
        owner, who = as_owner(owner), as_actor(actor)
        reason = check_reason(reason)
        check_version(expected_revision, "expected_revision")
        name = f"subscription.{action or event.value}"
        with self._rt.transaction(owner.tenant, now) as tx:
            current = tx.uow.subscriptions.current(owner)
            if current is None:
                raise SubscriptionNotFound(owner)
            if expected_revision is not None and current.revision != expected_revision:
                raise StaleWrite("subscription", current.id, expected_revision)
            # the terms lock before anything the change is checked against is read
            tx.change_terms(owner, usage_period_of(as_of(current, tx.now), tx.now).start)
            current, _ = bring_to_now(tx, current)
            tx.authorize(who, name, owner, current)
            check_allowed(current, event)
            fields = changes(tx, current) if changes is not None else {}
            after = transition(current, event, tx.now, **fields)
            if inspect is not None:
                inspect(tx, current, after)
            stored = tx.uow.subscriptions.update(after)
            tx.record(
                who,
                name,
                f"subscription:{stored.id}",
                owner=owner,
                before=current,
                after=stored,
                reason=reason,
            )
            return stored
