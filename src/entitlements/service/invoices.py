"""Invoices: drafts (pure readings of a period), finalized invoices, payment and overdue.

A draft reads the period's stretches from the subscription history and its usage
counters, and hands them to `entitlements.domain.invoice.draft_invoice`; nothing is
stored. Finalizing stores the draft as an immutable invoice numbered from a gapless
sequence (the number is taken last, under the sequence's lock, so a rollback gives it
back), once per owner and period. With staff-managed billing the subscription carries
the due date of its oldest open invoice (`Subscription.payment_due_at`), and time makes
it past due at that instant on every read, as with every other time rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING

import attrs

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.checks import (
    check_bool,
    check_count,
    check_id,
    check_many,
    check_matching,
    check_reason,
)
from entitlements.domain.due import DueChange, as_of
from entitlements.domain.instant import Period, given_utc, optional_given_utc
from entitlements.domain.invoice import (
    DEFAULT_NET_DAYS,
    Invoice,
    InvoiceDraft,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    TaxHook,
    draft_invoice,
    invoice_number,
    sealed,
    stretches,
)
from entitlements.domain.money import round_money
from entitlements.domain.notification import invoice_finalized
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import LimitKind, Plan
from entitlements.domain.provider_commands import CommandKind
from entitlements.domain.subscription import Event, Subscription, SubscriptionStatus
from entitlements.errors import IllegalTransition, InvalidInput, InvoiceExists, NotFound
from entitlements.ports import UnitOfWork
from entitlements.service import lifecycle
from entitlements.service.due import SWEEPER
from entitlements.service.notifications import enqueue
from entitlements.service.runtime import Runtime, Transaction

if TYPE_CHECKING:
    from entitlements.service.provider_outbox import ProviderOutbox

__all__ = [
    "InvoiceSettings",
    "Invoices",
    "draft_for",
    "finalize_period",
    "finalize_periods",
    "invoice_ended_periods",
]

_TICK = timedelta(microseconds=1)
_PREFIX = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,15}$")


def _prefix(value: object) -> str:
    rule = "must be 1-16 capital letters, digits or '_' (e.g. 'INV')"
    return check_matching(value, _PREFIX, "invoice_prefix", rule)


def _net_days(value: object) -> int:
    return check_count(value, "net_days", maximum=3650)


def _staff(value: object) -> bool:
    return check_bool(value, "staff_managed")


def _tax(value: object) -> TaxHook | None:
    if value is not None and not callable(value):
        raise InvalidInput("tax", "must be a callable taking an InvoiceDraft, or None", value)
    return value


@attrs.frozen
class InvoiceSettings:
    """What a host configures about invoices."""

    prefix: str = attrs.field(default="INV", converter=_prefix)
    """Invoice numbers read ``{prefix}-{year}-{000123}``; one gapless sequence per prefix
    and tenant."""
    credit_prefix: str = attrs.field(default="CN", converter=_prefix)
    """The prefix of credit notes, a sequence of their own."""
    net_days: int = attrs.field(default=DEFAULT_NET_DAYS, converter=_net_days)
    """Days an invoice may stay unpaid when neither the plan nor the contract says."""
    staff_managed: bool = attrs.field(default=False, converter=_staff)
    """Staff bill directly (seed 000): an invoice unpaid at its due date makes the
    subscription past due at that instant, its payment makes it active again. Leave it
    off when a payment provider's events say what is paid."""
    tax: TaxHook | None = attrs.field(default=None, converter=_tax)
    """The host's taxes for a draft (`TaxHook`); ``None``: no tax lines."""


def _period_of(subscription: Subscription, start: datetime | None, now: datetime) -> Period:
    """The period starting at ``start``, or the one holding ``now``."""
    cycle, current = subscription.cycle, subscription.current_period
    if cycle is None or current is None:
        raise InvalidInput("period", "this subscription is not billed by period")
    anchor = subscription.cycle_anchor or current.start
    if start is None:
        return cycle.period_containing(anchor, now)
    period = cycle.period_containing(anchor, start)
    if period.start != start:
        raise InvalidInput(
            "period", f"no billing period starts then (the one holding it starts {period.start})"
        )
    return period


