"""Plan assignment through a payment provider (seeds 003 and 004), provider events in,
reconciliation, and the guards hosts call before deleting owners or members.

With no provider configured, paid plans are assigned directly: seed 000's staff-managed
billing (contracts, no card). With one, every local check runs and our side is written
first; what the provider must do is recorded in the same unit of work (the outbox,
`ProviderOutbox`) and sent after commit under an idempotency key, retried by the sweep
until the provider acknowledges it. Until then `state` shows it pending at the provider.
What the provider actually did arrives as its events, which stay the source of truth.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.actor import Actor, ActorKind, as_actor
from entitlements.domain.billing import (
    Assignment,
    AssignmentKind,
    Checkout,
    ProviderEvent,
    ProviderLink,
    ProviderSubscription,
    path_to,
)
from entitlements.domain.checks import (
    MAX_COUNT,
    check_id,
    check_key,
    check_optional_count,
    parse_enum,
)
from entitlements.domain.due import as_of
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import Plan
from entitlements.domain.provider_commands import CommandKind, CommandStatus, ProviderCommand
from entitlements.domain.requests import KeyedRequest
from entitlements.domain.subscription import Event, Subscription, SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy, check_idempotency_key
from entitlements.errors import (
    InvalidInput,
    NotAuthorized,
    NotFound,
    OwnerHasActivePlan,
    PlanManagerProtected,
    ProviderUnreachable,
    SubscriptionNotFound,
)
from entitlements.ports import PaymentProvider
from entitlements.service.due import read_current
from entitlements.service.provider_outbox import ProviderOutbox
from entitlements.service.requests import claim_key, settle_key
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.subscriptions import Subscriptions

__all__ = ["Billing", "BillingState", "ProviderOutcome"]

PROVIDER = Actor("payment-provider", ActorKind.PROVIDER)


@attrs.frozen
class ProviderOutcome:
    """What applying a provider event (or a reconcile) did: ``outcome`` is ``applied``,
    ``duplicate`` (already applied) or ``stale`` (older than what was applied)."""

    outcome: str
    """``applied``, ``duplicate`` or ``stale``."""
    subscription: Subscription | None = None
    """Our subscription after the event (``None`` when it touched none)."""
    changes: tuple[str, ...] = ()
    """The lifecycle events applied to get there, in order."""


@attrs.frozen
class BillingState:
    """An owner's subscription as billing sees it: with the commands the payment provider
    has not acknowledged yet (``pending``, oldest first; a ``failed`` one gave up retrying
    and needs staff, see `Billing.retry`)."""

    subscription: Subscription | None
    """The owner's subscription, if any."""
    pending: tuple[ProviderCommand, ...] = ()
    """Commands not acknowledged by the provider yet, oldest first."""

    @property
    def pending_at_provider(self) -> bool:
        """Whether anything waits for the provider."""
        return bool(self.pending)

    @property
    def failed(self) -> tuple[ProviderCommand, ...]:
        """Commands that gave up retrying and need staff."""
        return tuple(c for c in self.pending if c.status is CommandStatus.FAILED)


