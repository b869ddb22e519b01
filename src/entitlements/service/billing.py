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

import attrs

from entitlements.domain.actor import Actor, ActorKind, as_actor
from entitlements.domain.billing import (
    Assignment,
    AssignmentKind,
    Checkout,
    ProviderEvent,
    ProviderLink,
    ProviderSubscription,
)
from entitlements.domain.checks import (
    MAX_COUNT,
    check_id,
    check_key,
    check_optional_count,
    check_reason,
    parse_enum,
)
from entitlements.domain.lifecycle import ProviderEffect, Route, route
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import Plan
from entitlements.domain.plan_change import SubscriptionChange
from entitlements.domain.provider_commands import CommandKind, CommandStatus, ProviderCommand
from entitlements.domain.requests import KeyedRequest
from entitlements.domain.subscription import Event, Subscription
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
from entitlements.service import lifecycle
from entitlements.service.assignment import PlanAssignment
from entitlements.service.assignment import live as live_of
from entitlements.service.due import read_current
from entitlements.service.provider_events import PROVIDER, apply_state, link_of
from entitlements.service.provider_outbox import ProviderOutbox
from entitlements.service.requests import claim_key, settle_key
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import in_force

__all__ = ["Billing", "BillingState", "ProviderOutcome"]


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


@attrs.frozen
class _Asked:
    """An assignment as asked: by whom, for which owner, onto which plan, how many
    seats, and what to do about usage over a new limit."""

    who: Actor
    owner: Owner
    plan: Plan
    seats: int | None
    policy: OverQuotaPolicy