def _ended_period(subscription: Subscription, start: datetime | None, now: datetime) -> Period:
    """The period starting at ``start``, or the last one ended by ``now``; refuses one
    still running."""
    if start is not None:
        period = _period_of(subscription, start, now)
    else:
        period = _period_of(subscription, None, now - _TICK)
        if period.end > now:
            period = _period_of(subscription, None, period.start - _TICK)
    if period.end > now:
        raise InvalidInput("period", f"the period ends {period.end.isoformat()}; not yet")
    return period


def _usage(uow: UnitOfWork, owner: Owner, plans: Sequence[Plan], period: Period) -> dict[str, int]:
    metrics = {
        name
        for plan in plans
        for name, limit in plan.limits.items()
        if limit.kind is LimitKind.METERED
    }
    return {m: uow.usage.counter(owner, m, period.start).used for m in sorted(metrics)}


_States = Sequence[tuple[datetime, Subscription | None]]


def _drafted(
    uow: UnitOfWork,
    owner: Owner,
    period: Period,
    at: datetime,
    settings: InvoiceSettings,
    states: _States,
    plans: Mapping[tuple[str, int], Plan],
) -> InvoiceDraft | None:
    """The draft of ``period`` as of ``at`` from the states stored up to ``at`` (what
    they say stands until the period ends, with the changes time makes on its own, such
    as an add-on running out, applied); ``plans``: the plan versions read so far, more
    are read when the stretches hold others."""
    cut = stretches(states, period)
    wanted = sorted({(s.subscription.plan_key, s.subscription.plan_version) for s in cut})
    missing = [key for key in wanted if key not in plans]
    if missing:
        plans = {**plans, **dict(zip(missing, uow.plans.get_many(missing), strict=True))}
    held = {key: plans[key] for key in wanted}
    usage = _usage(uow, owner, list(held.values()), period)
    found = draft_invoice(owner, period, cut, held, usage, at, default_net_days=settings.net_days)
    return None if found is None else found.with_tax(settings.tax)


def draft_for(
    uow: UnitOfWork,
    owner: Owner,
    period: Period,
    at: datetime,
    settings: InvoiceSettings,
    extra: tuple[datetime, Subscription] | None = None,
) -> InvoiceDraft | None:
    """The draft of ``period`` as of ``at`` from the stored history (``extra``: one more
    state from an instant on, for a preview)."""
    states = list(uow.subscriptions.states(owner, period.start, min(at + _TICK, period.end)))
    if extra is not None:
        states = [s for s in states if s[0] < extra[0]] + [extra]
    return _drafted(uow, owner, period, at, settings, states, {})


def _period_end_drafts(
    uow: UnitOfWork, wanted: Sequence[tuple[Owner, Period]], settings: InvoiceSettings
) -> list[InvoiceDraft | None]:
    """`draft_for` each ended period at its end: the group's history read at once, and
    the plan versions they hold once."""
    read = uow.subscriptions.states_many([(o, p.start, p.end) for o, p in wanted])
    versions = {
        (sub.plan_key, sub.plan_version) for states in read for _, sub in states if sub is not None
    }
    keys = sorted(versions)
    plans = dict(zip(keys, uow.plans.get_many(keys), strict=True))
    return [
        _drafted(uow, owner, period, period.end, settings, states, plans)
        for (owner, period), states in zip(wanted, read, strict=True)
    ]


_GROUP = 100
"""Owners finalized in one unit of work by `Invoices.finalize_many`."""


def _groups(owners: Sequence[Owner]) -> list[list[Owner]]:
    """``owners`` in runs of one tenant, at most `_GROUP` each, in order."""
    groups: list[list[Owner]] = []
    for owner in owners:
        if groups and len(groups[-1]) < _GROUP and groups[-1][0].tenant == owner.tenant:
            groups[-1].append(owner)
        else:
            groups.append([owner])
    return groups


_UNBILLED = ("as_of", "net_days")
"""What a draft holds that its invoice does not: when it was computed, and its terms."""


