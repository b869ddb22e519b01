"""Use cases for an owner's subscription: trial, convert, change plan and seats, suspend,
resume, past due, cancel (now or at period end), expire, amend.

Each call is one unit of work: it loads the owner's subscription, asks the state machine
for the new state (which refuses illegal events before anything is written), stores it
with an optimistic-concurrency check and records the audit event.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from entitlements.domain import lifecycle as kernel
from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.addon import AddOn
from entitlements.domain.assignment import check_may_assign
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
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.due import as_of, could_read_as
from entitlements.domain.instant import given_utc, optional_given_utc
from entitlements.domain.invoice import billed_before
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.page import (
    DEFAULT_LIMIT,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    page_of,
)
from entitlements.domain.plan import check_trial_days
from entitlements.domain.plan_change import (
    PlanChangePreview,
    SubscriptionChange,
    preview,
)
from entitlements.domain.scheduled import PendingChange, PendingKind
from entitlements.domain.subscription import (
    Event,
    Subscription,
    SubscriptionStatus,
    with_changes,
)
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import (
    InvalidInput,
    SubscriptionNotFound,
)
from entitlements.service import lifecycle
from entitlements.service.assignment import PlanAssignment
from entitlements.service.due import read_current
from entitlements.service.free_plan import OneFreePlan
from entitlements.service.invoices import InvoiceSettings, draft_for
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import current_usage, in_force, resolve_with

__all__ = ["Subscriptions"]

UNSET: Any = attrs.NOTHING
R = TypeVar("R")


def _unknown_fields(unknown: set[str], event: Event) -> str:
    known = ["metadata", "notes", "external_id", "expires_at", "seats", "now", "reason"]
    if event is Event.START_TRIAL:
        known.append("trial_days")
    else:
        known.append("cycle")
    hints = [
        f"{name} (did you mean {close[0]}?)" if close else name
        for name in sorted(unknown)
        for close in [
            difflib.get_close_matches(name, known, n=1, cutoff=0.5) or _alias(name, known)
        ]
    ]
    return f"unknown field(s): {', '.join(hints)}"


def _alias(name: str, known: list[str]) -> list[str]:
    """``days`` for ``trial_days``: a known name that ends with the unknown one."""
    return [k for k in known if k.endswith("_" + name)]


def _search_terms(
    text: str | None, statuses: Iterable[SubscriptionStatus | str] | None, limit: int
) -> frozenset[str] | None:
    """Checks `Subscriptions.search`'s arguments; the status values it asks for."""
    if text is not None and (not isinstance(text, str) or len(text) > 255):
        raise InvalidInput("text", "must be text of at most 255 characters", text)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be a whole number from 1 to 1000", limit)
    if statuses is None:
        return None
    return frozenset(parse_enum(SubscriptionStatus, s, "status").value for s in statuses)


def _scheduled_terms(
    plan: str | None, version: int | None, seats: int | None, addons: Iterable[AddOn] | None
) -> dict[str, Any]:
    """Checks what `Subscriptions.schedule_change` asks for: at least one term."""
    if plan is not None:
        check_key(plan, "plan")
    check_version(version)
    checked_addons = None
    if addons is not None:
        if isinstance(addons, str | bytes | Mapping) or not isinstance(addons, Iterable):
            raise InvalidInput("addons", "must be AddOn values", addons)
        checked_addons = tuple(addons)
        if not all(isinstance(a, AddOn) for a in checked_addons):
            raise InvalidInput("addons", "must be AddOn values", addons)
    given = {
        "seats": check_optional_count(seats, "seats", maximum=MAX_COUNT),
        "addons": checked_addons,
    }
    if plan is None and version is None and seats is None and addons is None:
        raise InvalidInput("change", "give at least one of plan, version, seats, addons")
    return given


def _period_end(current: Subscription) -> datetime:
    """Where ``at=None`` puts a scheduled change: the end of the current period."""
    if current.current_period is None:
        raise InvalidInput("at", f"{current.owner} has no billing period: give a date")
    return current.current_period.end