class Billing:
    """``ents.billing``: plans bought through the host's payment provider, and the
    provider's events applied to our subscriptions."""

    def __init__(
        self,
        runtime: Runtime,
        assignment: PlanAssignment,
        provider: PaymentProvider | None = None,
    ) -> None:
        self._rt = runtime
        self._rules = assignment
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
        return self._rules.free_plan.enabled

    # -- assignment ----------------------------------------------------------------------

    @retries_lost_races
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
        asked = _Asked(who, owner, tx.uow.plans.get(plan_key), seats, if_over_quota)
        plan = asked.plan
        # before the provider is told anything
        tx.change_terms(owner)
        live = live_of(tx.uow.subscriptions.current(owner))
        self._rules.check(tx, owner, plan, live, who)
        if live is not None and (live.plan_key, live.plan_version) == (plan.key, plan.version):
            raise InvalidInput("plan_key", f"{owner} is already on {plan.key}")
        way = route(
            plan_is_free=plan.is_free,
            has_provider=self.provider is not None,
            live=live,
            live_is_paid=self._at_provider(tx, live),
        )
        if way is Route.PROVIDER_CHANGE:
            return self._provider_change(tx, asked, live)
        if way is Route.CHECKOUT:
            return self._checkout(tx, asked, live)
        command = None
        if way is Route.FREE_AFTER_PROVIDER_CANCEL:
            command, live = self._leave_provider(tx, asked, live), None
        return self._assign_directly(tx, asked, live), command

    def _provider_change(
        self, tx: Transaction, asked: _Asked, live: Subscription | None
    ) -> tuple[Assignment, ProviderCommand]:
        """A plan change here, and of the paid subscription at the provider."""
        assert live is not None
        assert live.external_id
        plan = asked.plan
        change = self._change_plan(tx, asked)
        effect = ProviderEffect.change_plan(live.external_id, plan.key, plan.version, asked.seats)
        command = self._send(tx, asked.owner, effect, change.subscription)
        return Assignment(AssignmentKind.PROVIDER_CHANGE, change.subscription), command

    def _leave_provider(
        self, tx: Transaction, asked: _Asked, live: Subscription | None
    ) -> ProviderCommand:
        """End the paid subscription now, here and at the provider (for a free plan)."""
        assert live is not None
        assert live.external_id
        current = lifecycle.load(tx, asked.owner)
        reason = f"moving to the free plan {asked.plan.key}"
        ended = lifecycle.apply(tx, asked.who, current, Event.CANCEL, reason=reason)
        effect = ProviderEffect.cancel(live.external_id, at_period_end=False)
        return self._send(tx, asked.owner, effect, ended)

    def _checkout(
        self, tx: Transaction, asked: _Asked, live: Subscription | None
    ) -> tuple[Assignment, ProviderCommand]:
        """A checkout at the provider; an owner with nothing waits for it, pending."""
        who, plan = asked.who, asked.plan
        manager = who.id if who.kind is ActorKind.MEMBER else None
        subscription = live
        if subscription is None:
            subscription = self._start(tx, asked, Event.BEGIN_CHECKOUT, manager)
        effect = ProviderEffect.checkout(plan.key, plan.version, asked.seats, manager)
        command = self._send(tx, asked.owner, effect, subscription)
        tx.record(
            who,
            "billing.checkout",
            f"provider_command:{command.id}",
            owner=asked.owner,
            after={"plan": plan.key, "command": command.id},
        )
        return Assignment(AssignmentKind.CHECKOUT, subscription), command

    def _assign_directly(
        self, tx: Transaction, asked: _Asked, live: Subscription | None
    ) -> Assignment:
        if live is None:
            # seed 003: a member who takes a paid plan manages it
            who = asked.who
            member = who.kind is ActorKind.MEMBER and not asked.plan.is_free
            started = self._start(tx, asked, Event.SUBSCRIBE, who.id if member else None)
            return Assignment(AssignmentKind.DIRECT, started)
        return Assignment(AssignmentKind.DIRECT, self._change_plan(tx, asked).subscription)

    def _start(
        self, tx: Transaction, asked: _Asked, event: Event, manager: str | None
    ) -> Subscription:
        return lifecycle.start(
            tx,
            self._rules,
            asked.who,
            event,
            asked.owner,
            asked.plan,
            seats=asked.seats,
            plan_manager=manager,
        )

    def _send(
        self, tx: Transaction, owner: Owner, effect: ProviderEffect, subscription: Subscription
    ) -> ProviderCommand:
        """Queue the effect for the provider, sent once ``tx`` commits."""
        return self.outbox.record(
            tx, effect.kind, owner, effect.payload, subscription_id=subscription.id
        )

    def _change_plan(self, tx: Transaction, asked: _Asked) -> SubscriptionChange:
        key = asked.plan.key
        current = lifecycle.load(tx, asked.owner, with_plans=[(key, None)])
        return lifecycle.change_plan(tx, self._rules, asked.who, current, key, asked.policy)

    def _repeated(
        self, tx: Transaction, earlier: KeyedRequest
    ) -> tuple[Assignment, ProviderCommand | None]:
        """What a repeat of an assignment made under its key answers: the first one's
        kind, its subscription as it stands now and its provider command."""
        outcome = earlier.outcome
        subscription = None
        if outcome["subscription"] is not None:
            stored = tx.uow.subscriptions.get(str(outcome["subscription"]))
            subscription = in_force(tx.uow, stored, tx.now, tx.runtime.policy)
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

    @retries_lost_races
    def cancel(
        self, owner: Owner, *, actor: Actor | str, now: datetime | None = None
    ) -> Subscription:
        """Seed 003: cancelling means at the end of the paid period (active until then,
        back to the default plan after), at the provider too (sent after commit)."""
        owner, who = as_owner(owner), as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "billing.cancel", owner)
            stored = tx.uow.subscriptions.current(owner)
            if stored is None or stored.is_terminal:
                raise SubscriptionNotFound(owner)
            current = lifecycle.load(tx, owner)
            canceled = lifecycle.apply(tx, who, current, Event.SCHEDULE_CANCEL)
            if current.external_id and self.provider is not None:
                effect = ProviderEffect.cancel(current.external_id, at_period_end=True)
                self._send(tx, owner, effect, canceled)
            return canceled

    @retries_lost_races
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
        reason = check_reason(reason)
        with self._rt.transaction(owner.tenant, now) as tx:
            current = lifecycle.load(tx, owner)
            tx.authorize(who, "billing.transfer_plan_manager", owner, current)
            return lifecycle.set_plan_manager(tx, who, current, member, reason)

    # -- the provider seam, as billing reads it ------------------------------------------

    def state(self, owner: Owner) -> BillingState:
        """The owner's subscription and what is still pending at the provider."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return BillingState(
                read_current(uow, owner, self._rt.read_now(owner.tenant), self._rt.policy),
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

    @retries_lost_races
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
            tx.authorize(PROVIDER, "billing.apply_provider_event", state.owner)
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
        return self._reconciled(owner, current, state, now)

    @retries_lost_races
    def _reconciled(
        self,
        owner: Owner,
        current: Subscription,
        state: ProviderSubscription,
        now: datetime | None,
    ) -> ProviderOutcome:
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(PROVIDER, "billing.reconcile", owner)
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
        link = link_of(tx, state)
        if link is not None and link.last_applied_at is not None and at < link.last_applied_at:
            return ProviderOutcome("stale")
        changes, found, bound = apply_state(tx, self._rules, state, link)
        tx.uow.provider.put_link(
            ProviderLink(
                state.external_id,
                state.owner,
                at,
                state.checkout_id or (link.checkout_id if link else None),
                state.plan_key,
                None if link is None else link.manager,
                bound,
            )
        )
        return ProviderOutcome("applied", found, tuple(changes))

    # -- guards for the host ---------------------------------------------------------------

    def ensure_deletable(self, owner: Owner) -> None:
        """Seed 003: refuse to delete an owner whose paid plan is active and not set to
        cancel at the end of its period. Call it before deleting the owner."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            current = read_current(uow, owner, self._rt.read_now(owner.tenant), self._rt.policy)
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
            current = read_current(uow, owner, self._rt.read_now(owner.tenant), self._rt.policy)
            if current is None or current.is_terminal:
                return
            if (
                current.plan_manager == member
                and not uow.plans.get(current.plan_key, current.plan_version).is_free
            ):
                raise PlanManagerProtected(owner, member)

    def _at_provider(self, tx: Transaction, live: Subscription | None) -> bool:
        """Whether ``live`` is a paid subscription the provider bills."""
        return (
            self.provider is not None
            and live is not None
            and bool(live.external_id)
            and not tx.uow.plans.get(live.plan_key, live.plan_version).is_free
        )