def _stored_invoice(draft: InvoiceDraft, number: str, id: str, now: datetime) -> Invoice:
    """The draft as issued: what it bills, plus its number, its dates and its hash."""
    drafted = attrs.asdict(draft, recurse=False, filter=attrs.filters.exclude(*_UNBILLED))
    invoice = Invoice(
        id=id,
        number=number,
        kind=InvoiceKind.INVOICE,
        total=draft.total,
        issued_at=now,
        due_at=now + timedelta(days=draft.net_days),
        content_hash="",
        **drafted,
    )
    return sealed(invoice)


def _next_due(uow: UnitOfWork, subscription: Subscription, *, skip: str = "") -> datetime | None:
    """When the subscription's oldest open invoice falls due (``skip``: one being paid)."""
    dates = [
        i.due_at
        for i in uow.invoices.list(subscription.owner)
        if i.kind is InvoiceKind.INVOICE
        and i.status is InvoiceStatus.OPEN
        and i.subscription_id == subscription.id
        and i.id != skip
    ]
    return min(dates, default=None)


def _follow_payment(
    tx: Transaction, who: Actor, subscription_id: str, owner: Owner, due: datetime | None
) -> None:
    """Put the oldest open due date on the subscription; settle it when none is overdue
    any more — underneath a suspension too, which then resumes to active (paying while
    suspended must not leave the owner past due once the suspension is lifted)."""
    current = lifecycle.load(tx, owner)
    if current.id != subscription_id or current.is_terminal or current.payment_due_at == due:
        return
    fields: dict[str, object] = {"payment_due_at": due}
    suspended = current.status is SubscriptionStatus.SUSPENDED
    underlying = current.suspended_from if suspended else current.status
    settles = underlying is SubscriptionStatus.PAST_DUE and not (due is not None and due <= tx.now)
    event, action = (Event.SETTLE, "invoice_paid") if settles else (Event.AMEND, "invoice_due")
    if settles and suspended:
        event, fields["suspended_from"] = Event.AMEND, SubscriptionStatus.ACTIVE
    lifecycle.apply(tx, who, current, event, lambda _: fields, action=action)


def finalize_period(
    tx: Transaction,
    owner: Owner,
    period: Period,
    settings: InvoiceSettings,
    who: Actor,
    outbox: ProviderOutbox | None = None,
) -> Invoice | None:
    """Store the invoice of ``period`` (already ended) for ``owner``: the one there is,
    or a new one from the draft as of the period's end; ``None`` when nothing is owed."""
    return finalize_periods(tx, [(owner, period)], settings, who, outbox)[0]


def finalize_periods(
    tx: Transaction,
    wanted: Sequence[tuple[Owner, Period]],
    settings: InvoiceSettings,
    who: Actor,
    outbox: ProviderOutbox | None = None,
) -> list[Invoice | None]:
    """`finalize_period` for each of ``wanted`` in one unit of work: the invoices there
    are read at once, the others drafted from one read of the history, numbered in
    order from the sequence (its lock taken once) and stored with one insert. A period
    asked twice is finalized once."""
    keys = list(dict.fromkeys((owner, period.start) for owner, period in wanted))
    periods = {(owner, period.start): period for owner, period in wanted}
    done: dict[tuple[Owner, datetime], Invoice | None] = dict(tx.uow.invoices.for_periods(keys))
    todo = [key for key in keys if key not in done]
    drafts = _period_end_drafts(tx.uow, [(o, periods[(o, s)]) for o, s in todo], settings)
    issued = []
    for key, draft in zip(todo, drafts, strict=True):
        if draft is None or draft.total == 0:
            done[key] = None  # nothing owed: no invoice, and no number used
            continue
        sequence = tx.uow.invoices.next_number(settings.prefix)
        number = invoice_number(settings.prefix, tx.now.year, sequence)
        invoice = _stored_invoice(draft, number, tx.runtime.new_id(), tx.now)
        done[key] = invoice
        issued.append(invoice)
    for invoice in tx.uow.invoices.add_many(issued):
        _announce(tx, invoice, settings, who, outbox)
    return [done[(owner, period.start)] for owner, period in wanted]