def _refuse_restart_over_billed_days(
    tx: Transaction, current: Subscription, begins: datetime
) -> None:
    """A pause that restarts the period when it ends cuts the period it begins in short;
    invoices cover whole periods, so a cut period that was already billed for some days
    would never be invoiced for them. Such a pause is refused instead of losing them."""
    held = as_of(current, begins)
    period = held.current_period
    if period is None or held.cycle is None or begins <= period.start:
        return
    states = tx.uow.subscriptions.states(current.owner, period.start, begins)
    if billed_before(states, period, begins):
        raise InvalidInput(
            "restart_period",
            f"the billing period from {period.start.isoformat()} is billed before the pause "
            "begins, and restarting the period would leave those days uninvoiced; pause "
            "without restart_period, or from the start of a period",
            True,
        )


def _contract_link(contract_id: str | None) -> ContractLink | None:
    if contract_id is None:
        return None
    return ContractLink(contract_id)


class Subscriptions:
    """``ents.subscriptions``: the subscription lifecycle; every change goes through the
    transition table and is audited."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        free_plan: OneFreePlan | None = None,
        invoicing: InvoiceSettings | None = None,
    ) -> None:
        self._rt = runtime
        self._invoicing = invoicing
        self.assignment = PlanAssignment(free_plan or OneFreePlan())
        """The one check of whether an owner may be put on a plan now."""

    # -- reading ---------------------------------------------------------------------

    def find(self, owner: Owner, *, actor: Actor | str | None = None) -> Subscription | None:
        """The owner's most recent subscription (possibly ended) as time has made it by
        now, whether or not the sweep stored those changes yet; or ``None``. With
        ``actor``, the authorizer decides first (``subscription.read``)."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            self._authorize_read(uow, owner, actor)
            return read_current(uow, owner, self._rt.read_now(owner.tenant), self._rt.policy)

    def get(self, owner: Owner, *, actor: Actor | str | None = None) -> Subscription:
        """The owner's current subscription; `SubscriptionNotFound` when it has none."""
        found = self.find(owner, actor=actor)
        if found is None:
            raise SubscriptionNotFound(owner)
        return found

    def history(
        self,
        owner: Owner,
        *,
        actor: Actor | str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[Subscription]:
        """The subscriptions the owner ever had, oldest first, each as time has made it
        by now (like `get`), a page at a time: pass the page's ``next`` as ``cursor``
        for the page after it."""
        owner = as_owner(owner)
        limit = check_limit(limit)
        after = decode_cursor(cursor, "subscription-history", int)
        now = self._rt.read_now(owner.tenant)
        with self._rt.read(owner.tenant) as uow:
            self._authorize_read(uow, owner, actor)
            found = uow.subscriptions.history_page(
                owner, None if after is None else after[0], limit + 1
            )
            current = [((i,), in_force(uow, s, now, self._rt.policy)) for i, s in found]
        return page_of(current, limit, "subscription-history")

    def at(
        self, owner: Owner, when: datetime, *, actor: Actor | str | None = None
    ) -> Subscription | None:
        """The owner's subscription as it stood at ``when`` (``None``: it had none then):
        the one it held at that instant, with what writes had stored by then and what
        time had made of it by then — also when it was canceled, replaced or changed
        since. A ``when`` still to come reads the current one as time will have made it
        (like `find`). Naive datetimes are refused (`InvalidInput`)."""
        owner = as_owner(owner)
        when = given_utc(when, "when")
        now = self._rt.read_now(owner.tenant)
        with self._rt.read(owner.tenant) as uow:
            self._authorize_read(uow, owner, actor)
            found = (
                uow.subscriptions.at(owner, when)
                if when < now
                else uow.subscriptions.current(owner)
            )
            return None if found is None else in_force(uow, found, when, self._rt.policy)

    def search(
        self,
        text: str | None = None,
        *,
        statuses: Iterable[SubscriptionStatus | str] | None = None,
        tenant: str | None = None,
        limit: int = 100,
        actor: Actor | str | None = None,
        cursor: str | None = None,
    ) -> Page[Subscription]:
        """Each owner's most recent subscription in ``tenant`` as of now (like `get`),
        newest first, filtered by status and by text found in the owner id, external id or
        plan key, a page at a time (pass the page's ``next`` as ``cursor`` for the page
        after it): the staff console's owner list and seed 000's review of past-due
        accounts. With ``statuses``, rows time has moved out of them since the last sweep
        are left out, so a page may hold fewer than ``limit``. A text search on SQL looks
        at a bounded number of rows per page (of three ASCII characters or more, the
        newest 5,000 holding its rarest trigram; else the newest 5,000 below the
        cursor), so its page may hold fewer than ``limit``, even none, and still have a
        ``next``. With ``actor``, owners the
        authorizer does not let the actor read (``subscription.read``) are left out too:
        a list must not show what the owner's own page would refuse."""
        wanted = _search_terms(text, statuses, limit)
        stored_as = None if wanted is None else could_read_as(wanted)
        after = decode_cursor(cursor, "owners", int)
        with self._rt.read(tenant) as uow:
            read, stopped_at = uow.subscriptions.search_page(
                (text or "").strip() or None,
                stored_as,
                None if after is None else after[0],
                limit + 1,
            )
            page = page_of([((n,), s) for n, s in read], limit, "owners")
            if page.next is None and stopped_at is not None:
                page = Page(page, encode_cursor("owners", (stopped_at,)))
            found = self._readable(uow, page, actor)
            now = self._rt.read_now(tenant)
            current = [in_force(uow, subscription, now, self._rt.policy) for subscription in found]
        return Page([s for s in current if wanted is None or s.status.value in wanted], page.next)

    def _readable(
        self, uow: Any, found: Sequence[Subscription], actor: Actor | str | None
    ) -> Sequence[Subscription]:
        if actor is None:
            return found
        who = as_actor(actor)
        return [s for s in found if self._rt.permits(uow, who, "subscription.read", s.owner)]

    def _authorize_read(self, uow: Any, owner: Owner, actor: Actor | str | None) -> None:
        if actor is not None:
            self._rt.authorize(uow, owner.tenant, as_actor(actor), "subscription.read", owner)

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
        version: int | None = None,
        **details: Any,
    ) -> Subscription:
        """Assign the plan directly, active from now (free plans, staff-managed billing);
        ``version`` pins one of the plan's versions (a signed contract's)."""
        return self._start(
            Event.SUBSCRIBE,
            owner,
            plan_key,
            actor,
            now,
            reason,
            seats,
            cycle=cycle,
            version=version,
            **details,
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
        version: int | None = None,
        **details: Any,
    ) -> Subscription:
        owner, who = as_owner(owner), as_actor(actor)
        plan_key, reason = check_key(plan_key, "plan_key"), check_reason(reason)
        seats = check_optional_count(seats, "seats", maximum=MAX_COUNT)
        if trial_days is not None:
            check_trial_days(trial_days)
        if cycle is not None:
            check_instance(cycle, BillingCycle, "cycle")
        known = {"metadata", "notes", "external_id", "expires_at", "plan_manager", "contract"}
        unknown = set(details) - known
        if unknown:
            raise InvalidInput("details", _unknown_fields(unknown, event))
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, f"subscription.{event.value}", owner)
            plan = tx.uow.plans.get(plan_key, version)
            return lifecycle.start(
                tx,
                self.assignment,
                who,
                event,
                owner,
                plan,
                seats=seats,
                cycle=cycle,
                trial_days=trial_days,
                reason=reason,
                **details,
            )

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
        version: int | None = None,
        keep_cancellation: bool = False,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
        contract: ContractLink | None = None,
        without_contract: bool = False,
    ) -> Subscription:
        """Trial (or pending checkout) → active, optionally onto another plan (``version``
        pins one of its versions) and seat count; the first paid period starts now.

        A cancellation scheduled for the trial's end is cleared — the owner is paying
        now — unless ``keep_cancellation`` keeps it (it then takes effect at the end of
        the first paid period). Usage over a limit of the new plan is refused unless
        ``if_over_quota`` allows it. ``contract`` (or just ``contract_id``) links the
        subscription to the signed contract it came from.

        While the owner has a contract out for signature the conversion is refused
        (`ContractPending`): convert from the contract once it completes
        (``ents.contracts.convert``), or pass ``without_contract=True`` to convert
        regardless (say, a contract abandoned in favour of paying by card)."""
        if plan_key is not None:
            check_key(plan_key, "plan_key")
        if cycle is not None:
            check_instance(cycle, BillingCycle, "cycle")
        check_optional_id(contract_id, "contract_id", max_length=64)
        if not isinstance(keep_cancellation, bool):
            raise InvalidInput("keep_cancellation", "must be True or False", keep_cancellation)
        asked = lifecycle.Conversion(
            plan_key,
            version,
            {k: v for k, v in (("seats", seats), ("notes", notes)) if v is not UNSET},
            cycle,
            keep_cancellation,
            contract if contract is not None else _contract_link(contract_id),
            without_contract,
        )
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> Subscription:
            return lifecycle.convert(
                tx, self.assignment, who, current, asked, policy, reason=reason
            ).subscription

        return self._change(owner, actor, now, "convert", do)

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

        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> SubscriptionChange:
            return lifecycle.change_plan(
                tx, self.assignment, who, current, plan_key, policy, version=version, reason=reason
            )

        return self._change(owner, actor, now, "change_plan", do, with_plans=[(plan_key, version)])

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
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> SubscriptionChange:
            return lifecycle.change_plan(
                tx, self.assignment, who, current, current.plan_key, policy, reason=reason
            )

        return self._change(owner, actor, now, "change_plan", do)

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
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> SubscriptionChange:
            return lifecycle.change_seats(tx, who, current, seats, policy, reason=reason)

        return self._change(
            owner, actor, now, "change_seats", do, expected_revision=expected_revision
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

        def change(current: Subscription) -> dict[str, Any]:
            return {"addons": (*(a for a in current.addons if a.key != addon.key), addon)}

        return self._checked(
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
        """Take an add-on off the subscription; its limits and features go with it."""
        check_key(key, "addon.key")

        def change(current: Subscription) -> dict[str, Any]:
            if key not in {a.key for a in current.addons}:
                raise InvalidInput("addon", f"{owner} has no add-on {key!r}", key)
            return {"addons": tuple(a for a in current.addons if a.key != key)}

        return self._checked(
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
        actor: Actor | str | None = None,
        at: datetime | None = None,
    ) -> PlanChangePreview:
        """What moving to ``plan_key`` would do — features gained and lost, limits raised
        and lowered, limits current usage would pass — without changing anything. With
        ``at`` (a future instant, such as a scheduled change's), the two sides are the
        subscription as it will be then, pending change included, with usage projected
        as stored now (``usage_as_of`` in the result says so). With ``actor``, the
        authorizer decides first (``subscription.read``), as for `get`."""
        owner = as_owner(owner)
        check_key(plan_key, "plan_key")
        check_version(version)
        today = self._rt.now(now)
        at = max(today, optional_given_utc(at, "at") or today)
        with self._rt.read(owner.tenant) as uow:
            self._authorize_read(uow, owner, actor)
            current = read_current(uow, owner, at, self._rt.policy)
            if current is None or current.is_terminal:
                raise SubscriptionNotFound(owner)
            plan = uow.plans.get(plan_key, version)
            check_may_assign(plan, owner, current)
            proposed = with_changes(current, plan_key=plan.key, plan_version=plan.version)
            before = resolve_with(uow, owner, current, at, self._rt.policy)
            after = resolve_with(uow, owner, proposed, at, self._rt.policy)
            measured = before
            if at > today:  # usage as stored now, in the periods counting now
                held = read_current(uow, owner, today, self._rt.policy)
                measured = resolve_with(uow, owner, held, today, self._rt.policy)
            usage = current_usage(uow, measured)
            found = preview(before, after, usage, at, usage_as_of=today)
            return attrs.evolve(found, invoice_delta=self._invoice_delta(uow, proposed, at))

    def _invoice_delta(self, uow: Any, proposed: Subscription, at: datetime) -> Decimal | None:
        """What the change at ``at`` adds to (or takes from) the current period's
        invoice: the draft over the stored stretches and one more from ``at``, less the
        draft without it."""
        period = proposed.current_period
        if period is None:
            return None
        settings = self._invoicing or InvoiceSettings()
        owner = proposed.owner
        now = draft_for(uow, owner, period, at, settings)
        then = draft_for(uow, owner, period, at, settings, extra=(at, proposed))
        return (Decimal(0) if then is None else then.total) - (
            Decimal(0) if now is None else now.total
        )

    def suspend(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """Stop access whatever was paid (abuse, a dispute); the status before is kept to
        resume to."""
        return self._apply(owner, Event.SUSPEND, actor, now, reason)

    def resume(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """Lift a suspension: back to the status before it (a trial that ran out meanwhile
        has ended)."""
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
        """A payment failed; access follows the past-due policy and its grace period."""
        return self._apply(owner, Event.MARK_PAST_DUE, actor, now, reason)

    def settle(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """A past-due payment came in: back to active."""
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
        """Withdraw a cancellation scheduled for the period end."""
        return self._apply(owner, Event.UNDO_CANCEL, actor, now, reason)

    def expire(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """End the subscription now as expired (staff; time does it by itself at
        ``expires_at``)."""
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
        if isinstance(metadata, Mapping) and "plan_manager" in metadata:
            raise InvalidInput(
                "metadata",
                "the plan manager is a field of its own, not metadata: "
                "use billing.transfer_plan_manager",
                metadata,
            )
        if not changes:
            raise InvalidInput(
                "amend", "give at least one of notes, external_id, metadata, expires_at"
            )
        return self._apply(owner, Event.AMEND, actor, now, reason, lambda _: changes)

    def set_plan_manager(
        self,
        owner: Owner,
        member: str | None,
        *,
        actor: Actor | str,
        now: datetime | None = None,
        reason: str | None = None,
    ) -> Subscription:
        """Seed 003's plan manager (the member whose card pays) named anew, ``None`` for
        nobody, authorized as ``subscription.set_plan_manager``. Unlike
        `Billing.transfer_plan_manager` it leaves who may call it to the authorizer: the
        stored amendment and its audit entry are the same either way."""
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> Subscription:
            return lifecycle.set_plan_manager(tx, who, current, member, reason)

        return self._change(owner, actor, now, lifecycle.SET_PLAN_MANAGER, do)

    # -- later: pending changes and pauses ---------------------------------------------

    def pending_change(
        self, owner: Owner, *, actor: Actor | str | None = None
    ) -> PendingChange | None:
        """The change waiting for its instant (a scheduled change, a pause still to begin,
        or a cancellation at period end), or ``None``; one that has reached its instant is
        in force already and no longer pending."""
        found = self.find(owner, actor=actor)
        return None if found is None else found.pending_change

    def schedule_change(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        plan: str | None = None,
        version: int | None = None,
        seats: int | None = None,
        addons: Iterable[AddOn] | None = None,
        at: datetime | None = None,
        reason: str | None = None,
        replace: bool = False,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
        now: datetime | None = None,
    ) -> PendingChange | None:
        """Record a change of plan (or ``version``), seats or add-ons to take effect at
        ``at`` (``None``: the end of the current period). Nothing in force changes now;
        from ``at`` on every answer follows it, and the sweep stores it (audited as
        applied, or as failed with the reason when the rules refuse it then: the plan
        archived or retired meanwhile, usage over a lowered limit under ``refuse``).

        At most one change is pending: another one raises `ChangePending` unless
        ``replace``. A request equal to what will be in force anyway clears the pending
        one and returns ``None``."""
        given = _scheduled_terms(plan, version, seats, addons)
        when = optional_given_utc(at, "at")
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        reason, replace = check_reason(reason), check_bool(replace, "replace")

        def do(tx: Transaction, who: Actor, current: Subscription) -> PendingChange | None:
            wanted = PendingChange(
                PendingKind.CHANGE,
                when or _period_end(current),
                tx.now,
                who.id,
                reason,
                current.revision,
                seats=given["seats"],
                addons=given["addons"],
                if_over_quota=policy.value,
                **self._scheduled_plan(tx, who, current, plan, version),
            )
            step = kernel.schedule(current, wanted, tx.now, actor=who, replace=replace)
            return lifecycle.store(tx, step).scheduled

        return self._change(owner, actor, now, "schedule_change", do)

    def _scheduled_plan(
        self,
        tx: Transaction,
        who: Actor,
        current: Subscription,
        plan_key: str | None,
        version: int | None,
    ) -> dict[str, Any]:
        """The plan fields of a scheduled change, checked for assignment now (and again
        at its instant)."""
        if plan_key is None and version is None:
            return {}
        plan = tx.uow.plans.get(plan_key or current.plan_key, version)
        self.assignment.check(tx, current.owner, plan, current, who)
        cycle = plan.price.cycle if plan.price is not None else None
        return {"plan_key": plan.key, "plan_version": plan.version, "cycle": cycle}

    def cancel_pending_change(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """Drop the pending change (undo a cancellation at period end, drop a pause still
        to begin): the future goes, nothing that was in force changes."""
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> Subscription:
            step = kernel.cancel_pending(current, tx.now, actor=who, reason=reason)
            return lifecycle.store(tx, step)

        return self._change(owner, actor, now, "cancel_pending_change", do)

    def pause(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        at: datetime | None = None,
        resume_at: datetime | None = None,
        restart_period: bool = False,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """Pause an active subscription now (``at=None``) or from ``at``, until
        ``resume_at`` or until `unpause`. Paused is read-only by default (the access
        policy's ``paused``); a staff suspension may hold at the same time. With
        ``restart_period`` the billing period restarts when the pause ends; otherwise it
        keeps its anchor. A pending change in the way is refused (`ChangePending`)."""
        begins = optional_given_utc(at, "at")
        ends = optional_given_utc(resume_at, "resume_at")
        restart = check_bool(restart_period, "restart_period")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> Subscription:
            if restart:
                _refuse_restart_over_billed_days(tx, current, begins or tx.now)
            wanted = PendingChange(
                PendingKind.PAUSE,
                begins or tx.now,
                tx.now,
                who.id,
                reason,
                current.revision,
                resume_at=ends,
                restart_period=restart,
            )
            return lifecycle.store(tx, kernel.pause(current, tx.now, wanted, actor=who))

        return self._change(owner, actor, now, "pause", do)

    def unpause(
        self,
        owner: Owner,
        *,
        actor: Actor | str,
        at: datetime | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """End the pause now, or set the date it ends (``at``); for a pause still to
        begin, drop it (no ``at``) or set its end."""
        ends = optional_given_utc(at, "at")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> Subscription:
            step = kernel.unpause(current, tx.now, ends, actor=who, reason=reason)
            return lifecycle.store(tx, step)

        return self._change(owner, actor, now, "unpause", do)

    # -- machinery -------------------------------------------------------------------

    @retries_lost_races
    def _change(
        self,
        owner: Owner,
        actor: Actor | str,
        now: datetime | None,
        action: str,
        do: Callable[[Transaction, Actor, Subscription], R],
        *,
        expected_revision: int | None = None,
        with_plans: Sequence[tuple[str, int | None]] = (),
    ) -> R:
        """One unit of work: the subscription read under the owner's terms lock as time
        has made it, the actor authorized once for ``subscription.<action>``, then ``do``
        (a lifecycle step) on it."""
        owner, who = as_owner(owner), as_actor(actor)
        check_version(expected_revision, "expected_revision")
        with self._rt.transaction(owner.tenant, now) as tx:
            current = lifecycle.load(
                tx, owner, expected_revision=expected_revision, with_plans=with_plans
            )
            tx.authorize(who, f"subscription.{action}", owner, current)
            return do(tx, who, current)

    def _apply(
        self,
        owner: Owner,
        event: Event,
        actor: Actor | str,
        now: datetime | None,
        reason: str | None,
        fields: lifecycle.Fields | None = None,
        *,
        action: str | None = None,
    ) -> Subscription:
        """A change that lowers no limit: no over-quota check."""
        change = self._checked(owner, event, actor, now, reason, fields, None, action=action)
        return change.subscription

    def _checked(
        self,
        owner: Owner,
        event: Event,
        actor: Actor | str,
        now: datetime | None,
        reason: str | None,
        fields: lifecycle.Fields | None,
        if_over_quota: OverQuotaPolicy | None,
        *,
        action: str | None = None,
    ) -> SubscriptionChange:
        """A change of ``event``; with ``if_over_quota``, checked against current usage."""
        policy = None
        if if_over_quota is not None:
            policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        reason = check_reason(reason)

        def do(tx: Transaction, who: Actor, current: Subscription) -> SubscriptionChange:
            if policy is None:
                stored = lifecycle.apply(
                    tx, who, current, event, fields, action=action, reason=reason
                )
                return SubscriptionChange(stored, ())
            assert fields is not None
            return lifecycle.apply_checked(
                tx, who, current, event, fields, policy, action=action, reason=reason
            )

        return self._change(owner, actor, now, action or event.value, do)
