"""Notifications of what scheduled changes, pauses and invoices bring: each written once
per fact, in the transaction of the fact or by the sweep."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest

from conftest import STORE_KINDS
from entitlements import (
    Entitlements,
    InvalidInput,
    InvoiceSettings,
    Limit,
    ManualClock,
    Owner,
    Plan,
    Price,
)
from entitlements.domain.notification import NotificationKind, NotificationSettings
from entitlements.testing.contract import CATALOG, START

STAFF = "staff"
_K = NotificationKind
_owners = count()


def fresh() -> Owner:
    return Owner("organization", f"n{next(_owners)}")


@pytest.fixture(params=STORE_KINDS)
def setup(request, make_store):
    store = make_store(request.param)
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock, notification_settings=NotificationSettings())
    for plan in CATALOG:
        ents.plans.define(plan, actor=STAFF)
    return ents, clock


def of_kind(ents: Entitlements, owner: Owner, kind: NotificationKind) -> list:
    return [n for n in ents.notifications.list(owner, limit=500) if n.kind is kind]


@pytest.mark.parametrize("path", ["sweep", "write"])
def test_a_pending_change_applied_is_notified_once_with_its_audit_fact(setup, path):
    ents, clock = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="growth", actor=STAFF)
    assert pending is not None
    clock.set(pending.at + timedelta(hours=1))
    if path == "sweep":
        ents.process_due()
    else:
        ents.subscriptions.change_plan(owner, "enterprise", actor=STAFF)
    ents.process_due()
    applied = of_kind(ents, owner, _K.CHANGE_APPLIED)
    assert len(applied) == 1
    assert applied[0].about == pending.at
    assert applied[0].facts["plan_key"] == "growth"
    audited = [
        e for e in ents.audit.for_owner(owner) if e.action == "subscription.pending_change_applied"
    ]
    assert len(audited) == 1
    assert applied[0].key.endswith(audited[0].id)


def test_a_pending_change_failed_is_notified_once_with_the_reason(setup):
    ents, clock = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "free", actor=STAFF)
    pending = ents.subscriptions.schedule_change(owner, plan="enterprise", actor=STAFF)
    assert pending is not None
    ents.plans.archive("enterprise", actor=STAFF)
    clock.set(pending.at + timedelta(hours=1))
    ents.process_due()
    ents.process_due()
    failed = of_kind(ents, owner, _K.CHANGE_FAILED)
    assert len(failed) == 1
    assert "enterprise" in failed[0].facts["reason"]
    assert of_kind(ents, owner, _K.CHANGE_APPLIED) == []


# -- invoices -------------------------------------------------------------------------


PRO = Plan(
    "pro",
    "Pro",
    limits={"seats": Limit(5, kind="seats")},
    price=Price("30.00", "EUR"),
    status="active",
    net_days=10,
)


def billing(make_store, kind: str, **settings):
    clock = ManualClock(START)
    ents = Entitlements(
        make_store(kind),
        clock=clock,
        invoicing=InvoiceSettings(staff_managed=True),
        notification_settings=NotificationSettings(**settings),
    )
    ents.plans.define(PRO, actor=STAFF)
    return ents, clock


@pytest.fixture(params=STORE_KINDS)
def kind(request):
    return request.param


def test_an_invoice_finalized_is_notified_once_in_its_transaction(make_store, kind):
    ents, clock = billing(make_store, kind)
    owner = fresh()
    ents.subscriptions.subscribe(owner, "pro", actor=STAFF)
    clock.advance(timedelta(days=28))
    invoice = ents.invoices.finalize(owner, actor=STAFF)
    assert ents.invoices.finalize(owner, actor=STAFF) == invoice, "the same invoice again"
    ents.process_due()
    told = of_kind(ents, owner, _K.INVOICE_FINALIZED)
    assert [(n.facts["invoice_id"], n.facts["total"]) for n in told] == [(invoice.id, "30.00")]
    assert told[0].about == invoice.issued_at


def test_the_sweep_invoices_and_tells_of_each_invoice_once(make_store, kind):
    ents, clock = billing(make_store, kind)
    owner = fresh()
    ents.subscriptions.subscribe(owner, "pro", actor=STAFF)
    clock.advance(timedelta(days=28))
    ents.process_due()
    ents.process_due()
    (invoice,) = ents.invoices.list(owner)
    told = of_kind(ents, owner, _K.INVOICE_FINALIZED)
    assert [n.facts["invoice_id"] for n in told] == [invoice.id]


def test_an_invoice_due_in_n_days_then_overdue_each_once(make_store, kind):
    ents, clock = billing(make_store, kind, invoice_due_days=(5, 1))
    owner = fresh()
    ents.subscriptions.subscribe(owner, "pro", actor=STAFF)
    clock.advance(timedelta(days=28))
    invoice = ents.invoices.finalize(owner, actor=STAFF)
    ents.process_due()
    assert of_kind(ents, owner, _K.INVOICE_DUE) == [], "10 days ahead: nothing yet"
    clock.set(invoice.due_at - timedelta(days=5))
    ents.process_due()
    ents.process_due()
    assert [n.facts["days"] for n in of_kind(ents, owner, _K.INVOICE_DUE)] == [5]
    clock.set(invoice.due_at - timedelta(hours=2))
    ents.process_due()
    assert sorted(n.facts["days"] for n in of_kind(ents, owner, _K.INVOICE_DUE)) == [1, 5]
    assert of_kind(ents, owner, _K.INVOICE_OVERDUE) == []
    clock.set(invoice.due_at)
    ents.process_due()
    clock.advance(timedelta(days=1))
    ents.process_due()
    overdue = of_kind(ents, owner, _K.INVOICE_OVERDUE)
    assert [(n.facts["invoice_id"], n.about) for n in overdue] == [(invoice.id, invoice.due_at)]
    assert len(of_kind(ents, owner, _K.INVOICE_DUE)) == 2


def test_a_paid_invoice_is_not_told_overdue(make_store, kind):
    ents, clock = billing(make_store, kind)
    owner = fresh()
    ents.subscriptions.subscribe(owner, "pro", actor=STAFF)
    clock.advance(timedelta(days=28))
    invoice = ents.invoices.finalize(owner, actor=STAFF)
    ents.invoices.mark_paid(invoice.id, actor=STAFF)
    clock.set(invoice.due_at + timedelta(days=1))
    ents.process_due()
    assert of_kind(ents, owner, _K.INVOICE_DUE) == []
    assert of_kind(ents, owner, _K.INVOICE_OVERDUE) == []


# -- pauses ---------------------------------------------------------------------------


def test_a_pause_ending_is_told_n_days_before_once_per_pause(setup):
    ents, clock = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    begins, ends = START + timedelta(days=3), START + timedelta(days=20)
    ents.subscriptions.pause(owner, at=begins, resume_at=ends, actor=STAFF, reason="holiday")
    clock.set(begins)
    ents.process_due()
    assert of_kind(ents, owner, _K.PAUSE_ENDING) == []
    clock.set(ends - timedelta(days=3))
    ents.process_due()
    clock.advance(timedelta(days=1))
    ents.process_due()
    told = of_kind(ents, owner, _K.PAUSE_ENDING)
    assert [(n.facts["days"], n.about) for n in told] == [(3, ends)]
    clock.set(ends + timedelta(days=1))
    ents.process_due()
    assert len(of_kind(ents, owner, _K.PAUSE_ENDING)) == 1


def test_a_pause_begun_by_time_but_not_stored_is_still_told_before_it_ends(setup):
    """The sweep could not store the pause (its owner was held, say) and the pause ends
    before the next sweep would: the notice scan still finds it."""
    from entitlements.service.notifications import write_due

    ents, clock = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    begins, ends = START + timedelta(days=3), START + timedelta(days=5)
    ents.subscriptions.pause(owner, at=begins, resume_at=ends, actor=STAFF, reason="short")
    clock.set(ends - timedelta(days=1))
    assert ents.subscriptions.get(owner).status.value == "paused"  # by time, not stored
    written = write_due(ents.runtime, ents.notifications.settings, None, clock.now())
    told = of_kind(ents, owner, _K.PAUSE_ENDING)
    assert (written, [(n.facts["days"], n.about) for n in told]) == (1, [(3, ends)])


def test_a_pause_without_an_end_tells_nothing(setup):
    ents, clock = setup
    owner = fresh()
    ents.subscriptions.subscribe(owner, "growth", actor=STAFF)
    ents.subscriptions.pause(owner, actor=STAFF, reason="until further notice")
    clock.advance(timedelta(days=40))
    ents.process_due()
    assert of_kind(ents, owner, _K.PAUSE_ENDING) == []


def test_lead_times_are_checked():
    with pytest.raises(InvalidInput):
        NotificationSettings(invoice_due_days=(-1,))
    with pytest.raises(InvalidInput):
        NotificationSettings(pause_ending_days="3")


def _due_contracts(ents: Entitlements, at) -> list[str]:
    with ents.runtime.store.unit_of_work(None, read_only=True) as uow:
        return [c.id for c in uow.contracts.due(at)]


def test_a_contract_left_unsigned_and_its_links_expiring_are_told_once_each(setup):
    """Each sweep reads only the contracts whose next notice has come; a sweep between
    notices reads none, and a write (a link resent) makes the contract due again."""
    from entitlements.domain.contracts.contract import SignerSpec

    ents, clock = setup
    owner = fresh()
    made = ents.contracts.issue(
        owner,
        title="MSA",
        body="Terms.",
        actor=STAFF,
        signers=[SignerSpec("S0", "s0@x.test"), SignerSpec("S1", "s1@x.test")],
    )
    tokens = ents.contracts.send(owner, made.id, actor=STAFF)
    ents.contracts.open(tokens["s1"])
    ents.contracts.consent(tokens["s1"], consent_text="I agree", consent_version="v1")
    ents.contracts.sign(tokens["s1"], typed_name="S0")
    for day in range(16):
        clock.set(START + timedelta(days=day, hours=12))
        if day == 8:
            ents.contracts.resend(owner, made.id, "s2", actor=STAFF)
        ents.process_due()
        assert _due_contracts(ents, clock.now()) == []
    unsigned = of_kind(ents, owner, _K.CONTRACT_UNSIGNED)
    assert [(n.facts["days"], n.about) for n in unsigned] == [(5, START + timedelta(days=5))]
    expiring = of_kind(ents, owner, _K.SIGNING_LINK_EXPIRING)
    assert sorted((n.facts["signer_id"], n.about) for n in expiring) == [
        ("s2", START + timedelta(days=7)),
        ("s2", START + timedelta(days=8 + 7, hours=12)),
    ]
    ents.contracts.void(owner, made.id, actor=STAFF, reason="superseded")
    clock.set(START + timedelta(days=20))
    ents.process_due()
    assert _due_contracts(ents, START + timedelta(days=400)) == []