def _announce(
    tx: Transaction,
    invoice: Invoice,
    settings: InvoiceSettings,
    who: Actor,
    outbox: ProviderOutbox | None,
) -> None:
    """What a stored invoice is followed by: its audit event, its notification, its
    command to the provider, and with staff-managed billing its due date on the
    subscription."""
    owner = invoice.owner
    tx.record(who, "invoice.finalize", f"invoice:{invoice.id}", owner=owner, after=invoice)
    enqueue(tx, owner, invoice_finalized(invoice))
    if outbox is not None and invoice.total > 0:
        outbox.record(
            tx,
            CommandKind.SEND_INVOICE,
            owner,
            {"invoice_id": invoice.id},
            subscription_id=invoice.subscription_id,
        )
    if settings.staff_managed and invoice.total > 0:
        current = tx.uow.subscriptions.current(owner)
        if current is not None and current.id == invoice.subscription_id:
            due = min(d for d in (current.payment_due_at, invoice.due_at) if d is not None)
            _follow_payment(tx, who, current.id, owner, due)


def _amount(value: object, currency: str) -> Decimal:
    if isinstance(value, bool | float) or not isinstance(value, Decimal | str | int):
        raise InvalidInput("amount", "must be a Decimal or a string such as '10.00'", value)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidInput("amount", "is not a decimal amount", value) from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidInput("amount", "must be a positive amount", value)
    if round_money(Fraction(amount), currency) != amount:
        raise InvalidInput("amount", f"must be in {currency}'s minor unit", value)
    return amount


