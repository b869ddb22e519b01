"""Finalized invoices, their lines and the gapless number sequences, in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import (
    Repository,
    owner_of,
    owners_among,
    same_named,
    storage_errors,
)
from entitlements.domain.instant import Period
from entitlements.domain.invoice import Invoice, InvoiceKind, InvoiceLine, InvoiceStatus
from entitlements.domain.owner import Owner
from entitlements.errors import InvoiceExists, InvoiceNotFound

__all__ = ["SqlInvoices"]

_i, _l, _c = t.invoices.c, t.invoice_lines.c, t.invoice_counters.c


def _amount(value: Any) -> Decimal:
    """Unit prices are kept to six decimals, as drafts give them."""
    return Decimal(value).quantize(Decimal("0.000001"))


def _line_row(invoice_id: str, position: int, line: InvoiceLine) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "position": position,
        "kind": line.kind.value,
        "description": line.description,
        "quantity": line.quantity,
        "unit_amount": line.unit_amount,
        "starts_at": line.start,
        "ends_at": line.end,
        "exact": f"{line.exact.numerator}/{line.exact.denominator}",
        "amount": line.amount,
    }


def _line_from(row: RowMapping, places: int) -> InvoiceLine:
    return InvoiceLine(
        row["kind"],
        row["description"],
        row["quantity"],
        _amount(row["unit_amount"]),
        row["starts_at"],
        row["ends_at"],
        Fraction(row["exact"]),
        Decimal(row["amount"]).quantize(Decimal(1).scaleb(-places)),
    )


def _invoice_row(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "owner_kind": invoice.owner.kind,
        "owner_id": invoice.owner.id,
        "number": invoice.number,
        "kind": invoice.kind.value,
        "subscription_id": invoice.subscription_id,
        "period_start": None if invoice.period is None else invoice.period.start,
        "period_end": None if invoice.period is None else invoice.period.end,
        "currency": invoice.currency,
        "total": invoice.total,
        "issued_at": invoice.issued_at,
        "due_at": invoice.due_at,
        "content_hash": invoice.content_hash,
        "credits": invoice.credits,
        **_payment(invoice),
    }


def _payment(invoice: Invoice) -> dict[str, Any]:
    return {
        "status": invoice.status.value,
        "paid_at": invoice.paid_at,
        "payment_reference": invoice.payment_reference,
        "voided_at": invoice.voided_at,
        "void_reason": invoice.void_reason,
    }


def _invoice_from(row: RowMapping, lines: Sequence[RowMapping]) -> Invoice:
    from entitlements.domain.money import minor_unit

    places = minor_unit(row["currency"])
    period = None if row["period_start"] is None else Period(row["period_start"], row["period_end"])
    return Invoice(
        owner=owner_of(row),
        period=period,
        lines=tuple(_line_from(x, places) for x in lines),
        total=Decimal(row["total"]).quantize(Decimal(1).scaleb(-places)),
        **same_named(
            row,
            "id",
            "number",
            "kind",
            "subscription_id",
            "currency",
            "issued_at",
            "due_at",
            "content_hash",
            "credits",
            "status",
            "paid_at",
            "payment_reference",
            "voided_at",
            "void_reason",
        ),
    )


# statements built once (building one costs as much as running it on SQLite)
_OWNED = (
    _i.tenant == sa.bindparam("tenant"),
    _i.owner_kind == sa.bindparam("kind"),
    _i.owner_id == sa.bindparam("id"),
)
_FOR_PERIOD = sa.select(t.invoices).where(
    *_OWNED, _i.period_start == sa.bindparam("start", type_=_i.period_start.type)
)
_COUNTER = (_c.tenant == sa.bindparam("b_tenant"), _c.prefix == sa.bindparam("b_prefix"))
_BUMP = t.invoice_counters.update().where(*_COUNTER).values(last=_c.last + 1)
_LAST = sa.select(_c.last).where(*_COUNTER)
_SET_LAST = t.invoice_counters.update().where(*_COUNTER).values(last=sa.bindparam("b_last"))
# InnoDB: an UPDATE that finds no row takes a gap lock, and two first finalizers inserting
# into that gap deadlock; one upsert takes the row's exclusive lock at once instead
_UPSERT_MYSQL = (
    mysql.insert(t.invoice_counters)
    .values(tenant=sa.bindparam("b_tenant"), prefix=sa.bindparam("b_prefix"), last=1)
    .on_duplicate_key_update(last=_c.last + 1)
)


class SqlInvoices(Repository):
    """Invoice lines wait in the unit of work (`SqlUnitOfWork.buffer`) and are inserted
    before any read of them here."""

    def _with_lines(self, rows: Sequence[RowMapping]) -> list[Invoice]:
        if not rows:
            return []
        self._uow.flush(t.invoice_lines)
        ids = [r["id"] for r in rows]
        lines: dict[str, list[RowMapping]] = {i: [] for i in ids}
        for line in self._rows(
            sa.select(t.invoice_lines)
            .where(_l.invoice_id.in_(ids))
            .order_by(_l.invoice_id, _l.position)
        ):
            lines[line["invoice_id"]].append(line)
        return [_invoice_from(r, lines[r["id"]]) for r in rows]

    @storage_errors
    def get(self, invoice_id: str) -> Invoice:
        row = self._found(t.invoices, invoice_id, lambda: InvoiceNotFound(invoice_id))
        return self._with_lines([row])[0]

    @storage_errors
    def for_period(self, owner: Owner, period_start: datetime) -> Invoice | None:
        self._scope(owner)
        params = {"tenant": self._t, "kind": owner.kind, "id": owner.id, "start": period_start}
        rows = self._conn.execute(_FOR_PERIOD, params).mappings().all()
        found = self._with_lines(rows)
        return found[0] if found else None

    @storage_errors
    def for_periods(
        self, wanted: Sequence[tuple[Owner, datetime]]
    ) -> Mapping[tuple[Owner, datetime], Invoice]:
        if len(wanted) < 2:  # one owner's: the statement built once
            one = {key: self.for_period(*key) for key in wanted}
            return {key: invoice for key, invoice in one.items() if invoice is not None}
        owners = {(o.kind, o.id): self._scope(o) for o, _ in wanted}
        rows = self._of_periods(owners.values(), {start for _, start in wanted})
        asked = set(wanted)
        found = {}
        for invoice in self._with_lines(rows):
            assert invoice.period is not None
            key = (owners[(invoice.owner.kind, invoice.owner.id)], invoice.period.start)
            if key in asked:
                found[key] = invoice
        return found

    def _of_periods(self, owners: Iterable[Owner], starts: set[datetime]) -> list[RowMapping]:
        """The rows of ``owners`` for any of ``starts``, sought one owner kind at a time
        (see `owners_among`): a superset of the (owner, start) pairs asked."""
        started = _i.period_start.in_(sorted(starts))
        return [
            row
            for owned in owners_among(t.invoices, self._t, owners)
            for row in self._rows(sa.select(t.invoices).where(owned, started))
        ]

    @storage_errors
    def list(self, owner: Owner) -> Sequence[Invoice]:
        rows = self._rows(
            sa.select(t.invoices).where(*self._owned(t.invoices, owner)).order_by(_i.pk)
        )
        return self._with_lines(rows)

    @storage_errors
    def open_due(self, until: datetime, limit: int = 500) -> Sequence[Invoice]:
        rows = self._rows(
            sa.select(t.invoices)
            .where(
                _i.tenant == self._t,
                _i.kind == InvoiceKind.INVOICE.value,
                _i.status == InvoiceStatus.OPEN.value,
                _i.due_at <= until,
            )
            .order_by(_i.due_at, _i.pk)
            .limit(limit)
        )
        return self._with_lines(rows)

    @storage_errors
    def next_number(self, prefix: str) -> int:
        """The first number a unit of work takes moves the counter under its row lock, as
        ever; the lock is then held until the unit of work ends, so the next ones are
        counted here and the counter is moved once to the last, when the unit of work
        flushes (a group of invoices costs one counter update, not one each)."""
        numbers = self._uow.numbers
        if prefix in numbers:
            numbers[prefix] += 1
            return numbers[prefix]
        taken = self._take(prefix)
        self._uow.defer(("invoice_counter", prefix), lambda: self._move(prefix, taken))
        numbers[prefix] = taken
        return taken

    def _move(self, prefix: str, written: int) -> None:
        """Put the counter at the last number this unit of work took."""
        last = self._uow.numbers.get(prefix, written)
        if last != written:
            params = {"b_tenant": self._t, "b_prefix": prefix, "b_last": last}
            self._conn.execute(_SET_LAST, params)
        self._uow.numbers.pop(prefix, None)

    def _take(self, prefix: str) -> int:
        params = {"b_tenant": self._t, "b_prefix": prefix}
        if self._conn.dialect.name == "mysql":
            self._conn.execute(_UPSERT_MYSQL, params)
        elif self._conn.execute(_BUMP, params).rowcount == 0:
            # the first number of this prefix: create the row (or find a concurrent
            # finalizer's), then take the row lock with the same UPDATE as ever after
            self._insert_new(
                t.invoice_counters.insert().values(tenant=self._t, prefix=prefix, last=0)
            )
            self._conn.execute(_BUMP, params)
        return int(self._conn.execute(_LAST, params).scalar_one())

    @storage_errors
    def add(self, invoice: Invoice) -> Invoice:
        owner = self._scope(invoice.owner)
        row = {"tenant": self._t, **_invoice_row(invoice)}
        # taken: the owner has an invoice for the period, or the number is used
        if self._insert_unless_taken(t.invoices, row) is None:
            start = None if invoice.period is None else invoice.period.start
            raise InvoiceExists(owner, start)
        for n, line in enumerate(invoice.lines):
            self._uow.buffer(t.invoice_lines, _line_row(invoice.id, n, line))
        return invoice

    @storage_errors
    def add_many(self, invoices: Sequence[Invoice]) -> Sequence[Invoice]:
        """One insert for the invoices (their lines buffered, as `add`'s); when a unique
        key refuses one of them, the first invoice of the group found stored for its
        owner and period is named."""
        if len(invoices) < 2:
            return [self.add(invoice) for invoice in invoices]
        rows = [{"tenant": self._t, **_invoice_row(i)} for i in invoices]
        for invoice in invoices:
            self._scope(invoice.owner)
        if self._insert_all_unless_taken(t.invoices, rows) < len(rows):
            raise self._taken(invoices)
        for invoice in invoices:
            for n, line in enumerate(invoice.lines):
                self._uow.buffer(t.invoice_lines, _line_row(invoice.id, n, line))
        return list(invoices)

    def _taken(self, invoices: Sequence[Invoice]) -> InvoiceExists:
        """The first of ``invoices`` whose owner and period hold another invoice."""
        ours = {(i.owner, i.period.start): i.id for i in invoices if i.period is not None}
        stored = self.for_periods(list(ours))
        taken = [key for key, found in stored.items() if found.id != ours[key]]
        owner, start = next((key for key in ours if key in taken), next(iter(ours)))
        return InvoiceExists(owner, start)

    @storage_errors
    def set_payment(self, invoice: Invoice) -> Invoice:
        self._conn.execute(
            t.invoices.update()
            .where(_i.tenant == self._t, _i.id == invoice.id)
            .values(**_payment(invoice))
        )
        return self.get(invoice.id)
