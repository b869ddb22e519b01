"""What an owner owes for one billing period: the price integrated over the stretches of
the period, plus the period's metered usage.

A period is cut into stretches during which the billed terms stood still (plan version,
seats, add-ons, contract, whether the status is billed). Each recurring charge gives one
line per stretch: the charge for a whole period times the exact share of the period the
stretch covers (microseconds over microseconds, a fraction, so a one-second stretch of a
31-day month is not rounded to a day). Usage charges bill the period's counters at the
terms in force at the period's last billed instant. Each line is rounded once, half-even,
to the currency's minor unit (`entitlements.domain.money`); the total is the sum of the
rounded lines. Nothing here reads a clock or a store: the stretches and the counters are
given.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import attrs

from entitlements.domain.charges import AddOnCharge, SeatCharge, UsageCharge
from entitlements.domain.contracts.canonical import canonical_json, sha256_hex
from entitlements.domain.due import as_of, next_change_at
from entitlements.domain.instant import Period, utc
from entitlements.domain.money import round_money, to_decimal
from entitlements.domain.owner import Owner
from entitlements.domain.plan import LimitKind, Plan, Price
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import InvalidInput

__all__ = [
    "DEFAULT_NET_DAYS",
    "Invoice",
    "InvoiceDraft",
    "InvoiceKind",
    "InvoiceLine",
    "InvoiceStatus",
    "LineKind",
    "Stretch",
    "TaxHook",
    "billed",
    "billed_before",
    "contract_share",
    "draft_invoice",
    "invoice_document",
    "invoice_hash",
    "invoice_number",
    "sealed",
    "stretches",
]

DEFAULT_NET_DAYS = 30
_S = SubscriptionStatus
_BILLED = frozenset({_S.ACTIVE, _S.PAST_DUE})
_MICRO = timedelta(microseconds=1)


class LineKind(enum.StrEnum):
    """What a line charges for."""

    PRICE = "price"
    CONTRACT = "contract"
    SEATS = "seats"
    ADDON = "addon"
    USAGE = "usage"
    TAX = "tax"
    CREDIT = "credit"


@attrs.frozen
class InvoiceLine:
    """One charge for one stretch of the period (or the period's usage of one metric)."""

    kind: LineKind = attrs.field(converter=LineKind)
    """What it charges for."""
    description: str
    """How it reads on the invoice."""
    quantity: int
    """Seats, add-on units or metered units billed (1 for a flat price)."""
    unit_amount: Decimal
    """The price of one unit for a whole period (usage: the average per unit)."""
    start: datetime
    """The first instant it covers."""
    end: datetime
    """The first instant after it."""
    exact: Fraction
    """The amount before rounding (the charge times the exact share of the period)."""
    amount: Decimal
    """The amount billed: ``exact`` rounded once, half-even, to the minor unit."""


TaxHook = Callable[["InvoiceDraft"], Sequence[tuple[str, Decimal]]]
"""The host's (or provider's) taxes for a draft: ``(description, amount)`` pairs added as
``tax`` lines, each amount already in the currency's minor unit. The library computes no
tax of its own."""


@attrs.frozen
class InvoiceDraft:
    """An invoice as it stands at ``as_of``; nothing is stored."""

    owner: Owner
    """Who owes it."""
    subscription_id: str
    """The subscription billed."""
    period: Period
    """The billing period it is for."""
    currency: str
    """The ISO 4217 code of every amount."""
    lines: tuple[InvoiceLine, ...]
    """Recurring lines by stretch, then usage lines, then tax lines."""
    as_of: datetime
    """The instant it was computed for."""
    net_days: int = DEFAULT_NET_DAYS
    """Days the invoice may stay unpaid once issued."""

    @property
    def subtotal(self) -> Decimal:
        """The sum of the rounded lines before tax."""
        return sum((x.amount for x in self.lines if x.kind is not LineKind.TAX), Decimal(0))

    @property
    def total(self) -> Decimal:
        """The sum of every rounded line: what is owed."""
        return sum((x.amount for x in self.lines), Decimal(0))

    def with_tax(self, hook: TaxHook | None) -> InvoiceDraft:
        """The draft with the host's tax lines added (unchanged without a hook)."""
        if hook is None:
            return self
        taxed = []
        for description, amount in hook(self):
            exact = Fraction(_tax_amount(amount, self.currency))
            taxed.append(
                InvoiceLine(
                    LineKind.TAX,
                    description,
                    1,
                    Decimal(amount),
                    self.period.start,
                    self.period.end,
                    exact,
                    round_money(exact, self.currency),
                )
            )
        return attrs.evolve(self, lines=(*self.lines, *taxed))


def _tax_amount(amount: object, currency: str) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidInput("tax", "a tax hook returns Decimal amounts", amount)
    if round_money(Fraction(amount), currency) != amount:
        raise InvalidInput("tax", f"amounts must be in {currency}'s minor unit", amount)
    return amount


@attrs.frozen
class Stretch:
    """A part of a period during which the subscription's terms stood still."""

    start: datetime
    """The first instant."""
    end: datetime
    """The first instant after it."""
    subscription: Subscription
    """The subscription as it read during the stretch (time applied)."""


def billed(subscription: Subscription) -> bool:
    """Whether the subscription is charged while in this state: active or past due (a
    suspension of either still owes); trials, pending checkouts and ended subscriptions
    owe nothing."""
    status = subscription.status
    if status is _S.SUSPENDED:
        status = subscription.suspended_from or status
    return status in _BILLED


def stretches(
    states: Sequence[tuple[datetime, Subscription | None]], period: Period
) -> list[Stretch]:
    """The period cut where a stored state was written and where time alone changed it
    (an add-on ran out, the subscription expired). ``states``: the state stored at the
    period's start, then each later write inside the period, by instant."""
    out: list[Stretch] = []
    bounds = [max(at, period.start) for at, _ in states] + [period.end]
    for (_, stored), start, end in zip(states, bounds, bounds[1:], strict=False):
        if stored is None or start >= end:
            continue
        cursor = start
        while cursor < end:
            current = as_of(stored, cursor)
            upcoming = next_change_at(current)
            stop = end if upcoming is None or upcoming >= end or upcoming <= cursor else upcoming
            out.append(Stretch(cursor, stop, current))
            cursor = stop
    return out


def billed_before(
    states: Sequence[tuple[datetime, Subscription | None]], period: Period, at: datetime
) -> bool:
    """Whether ``period`` was billed at some instant before ``at`` (``states`` as for
    `stretches`): days a period restarted at ``at`` would leave without an invoice, since
    only whole periods are invoiced."""
    if at <= period.start:
        return False
    head = Period(period.start, min(at, period.end))
    return any(billed(s.subscription) for s in stretches(states, head))


_TERM = re.compile(r"^\s*(\d{1,4})\s*(day|week|month|year)s?\s*$", re.IGNORECASE)
_DAYS = {"day": 1, "week": 7}
_MONTHS = {"month": 1, "year": 12}


def contract_share(term: str | None, cycle_unit: str, cycle_every: int) -> Fraction:
    """The share of a contract's amount one billing period carries: the period's length
    over the term's (a 12-month term billed monthly: 1/12). A term the words do not give
    in days, weeks, months or years, or in units the cycle cannot be compared with (a
    3-month term billed weekly), bills the whole amount each period."""
    found = _TERM.match(term or "")
    if found is None or int(found.group(1)) == 0:
        return Fraction(1)
    count, unit = int(found.group(1)), found.group(2).lower()
    for table in (_DAYS, _MONTHS):
        if unit in table and cycle_unit in table:
            return Fraction(table[cycle_unit] * cycle_every, table[unit] * count)
    return Fraction(1)


def _share(start: datetime, end: datetime, period: Period) -> Fraction:
    return Fraction((end - start) // _MICRO, period.length // _MICRO)


def _minute(at: datetime) -> str:
    if at.year < 1000:  # strftime pads such years or not, by platform: say what it says
        return f"{at:%Y-%m-%d %H:%M}"
    return f"{at.year}-{at.month:02d}-{at.day:02d} {at.hour:02d}:{at.minute:02d}"


def _span(start: datetime, end: datetime) -> str:
    return f"{_minute(start)} to {_minute(end)} UTC"


@attrs.frozen
class _Priced:
    kind: LineKind
    description: str
    quantity: int
    unit: Fraction
    currency: str | None


def _flat(sub: Subscription, plan: Plan) -> list[_Priced]:
    """The contract's amount replaces the plan's flat price for a subscription converted
    from a contract that named one."""
    link = sub.contract
    if link is not None and link.amount is not None and sub.cycle is not None:
        share = contract_share(link.term, sub.cycle.unit.value, sub.cycle.every)
        per_period = Fraction(link.amount) * share
        what = f"Contract {link.contract_id}" + (f" ({link.term})" if link.term else "")
        return [_Priced(LineKind.CONTRACT, what, 1, per_period, link.currency)]
    if isinstance(plan.price, Price):
        what = f"{plan.name} (plan {plan.key} v{plan.version})"
        return [_Priced(LineKind.PRICE, what, 1, Fraction(plan.price.amount), plan.price.currency)]
    return []


def _seats(sub: Subscription, plan: Plan) -> int | None:
    if sub.seats is not None:
        return sub.seats
    for limit in plan.limits.values():
        if limit.kind is LimitKind.SEATS:
            return limit.value
    return None


def _recurring(sub: Subscription, plan: Plan, currency: str | None) -> list[_Priced]:
    """Every recurring charge the state carries, priced for a whole period."""
    priced = _flat(sub, plan)
    addons = {a.key: a.quantity for a in sub.addons}
    for charge in plan.charges:
        if isinstance(charge, SeatCharge):
            quantity = charge.quantity(_seats(sub, plan))
            if quantity:
                what = f"Seats beyond {charge.included} included"
                priced.append(
                    _Priced(LineKind.SEATS, what, quantity, Fraction(charge.unit_amount), currency)
                )
        elif isinstance(charge, AddOnCharge) and addons.get(charge.addon):
            priced.append(
                _Priced(
                    LineKind.ADDON,
                    f"Add-on {charge.addon}",
                    addons[charge.addon],
                    Fraction(charge.unit_amount),
                    currency,
                )
            )
    return priced


def _plan_currency(plan: Plan, sub: Subscription) -> str | None:
    if isinstance(plan.price, Price):
        return plan.price.currency
    return None if sub.contract is None else sub.contract.currency


def _billing_key(stretch: Stretch) -> tuple[Any, ...]:
    sub = stretch.subscription
    return (
        billed(sub),
        sub.plan_key,
        sub.plan_version,
        sub.seats,
        tuple((a.key, a.quantity) for a in sub.addons),
        sub.contract,
        sub.cycle,
    )


def _merged(found: Iterable[Stretch]) -> list[Stretch]:
    """Adjacent stretches that bill the same are one (a staff note does not split a
    line)."""
    out: list[Stretch] = []
    for stretch in found:
        if out and out[-1].end == stretch.start and _billing_key(out[-1]) == _billing_key(stretch):
            out[-1] = attrs.evolve(out[-1], end=stretch.end)
        else:
            out.append(stretch)
    return out


def draft_invoice(
    owner: Owner,
    period: Period,
    found: Sequence[Stretch],
    plans: Mapping[tuple[str, int], Plan],
    usage: Mapping[str, int],
    as_of: datetime,
    *,
    default_net_days: int = DEFAULT_NET_DAYS,
) -> InvoiceDraft | None:
    """The period's invoice from its stretches, the plan versions they hold and the
    period's metered usage by metric; ``None`` when no stretch is billed (nothing owed,
    no invoice)."""
    as_of = utc(as_of, "as_of")
    paid = [s for s in _merged(found) if billed(s.subscription)]
    if not paid:
        return None
    lines: list[tuple[_Priced, Fraction, datetime, datetime]] = []
    for stretch in paid:
        sub = stretch.subscription
        plan = plans[(sub.plan_key, sub.plan_version)]
        share = _share(stretch.start, stretch.end, period)
        for item in _recurring(sub, plan, _plan_currency(plan, sub)):
            exact = item.unit * item.quantity * share
            lines.append((item, exact, stretch.start, stretch.end))
    last = paid[-1].subscription
    last_plan = plans[(last.plan_key, last.plan_version)]
    currency = _plan_currency(last_plan, last)
    for charge in last_plan.charges:
        if isinstance(charge, UsageCharge) and usage.get(charge.metric, 0) > 0:
            used = usage[charge.metric]
            exact = charge.cost(used)
            item = _Priced(
                LineKind.USAGE,
                f"{charge.metric} ({charge.mode.value})",
                used,
                exact / used,
                currency,
            )
            lines.append((item, exact, period.start, period.end))
    currencies = {item.currency for item, *_ in lines} | {currency}
    currencies.discard(None)
    if len(currencies) > 1:
        raise InvalidInput(
            "currency", "the period's charges are in several currencies", sorted(currencies)
        )
    if not currencies:
        return None
    (code,) = currencies
    assert code is not None
    built = tuple(
        InvoiceLine(
            item.kind,
            f"{item.description} · {_span(start, end)}",
            item.quantity,
            to_decimal(item.unit, 6),
            start,
            end,
            exact,
            round_money(exact, code),
        )
        for item, exact, start, end in lines
    )
    net = last_plan.net_days if last_plan.net_days is not None else default_net_days
    return InvoiceDraft(owner, last.id, period, code, built, as_of, net)


class InvoiceStatus(enum.StrEnum):
    """``open`` until paid or voided; a paid invoice is corrected by a credit note, never
    edited."""

    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class InvoiceKind(enum.StrEnum):
    """An invoice for a period, or a credit note against a paid invoice."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


@attrs.frozen
class Invoice:
    """A finalized invoice (or credit note): its content never changes; only its
    payment state does (paid, void), each change audited."""

    id: str
    """Unique per invoice."""
    number: str
    """From the host's gapless sequence: ``INV-2026-000123``."""
    kind: InvoiceKind = attrs.field(converter=InvoiceKind)
    """An invoice or a credit note."""
    owner: Owner
    """Who owes it (or is credited)."""
    subscription_id: str
    """The subscription billed."""
    period: Period | None
    """The period it bills (``None`` for a credit note)."""
    currency: str
    """The ISO 4217 code of every amount."""
    lines: tuple[InvoiceLine, ...]
    """Its lines, as drafted."""
    total: Decimal
    """The sum of its rounded lines (negative for a credit note)."""
    issued_at: datetime
    """When it was finalized."""
    due_at: datetime
    """When payment is due."""
    content_hash: str
    """SHA-256 of its canonical document (`invoice_document`), as a contract's."""
    status: InvoiceStatus = attrs.field(default=InvoiceStatus.OPEN, converter=InvoiceStatus)
    """Open, paid or void."""
    credits: str | None = None
    """For a credit note: the invoice it credits."""
    paid_at: datetime | None = None
    """When it was paid."""
    payment_reference: str | None = None
    """The staff's reference for the payment (a bank transfer id)."""
    voided_at: datetime | None = None
    """When it was voided."""
    void_reason: str | None = None
    """Why it was voided."""

    def overdue(self, at: datetime) -> bool:
        """Whether it is still open at ``at``, its due date passed."""
        return self.status is InvoiceStatus.OPEN and at >= self.due_at


def invoice_number(prefix: str, year: int, sequence: int) -> str:
    """``PREFIX-YYYY-000123``: the year it was issued and its place in the sequence."""
    return f"{prefix}-{year:04d}-{sequence:06d}"


def _line_document(line: InvoiceLine) -> dict[str, Any]:
    return {
        "kind": line.kind.value,
        "description": line.description,
        "quantity": line.quantity,
        "unit_amount": str(line.unit_amount),
        "start": line.start.isoformat(),
        "end": line.end.isoformat(),
        "amount": str(line.amount),
    }


def invoice_document(invoice: Invoice) -> dict[str, Any]:
    """What the content hash covers: everything that makes the invoice, none of its
    payment state."""
    return {
        "number": invoice.number,
        "kind": invoice.kind.value,
        "owner": {
            "tenant": invoice.owner.tenant,
            "kind": invoice.owner.kind,
            "id": invoice.owner.id,
        },
        "subscription": invoice.subscription_id,
        "period": None
        if invoice.period is None
        else [invoice.period.start.isoformat(), invoice.period.end.isoformat()],
        "currency": invoice.currency,
        "lines": [_line_document(x) for x in invoice.lines],
        "total": str(invoice.total),
        "issued_at": invoice.issued_at.isoformat(),
        "due_at": invoice.due_at.isoformat(),
        "credits": invoice.credits,
    }


def invoice_hash(invoice: Invoice) -> str:
    """SHA-256 of the RFC 8785 form of `invoice_document`, like a contract's terms."""
    return sha256_hex(canonical_json(invoice_document(invoice)))


def sealed(invoice: Invoice) -> Invoice:
    """The invoice with the hash of its own document: an invoice and a credit note are
    hashed alike once every field the document holds is set."""
    return attrs.evolve(invoice, content_hash=invoice_hash(invoice))