class Invoices:
    """What each owner owes, period by period."""

    def __init__(
        self,
        runtime: Runtime,
        settings: InvoiceSettings | None = None,
        outbox: ProviderOutbox | None = None,
    ) -> None:
        self._rt = runtime
        self.settings = settings or InvoiceSettings()
        """The host's invoice settings."""
        self._outbox = outbox

    def draft(
        self, owner: Owner, *, period: datetime | None = None, now: datetime | None = None
    ) -> InvoiceDraft | None:
        """The invoice of the period holding now (or of the period starting at
        ``period``) as it stands now; ``None`` when nothing is billed in it. Nothing is
        stored."""
        owner = as_owner(owner)
        start = optional_given_utc(period, "period")
        at = self._rt.now(now)
        with self._rt.read(owner.tenant) as uow:
            current = uow.subscriptions.current(owner)
            if current is None:
                return None
            chosen = _period_of(as_of(current, at), start, at)
            return draft_for(uow, owner, chosen, min(at, chosen.end), self.settings)

    def finalize(
        self,
        owner: Owner,
        *,
        period: datetime | None = None,
        actor: Actor | str,
        now: datetime | None = None,
    ) -> Invoice | None:
        """Store the invoice of the period starting at ``period`` (default: the last one
        ended) — once: a second call, or a concurrent one, returns the same invoice.
        ``None`` when nothing is owed for it."""
        owner, who = as_owner(owner), as_actor(actor)
        start = optional_given_utc(period, "period")
        try:
            with self._rt.transaction(owner.tenant, now) as tx:
                tx.authorize(who, "invoice.finalize", owner)
                current = tx.uow.subscriptions.current(owner)
                if current is None:
                    return None
                chosen = _ended_period(as_of(current, tx.now), start, tx.now)
                return finalize_period(tx, owner, chosen, self.settings, who, self._outbox)
        except InvoiceExists:  # a concurrent finalizer stored it first
            with self._rt.read(owner.tenant) as uow:
                found = uow.invoices.for_period(owner, chosen.start)
            if found is None:  # refused by another key than the period's: say so
                raise
            return found

    def finalize_many(
        self,
        owners: Iterable[Owner],
        *,
        period: datetime | None = None,
        actor: Actor | str,
        now: datetime | None = None,
    ) -> list[Invoice | None]:
        """`finalize` for each of ``owners``, answers in the same order, a group of them
        to a unit of work: what a host invoicing a period's end itself calls (one read
        of their invoices, of their history and of their plans per group, one insert of
        the invoices and one of their lines, the sequence's lock taken once). A group in
        which another finalizer stored an invoice first is finalized owner by owner,
        with the same answers. An owner `finalize` would refuse raises the same error,
        the groups before its own stored."""
        wanted = [as_owner(o) for o in check_many(owners, "owners", "Owner values")]
        who = as_actor(actor)
        start = optional_given_utc(period, "period")
        found: list[Invoice | None] = []
        for group in _groups(wanted):
            try:
                found.extend(self._finalize_group(group, start, who, now))
            except InvoiceExists:
                found.extend(self.finalize(o, period=start, actor=who, now=now) for o in group)
        return found

    def _finalize_group(
        self, group: Sequence[Owner], start: datetime | None, who: Actor, now: datetime | None
    ) -> list[Invoice | None]:
        with self._rt.transaction(group[0].tenant, now) as tx:
            for owner in group:
                tx.authorize(who, "invoice.finalize", owner)
            current = tx.uow.subscriptions.current_many(group)
            chosen = {
                owner: _ended_period(as_of(current[owner], tx.now), start, tx.now)
                for owner in group
                if owner in current
            }
            made = finalize_periods(tx, list(chosen.items()), self.settings, who, self._outbox)
            invoices = dict(zip(chosen, made, strict=True))
            return [invoices.get(owner) for owner in group]

    def get(self, invoice_id: str, *, tenant: str | None = None) -> Invoice:
        """The invoice of ``tenant``; raises `InvoiceNotFound`."""
        invoice_id = check_id(invoice_id, "invoice_id", max_length=64)
        with self._rt.read(tenant) as uow:
            return uow.invoices.get(invoice_id)

    def list(self, owner: Owner) -> Sequence[Invoice]:
        """The owner's invoices and credit notes, oldest first."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.invoices.list(owner)

    def mark_paid(
        self,
        invoice_id: str,
        *,
        actor: Actor | str,
        reference: str | None = None,
        at: datetime | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
    ) -> Invoice:
        """Record the payment of an open invoice (``at``: when it was paid, default now);
        with staff-managed billing a past-due subscription with nothing else overdue is
        active again."""
        who = as_actor(actor)
        if reference is not None:
            reference = check_id(reference, "reference")
        paid_at = None if at is None else given_utc(at, "at")
        return self._settle(invoice_id, who, tenant, now, InvoiceStatus.PAID, paid_at, reference)

    def void(
        self,
        invoice_id: str,
        *,
        actor: Actor | str,
        reason: str,
        tenant: str | None = None,
        now: datetime | None = None,
    ) -> Invoice:
        """Cancel an open invoice that should not have been issued (a paid one is
        corrected by a credit note instead)."""
        who, why = as_actor(actor), check_reason(reason)
        if not why:
            raise InvalidInput("reason", "say why the invoice is voided", reason)
        return self._settle(invoice_id, who, tenant, now, InvoiceStatus.VOID, None, why)

    def _settle(
        self,
        invoice_id: str,
        who: Actor,
        tenant: str | None,
        now: datetime | None,
        status: InvoiceStatus,
        at: datetime | None,
        note: str | None,
    ) -> Invoice:
        invoice_id = check_id(invoice_id, "invoice_id", max_length=64)
        with self._rt.transaction(tenant, now) as tx:
            invoice = tx.uow.invoices.get(invoice_id)
            tx.authorize(who, f"invoice.{status.value}", invoice.owner)
            if invoice.kind is not InvoiceKind.INVOICE or invoice.status is not InvoiceStatus.OPEN:
                raise IllegalTransition(
                    "invoice", invoice.number, invoice.status.value, status.value, ("open",)
                )
            if status is InvoiceStatus.PAID:
                changed = attrs.evolve(
                    invoice, status=status, paid_at=at or tx.now, payment_reference=note
                )
            else:
                changed = attrs.evolve(invoice, status=status, voided_at=tx.now, void_reason=note)
            stored = tx.uow.invoices.set_payment(changed)
            action = "invoice.mark_paid" if status is InvoiceStatus.PAID else "invoice.void"
            tx.record(
                who,
                action,
                f"invoice:{invoice.id}",
                owner=invoice.owner,
                before=invoice,
                after=stored,
                reason=note if status is InvoiceStatus.VOID else None,
            )
            if self.settings.staff_managed:
                self._after_payment(tx, who, stored)
            return stored

    def _after_payment(self, tx: Transaction, who: Actor, invoice: Invoice) -> None:
        current = tx.uow.subscriptions.current(invoice.owner)
        if current is None or current.id != invoice.subscription_id:
            return
        due = _next_due(tx.uow, current, skip=invoice.id)
        try:
            _follow_payment(tx, who, current.id, invoice.owner, due)
        except NotFound:
            return

    def credit(
        self,
        invoice_id: str,
        *,
        amount: Decimal | str,
        actor: Actor | str,
        reason: str,
        tenant: str | None = None,
        now: datetime | None = None,
    ) -> Invoice:
        """Issue a credit note against a paid invoice, numbered from the credit-note
        sequence; the credits of one invoice never exceed its total."""
        who, why = as_actor(actor), check_reason(reason)
        if not why:
            raise InvalidInput("reason", "say why the invoice is credited", reason)
        invoice_id = check_id(invoice_id, "invoice_id", max_length=64)
        with self._rt.transaction(tenant, now) as tx:
            invoice = tx.uow.invoices.get(invoice_id)
            tx.authorize(who, "invoice.credit", invoice.owner)
            if invoice.kind is not InvoiceKind.INVOICE or invoice.status is not InvoiceStatus.PAID:
                raise IllegalTransition(
                    "invoice", invoice.number, invoice.status.value, "credit", ("paid",)
                )
            value = _amount(amount, invoice.currency)
            credited = -sum(
                (c.total for c in tx.uow.invoices.list(invoice.owner) if c.credits == invoice.id),
                Decimal(0),
            )
            if credited + value > invoice.total:
                raise InvalidInput(
                    "amount",
                    f"credits would exceed the invoice's total {invoice.total} "
                    f"({credited} credited already)",
                    amount,
                )
            sequence = tx.uow.invoices.next_number(self.settings.credit_prefix)
            line = InvoiceLine(
                LineKind.CREDIT,
                f"Credit against {invoice.number}: {why}",
                1,
                -value,
                tx.now,
                tx.now + _TICK,
                Fraction(-value),
                -value,
            )
            note = Invoice(
                id=tx.runtime.new_id(),
                number=invoice_number(self.settings.credit_prefix, tx.now.year, sequence),
                kind=InvoiceKind.CREDIT_NOTE,
                owner=invoice.owner,
                subscription_id=invoice.subscription_id,
                period=None,
                currency=invoice.currency,
                lines=(line,),
                total=-value,
                issued_at=tx.now,
                due_at=tx.now,
                content_hash="",
                credits=invoice.id,
            )
            note = tx.uow.invoices.add(sealed(note))
            tx.record(
                who,
                "invoice.credit",
                f"invoice:{note.id}",
                owner=invoice.owner,
                after=note,
                reason=why,
            )
            return note


def invoice_ended_periods(
    tx: Transaction,
    changes: Sequence[DueChange],
    settings: InvoiceSettings,
    outbox: ProviderOutbox | None = None,
) -> None:
    """The sweep's part: each period that time ended (a renewal, a cancellation or expiry
    at its end) gets its invoice, the periods of all ``changes`` finalized together —
    none to draft while the catalog prices nothing and the subscription carries no
    contract amount (only those can owe)."""
    ended = []
    for change in changes:
        period = change.before.current_period
        if period is None or change.event not in _ENDING or change.at < period.end:
            continue
        contract = change.before.contract
        if not tx.uow.plans.any_priced() and (contract is None or contract.amount is None):
            continue
        ended.append((change.before.owner, period))
    if ended:
        tx.write_states()  # the drafts read the history those states extend
        finalize_periods(tx, ended, settings, SWEEPER, outbox)


_ENDING = frozenset({Event.RENEW_PERIOD, Event.CANCEL, Event.EXPIRE})