class Billing:
    """``ents.billing``: plans bought through the host's payment provider, and the
    provider's events applied to our subscriptions."""

    def __init__(
        self,
        runtime: Runtime,
        subscriptions: Subscriptions,
        provider: PaymentProvider | None = None,
    ) -> None:
        self._rt = runtime
        self._subs = subscriptions
        self.provider = provider
        """The host's payment provider (``None``: plans are assigned by staff)."""
        self.outbox = ProviderOutbox(runtime, lambda: self.provider)
        """Commands to the provider waiting to be sent, and the sending."""

    @property
    def one_free_plan_per_tenant(self) -> bool:
        """Whether a tenant may hold only one free plan among its owners (seed 004): the
        rule every path that assigns a plan applies. Set once, when `Entitlements` is
        built (``one_free_plan_per_tenant=True``); read-only here, since assigning it on
        this object could not reach the other paths."""
        return self._subs.assignment.free_plan.enabled

    # -- assignment ----------------------------------------------------------------------

    def assign_plan(
        self,
        owner: Owner,
        plan_key: str,
        *,
        actor: Actor | str,
        seats: int | None = None,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
        now: datetime | None = None,
        key: str | None = None,
    ) -> Assignment:
        """Seed 004's rules: a free plan is assigned directly (a paid provider subscription
        is cancelled at the provider too); a paid plan with an active paid subscription
        is a provider plan change; a paid plan without one opens a checkout (the owner
        stays where it is — or pending, if it had nothing — until the provider confirms).
        Past-due owners may not change their own plan until billing is resolved.

        Every check runs, and our side is written, before the provider hears of it: the
        command is sent once this call's unit of work committed. If the provider does not
        answer, the assignment comes back with its ``command`` pending (and, for a
        checkout, no ``checkout`` yet); the sweep retries it.

        With ``key``, a repeat of the same request (after a lost acknowledgement) gets the
        first assignment back — its subscription as it stands now, its command and
        checkout — and opens no second checkout; the key given for another plan, seat
        count or over-quota policy raises `IdempotencyKeyReused`."""
        owner, who = as_owner(owner), as_actor(actor)
        key = check_idempotency_key(key)
        plan_key = check_key(plan_key, "plan_key")
        check_optional_count(seats, "seats", maximum=MAX_COUNT)
        parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "billing.assign_plan", owner, plan_key)
            asked = {"plan_key": plan_key, "seats": seats, "if_over_quota": str(if_over_quota)}
            earlier = claim_key(tx, owner, key, "billing.assign_plan", asked)
            if earlier is not None:
                assignment, command = self._repeated(tx, earlier)
            else:
                assignment, command = self._assign(tx, who, owner, plan_key, seats, if_over_quota)
                settle_key(
                    tx,
                    owner,
                    key,
                    {
                        "kind": assignment.kind.value,
                        "subscription": getattr(assignment.subscription, "id", None),
                        "command": None if command is None else command.id,
                    },
                )
        if command is None:
            return assignment
        return self._with_answer(owner, assignment, command)

    def _assign(
        self,
        tx: Transaction,
        who: Actor,
        owner: Owner,
        plan_key: str,
        seats: int | None,
        if_over_quota: OverQuotaPolicy,
    ) -> tuple[Assignment, ProviderCommand | None]:
        plan = tx.uow.plans.get(plan_key)
        # before the provider is told anything; subscribe / change_plan check again
        tx.change_terms(owner)
        current = tx.uow.subscriptions.current(owner)
        live = current if current is not None and not current.is_terminal else None
        self._subs.assignment.check(tx, owner, plan, live, who)
        if live is not None and (live.plan_key, live.plan_version) == (plan.key, plan.version):
            raise InvalidInput("plan_key", f"{owner} is already on {plan.key}")
        command: ProviderCommand | None
        if plan.is_free:
            assignment, command = self._assign_free(
                tx, who, owner, live, plan_key, seats, if_over_quota
            )
        elif self.provider is None:
            assignment = self._assign_directly(who, owner, live, plan, seats, if_over_quota)
            command = None
        elif (
            live is not None
            and live.external_id
            and live.status is SubscriptionStatus.ACTIVE
            and self._is_paid(tx, live)
        ):
            change = self._subs.change_plan(owner, plan.key, actor=who, if_over_quota=if_over_quota)
            command = self.outbox.record(
                tx,
                CommandKind.CHANGE_PLAN,
                owner,
                {
                    "external_id": live.external_id,
                    "plan_key": plan.key,
                    "plan_version": plan.version,
                    "seats": seats,
                },
                subscription_id=change.subscription.id,
            )
            assignment = Assignment(AssignmentKind.PROVIDER_CHANGE, change.subscription)
        else:
            manager = who.id if who.kind is ActorKind.MEMBER else None
            subscription = live
            if subscription is None:
                subscription = self._subs.begin_checkout(
                    owner, plan.key, actor=who, seats=seats, plan_manager=manager
                )
            command = self.outbox.record(
                tx,
                CommandKind.START_CHECKOUT,
                owner,
                {
                    "plan_key": plan.key,
                    "plan_version": plan.version,
                    "seats": seats,
                    "manager": manager,
                },
                subscription_id=subscription.id,
            )
            tx.record(
                who,
                "billing.checkout",
                f"provider_command:{command.id}",
                owner=owner,
                after={"plan": plan.key, "command": command.id},
            )
            assignment = Assignment(AssignmentKind.CHECKOUT, subscription)
        return assignment, command

    def _repeated(
        self, tx: Transaction, earlier: KeyedRequest
    ) -> tuple[Assignment, ProviderCommand | None]:
        """What a repeat of an assignment made under its key answers: the first one's
        kind, its subscription as it stands now and its provider command."""
        outcome = earlier.outcome
        subscription = None
        if outcome["subscription"] is not None:
            stored = tx.uow.subscriptions.get(str(outcome["subscription"]))
            subscription = as_of(stored, tx.now)
        command = None
        if outcome["command"] is not None:
            command = tx.uow.provider.command(str(outcome["command"]))
        return Assignment(AssignmentKind(outcome["kind"]), subscription), command

    def _with_answer(
        self, owner: Owner, assignment: Assignment, command: ProviderCommand
    ) -> Assignment:
        """The assignment with what the provider answered after commit (inside an atomic
        block nothing was sent yet: the command is still pending)."""
        with self._rt.read(owner.tenant) as uow:
            latest = uow.provider.command(command.id)
        checkout = None
        if latest.kind is CommandKind.START_CHECKOUT and latest.status is CommandStatus.SENT:
            result = latest.result or {}
            checkout = Checkout(
                result["checkout_id"], result["url"], owner, str(latest.payload["plan_key"])
            )
        return attrs.evolve(assignment, checkout=checkout, command=latest)

    def _assign_free(
        self,
        tx: Transaction,
        who: Actor,
        owner: Owner,
        live: Subscription | None,
        plan_key: str,
        seats: int | None,
        if_over_quota: OverQuotaPolicy,
    ) -> tuple[Assignment, ProviderCommand | None]:
        command = None
        if (
            live is not None
            and live.external_id
            and self.provider is not None
            and self._is_paid(tx, live)
        ):
            ended = self._subs.cancel(
                owner, actor=who, reason=f"moving to the free plan {plan_key}"
            )
            command = self.outbox.record(
                tx,
                CommandKind.CANCEL,
                owner,
                {"external_id": live.external_id, "at_period_end": False},
                subscription_id=ended.id,
            )
            live = None
        plan = tx.uow.plans.get(plan_key)
        return self._assign_directly(who, owner, live, plan, seats, if_over_quota), command

    def _assign_directly(
        self,
        who: Actor,
        owner: Owner,
        live: Subscription | None,
        plan: Plan,
        seats: int | None,
        if_over_quota: OverQuotaPolicy,
    ) -> Assignment:
        if live is None:
            # seed 003: a member who takes a paid plan manages it
            manager = who.id if who.kind is ActorKind.MEMBER and not plan.is_free else None
            return Assignment(
                AssignmentKind.DIRECT,
                self._subs.subscribe(owner, plan.key, actor=who, seats=seats, plan_manager=manager),
            )
        change = self._subs.change_plan(owner, plan.key, actor=who, if_over_quota=if_over_quota)
        return Assignment(AssignmentKind.DIRECT, change.subscription)

    def cancel(
        self, owner: Owner, *, actor: Actor | str, now: datetime | None = None
    ) -> Subscription:
        """Seed 003: cancelling means at the end of the paid period (active until then,
        back to the default plan after), at the provider too (sent after commit)."""
        owner, who = as_owner(owner), as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "billing.cancel", owner)
            current = tx.uow.subscriptions.current(owner)
            if current is None or current.is_terminal:
                raise SubscriptionNotFound(owner)
            canceled = self._subs.cancel(owner, actor=who, at_period_end=True)
            if current.external_id and self.provider is not None:
                self.outbox.record(
                    tx,
                    CommandKind.CANCEL,
                    owner,
                    {"external_id": current.external_id, "at_period_end": True},
                    subscription_id=canceled.id,
                )
            return canceled

    def transfer_plan_manager(
        self,
        owner: Owner,
        member: str | None,
        *,
        actor: Actor | str,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """Seed 003: name another member as the plan manager (``None``: nobody), for staff
        and the provider — never a member, not even the manager themself."""
        owner, who = as_owner(owner), as_actor(actor)
        if who.kind is ActorKind.MEMBER:
            raise NotAuthorized(
                str(who), "billing.transfer_plan_manager", "staff transfer the plan manager"
            )
        return self._subs.set_plan_manager(owner, member, actor=who, reason=reason, now=now)

    # -- the provider seam, as billing reads it ------------------------------------------

    def state(self, owner: Owner) -> BillingState:
        """The owner's subscription and what is still pending at the provider."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return BillingState(
                read_current(uow, owner, self._rt.read_now(owner.tenant)),
                tuple(uow.provider.open_commands(owner)),
            )

    def retry(
        self, owner: Owner, command_id: str, *, actor: Actor | str, now: datetime | None = None
    ) -> ProviderCommand | None:
        """Send a command again now — a ``failed`` one too (staff, after fixing what made
        the provider refuse it). Same idempotency key: the provider acts at most once."""
        owner, who = as_owner(owner), as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "billing.retry", owner)
            command = tx.uow.provider.command(command_id)
            if command.owner != owner:
                raise NotFound(f"provider command {command_id} does not exist")
            if command.status is CommandStatus.SENT:
                return command
            tx.uow.provider.update_command(command.retried(tx.now), expected=command)
            tx.record(who, "billing.retry", f"provider_command:{command_id}", owner=owner)
        return self.outbox.send(owner.tenant, command_id)

    def send_due(self, now: datetime | None = None) -> list[ProviderCommand]:
        """Send every provider command whose next attempt is due (the sweep calls this)."""
        at = self._rt.now(now)
        sent: list[ProviderCommand] = []
        for tenant in self._rt.store.tenants():
            sent.extend(self.outbox.send_due(tenant, at))
        return sent

    # -- the provider's events -----------------------------------------------------------

    def apply_provider_event(
        self, event: ProviderEvent, *, now: datetime | None = None
    ) -> ProviderOutcome:
        """Apply a provider webhook: idempotent by event id, and an event older than one
        already applied for the same provider subscription never overwrites newer state.
        Unknown event types are refused by `ProviderEvent` itself."""
        if not isinstance(event, ProviderEvent):
            raise InvalidInput("event", "must be a ProviderEvent", event)
        state = event.subscription
        with self._rt.transaction(state.owner.tenant, now) as tx:
            if tx.uow.provider.seen(event.id):
                return ProviderOutcome("duplicate")
            tx.uow.provider.mark_seen(event.id, tx.now)
            return self._follow(tx, state, event.occurred_at)

    def reconcile(self, owner: Owner, *, now: datetime | None = None) -> ProviderOutcome:
        """Ask the provider for its state of the owner's subscription and repair ours
        (webhooks get lost). Without evidence from the provider — no provider, no
        subscription there — nothing changes."""
        owner = as_owner(owner)
        if self.provider is None:
            raise InvalidInput(
                "provider", "no payment provider is configured; billing is staff-managed"
            )
        with self._rt.read(owner.tenant) as uow:
            current = uow.subscriptions.current(owner)
        if current is None or not current.external_id:
            return ProviderOutcome("applied", current, ("no provider subscription to reconcile",))
        try:
            state = self.provider.fetch(current.external_id)
        except Exception as error:  # the host's provider code
            raise ProviderUnreachable(f"{type(error).__name__}: {error}") from error
        if state is None:
            return ProviderOutcome(
                "applied", current, ("the provider has no such subscription; nothing changed",)
            )
        with self._rt.transaction(owner.tenant, now) as tx:
            outcome = self._follow(tx, state, state.updated_at)
            tx.record(
                PROVIDER,
                "billing.reconcile",
                f"subscription:{current.id}",
                owner=owner,
                after={"changes": list(outcome.changes), "outcome": outcome.outcome},
            )
            return outcome

    def _follow(
        self, tx: Transaction, state: ProviderSubscription, at: datetime
    ) -> ProviderOutcome:
        owner = state.owner
        link = tx.uow.provider.link(state.external_id)
        if link is None and state.checkout_id is not None:
            link = tx.uow.provider.link_for_checkout(state.checkout_id)
        if link is not None and link.owner != owner:
            raise InvalidInput(
                "event",
                f"provider subscription {state.external_id} belongs to {link.owner}, not {owner}",
            )
        if link is not None and link.last_applied_at is not None and at < link.last_applied_at:
            return ProviderOutcome("stale")
        bound = None if link is None else link.subscription_id
        current = self._subs.find(owner)
        changes: list[str] = []
        if bound is not None and (current is None or current.id != bound):
            changes.append(
                "the owner has moved on from this provider subscription; nothing changed"
            )
        else:
            if current is not None and current.is_terminal:
                current = None
            changes = self._move(owner, current, state, None if link is None else link.manager)
            current = self._subs.find(owner)
            bound = None if current is None else current.id
        tx.uow.provider.put_link(
            ProviderLink(
                state.external_id,
                owner,
                at,
                state.checkout_id or (link.checkout_id if link else None),
                state.plan_key,
                None if link is None else link.manager,
                bound,
            )
        )
        return ProviderOutcome("applied", self._subs.find(owner), tuple(changes))

    def _move(
        self,
        owner: Owner,
        current: Subscription | None,
        state: ProviderSubscription,
        manager: str | None,
    ) -> list[str]:
        """Bring our subscription to the provider's state, one transition at a time."""
        subs, changes = self._subs, []
        if current is None:
            if state.status not in (
                SubscriptionStatus.ACTIVE,
                SubscriptionStatus.PAST_DUE,
                SubscriptionStatus.PENDING,
            ):
                return []
            start = (
                subs.begin_checkout
                if state.status is SubscriptionStatus.PENDING
                else subs.subscribe
            )
            start(
                owner,
                state.plan_key,
                actor=PROVIDER,
                seats=state.seats,
                external_id=state.external_id,
                plan_manager=manager,
            )
            changes.append(
                "begin_checkout" if state.status is SubscriptionStatus.PENDING else "subscribe"
            )
            current = subs.get(owner)
        if (
            current.status is SubscriptionStatus.SUSPENDED
            and state.status is not SubscriptionStatus.CANCELED
        ):
            return changes  # a suspension is staff's to lift
        live = current.status not in (SubscriptionStatus.PENDING, SubscriptionStatus.FAILED)
        if live and current.plan_key != state.plan_key:
            subs.change_plan(
                owner, state.plan_key, actor=PROVIDER, if_over_quota=OverQuotaPolicy.ALLOW
            )
            changes.append("change_plan")
        path = path_to(current.status, state.status) or []
        if (
            current.status is SubscriptionStatus.PENDING
            and state.status is SubscriptionStatus.CANCELED
        ):
            path = [Event.ACTIVATE, Event.CANCEL]  # it was paid for, then canceled
        for event in path:
            if event is Event.ACTIVATE:
                subs.convert(
                    owner,
                    actor=PROVIDER,
                    plan_key=state.plan_key,
                    keep_cancellation=state.cancel_at_period_end,
                    if_over_quota=OverQuotaPolicy.ALLOW,
                    # the provider reports a payment that has happened: mirror it even
                    # while a contract is out for signature
                    without_contract=True,
                )
            elif event is Event.FAIL:
                subs.fail(owner, actor=PROVIDER)
            elif event is Event.MARK_PAST_DUE:
                subs.mark_past_due(owner, actor=PROVIDER)
            elif event is Event.SETTLE:
                subs.settle(owner, actor=PROVIDER)
            elif event is Event.CANCEL:
                subs.cancel(owner, actor=PROVIDER)
            changes.append(event.value)
        current = subs.get(owner)
        if not current.is_terminal and current.status is not SubscriptionStatus.PENDING:
            if state.seats is not None and current.seats != state.seats:
                subs.change_seats(
                    owner, state.seats, actor=PROVIDER, if_over_quota=OverQuotaPolicy.ALLOW
                )
                changes.append("change_seats")
            if current.cancel_at_period_end != state.cancel_at_period_end:
                if state.cancel_at_period_end:
                    subs.cancel(owner, actor=PROVIDER, at_period_end=True)
                else:
                    subs.undo_cancel(owner, actor=PROVIDER)
                changes.append("schedule_cancel" if state.cancel_at_period_end else "undo_cancel")
        current = subs.get(owner)
        amend: dict[str, Any] = {}
        if (
            current.external_id != state.external_id
            and state.status is not SubscriptionStatus.FAILED
        ):
            amend["external_id"] = state.external_id
        if amend:
            subs.amend(owner, actor=PROVIDER, **amend)
            changes.append("amend")
        if manager is not None and current.plan_manager is None:
            subs.set_plan_manager(owner, manager, actor=PROVIDER)
            changes.append("set_plan_manager")
        return changes

    # -- guards for the host ---------------------------------------------------------------

    def ensure_deletable(self, owner: Owner) -> None:
        """Seed 003: refuse to delete an owner whose paid plan is active and not set to
        cancel at the end of its period. Call it before deleting the owner."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            current = read_current(uow, owner, self._rt.read_now(owner.tenant))
            if current is None or current.is_terminal or current.cancel_at_period_end:
                return
            if not uow.plans.get(current.plan_key, current.plan_version).is_free:
                raise OwnerHasActivePlan(owner, current.plan_key)

    def ensure_member_removable(self, owner: Owner, member: str) -> None:
        """Seed 003: the plan manager — the member who subscribed — cannot be removed or
        lose admin while the paid plan is active. Call it before either."""
        owner = as_owner(owner)
        check_id(member, "member")
        with self._rt.read(owner.tenant) as uow:
            current = read_current(uow, owner, self._rt.read_now(owner.tenant))
            if current is None or current.is_terminal:
                return
            if (
                current.plan_manager == member
                and not uow.plans.get(current.plan_key, current.plan_version).is_free
            ):
                raise PlanManagerProtected(owner, member)

    def _is_paid(self, tx: Transaction, subscription: Subscription) -> bool:
        return not tx.uow.plans.get(subscription.plan_key, subscription.plan_version).is_free
