"""What each owner owes: charges as plan terms, drafts over the period's stretches,
finalized invoices (one per owner and period, numbered without gaps), payment and
overdue — on every store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    AddOn,
    AddOnCharge,
    ByContract,
    Entitlements,
    IllegalTransition,
    InvalidInput,
    InvoiceSettings,
    InvoiceStatus,
    Limit,
    LineKind,
    ManualClock,
    MemoryStore,
    Owner,
    Plan,
    Price,
    SeatCharge,
    SubscriptionStatus,
    Tier,
    TierMode,
    UsageCharge,
)
from entitlements.catalog import Catalog, dump_catalog, loads_catalog
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.invoice import contract_share, invoice_hash
from entitlements.domain.money import minor_unit, round_money

ACME = Owner("organization", "acme")
START = datetime(2026, 1, 31, 9, tzinfo=UTC)
RECURRING = {LineKind.PRICE, LineKind.CONTRACT, LineKind.SEATS, LineKind.ADDON}


def pro(currency: str = "EUR", amount: str = "30.00", **more) -> Plan:
    return Plan(
        "pro",
        "Pro",
        limits={
            "seats": Limit(5, kind="seats"),
            "api_calls": Limit(None, kind="metered", enforcement="soft"),
        },
        price=Price(amount, currency),
        status="active",
        charges=(
            SeatCharge("10.00", included=5),
            AddOnCharge("storage", "4.00"),
            UsageCharge("api_calls", (Tier(1000, "0"), Tier(None, "0.01"))),
        ),
        **more,
    )


BASIC = Plan(
    "basic",
    "Basic",
    limits={"seats": Limit(3, kind="seats"), "api_calls": Limit(None, kind="metered")},
    price=Price("12.00", "EUR"),
    status="active",
    charges=(SeatCharge("6.00", included=3),),
)


def app(store, clock, *plans: Plan, **settings) -> Entitlements:
    ents = Entitlements(store, clock=clock, invoicing=InvoiceSettings(**settings))
    for plan in plans or (pro(),):
        ents.plans.define(plan, actor="staff")
    return ents


@pytest.fixture(params=STORE_KINDS)
def kind(request):
    return request.param


# -- charges as plan terms ----------------------------------------------------------------


def test_charges_are_checked():
    with pytest.raises(InvalidInput):
        SeatCharge(1.5)  # a float
    with pytest.raises(InvalidInput):
        UsageCharge("api_calls", (Tier(10, "1"),))  # the last tier must be open
    with pytest.raises(InvalidInput):
        UsageCharge("api_calls", (Tier(10, "1"), Tier(5, "1"), Tier(None, "1")))
    with pytest.raises(InvalidInput):
        Plan("p", "P", charges=(SeatCharge("1"),))  # a free plan charges nothing
    with pytest.raises(InvalidInput):
        Plan("p", "P", price=Price("1", "EUR"), charges=(SeatCharge("1"), SeatCharge("2")))
    with pytest.raises(InvalidInput):
        Plan("p", "P", price=Price("1", "EUR"), charges=("seats",))


def test_charges_are_a_versioned_term_and_every_store_keeps_them(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock, pro(net_days=14))
    stored = ents.plans.get("pro")
    assert stored.charges == pro().charges
    assert stored.net_days == 14
    revised = ents.plans.revise("pro", actor="staff", charges=(SeatCharge("11.00"),))
    assert revised.version == 2
    assert ents.plans.get("pro", 1).charges == pro().charges
    assert ents.plans.get("pro").charges == (SeatCharge("11.00"),)


def test_catalogs_say_charges():
    text = dump_catalog(Catalog((pro(net_days=10),)))
    assert "[[plans.pro.charges]]" in text
    assert loads_catalog(text).plans[0] == pro(net_days=10)
    assert loads_catalog(dump_catalog(Catalog((pro(),)), "json"), "json").plans[0] == pro()
    bad = text.replace('unit_amount = "0.01"', "unit_amount = 0.01")
    with pytest.raises(InvalidInput, match="charges"):
        loads_catalog(bad)


# -- money ----------------------------------------------------------------------------------


def test_minor_units_come_from_iso_4217():
    assert (minor_unit("JPY"), minor_unit("EUR"), minor_unit("KWD"), minor_unit("BHD")) == (
        0,
        2,
        3,
        3,
    )
    assert round_money(Fraction(5, 2), "JPY") == Decimal("2")  # half to even
    assert round_money(Fraction(7, 2), "JPY") == Decimal("4")
    assert round_money(Fraction(10, 3), "KWD") == Decimal("3.333")
    with pytest.raises(InvalidInput):
        minor_unit("XAU")


@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [("JPY", "3000", Decimal("1500")), ("EUR", "29.99", Decimal("15.00")), ("KWD", "9.999", Decimal("5.000"))],
)  # fmt: skip
def test_each_currency_rounds_to_its_minor_unit(currency, amount, expected):
    clock = ManualClock(START)
    plan = Plan("p", "P", price=Price(amount, currency), status="active")
    ents = app(MemoryStore(), clock, plan)
    ents.subscriptions.subscribe(ACME, "p", actor="staff")
    # half of the first period (Jan 31 -> Feb 28: 28 days) on it, then canceled
    clock.advance(timedelta(days=14))
    ents.subscriptions.cancel(ACME, actor="staff")
    draft = ents.invoices.draft(ACME, period=START)
    assert draft is not None
    assert draft.currency == currency
    assert draft.total == expected
    assert draft.total.as_tuple().exponent == -minor_unit(currency)


# -- the properties, on every store ----------------------------------------------------------


def test_no_change_bills_the_full_charges(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff", seats=7)
    ents.subscriptions.add_addon(ACME, AddOn("storage", quantity=2), actor="staff")
    clock.advance(timedelta(days=3))
    draft = ents.invoices.draft(ACME)
    recurring = [x for x in draft.lines if x.kind in RECURRING]
    assert sum(x.exact for x in recurring) == Fraction(30) + 2 * 10 + 2 * 4
    assert draft.total == Decimal("58.00")


CHANGES = st.lists(
    st.tuples(
        st.integers(1, 27 * 24 * 3600),
        st.sampled_from(["seats", "plan", "addon", "noaddon", "notes"]),
        st.integers(1, 12),
    ),
    max_size=4,
)


def _integral(events, period_seconds: int) -> Fraction:
    """The price integrated over the period, from the test's own account of the terms."""
    plans = {"pro": (Fraction(30), 5, Fraction(10)), "basic": (Fraction(12), 3, Fraction(6))}
    state = {"plan": "pro", "seats": 5, "addon": 0}
    total, last = Fraction(0), 0
    for second, what, n in [*events, (period_seconds, "end", 0)]:
        flat, included, per_seat = plans[state["plan"]]
        rate = flat + max(0, state["seats"] - included) * per_seat
        if state["plan"] == "pro":
            rate += 4 * state["addon"]
        total += rate * Fraction(second - last, period_seconds)
        last = second
        if what == "seats":
            state["seats"] = n
        elif what == "plan":
            state["plan"] = "basic" if state["plan"] == "pro" else "pro"
        elif what == "addon":
            state["addon"] = n
        elif what == "noaddon":
            state["addon"] = 0
    return total


def _apply(ents, what: str, n: int) -> None:
    if what == "seats":
        ents.subscriptions.change_seats(ACME, n, actor="staff")
    elif what == "plan":
        current = ents.subscriptions.get(ACME).plan_key
        target = "basic" if current == "pro" else "pro"
        ents.subscriptions.change_plan(ACME, target, actor="staff", if_over_quota="allow")
    elif what == "addon":
        ents.subscriptions.add_addon(ACME, AddOn("storage", quantity=n), actor="staff")
    elif what == "noaddon":
        if ents.subscriptions.get(ACME).addons:
            ents.subscriptions.remove_addon(ACME, "storage", actor="staff")
    else:
        ents.subscriptions.amend(ACME, actor="staff", notes=f"note {n}")


# a fifth of the profile's examples: each one builds a store (a database on the servers)
@settings(
    max_examples=max(settings.default.max_examples // 5, 5),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(changes=CHANGES)
def test_mid_period_changes_sum_to_the_integral(make_store, kind, changes):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock, pro(), BASIC)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff", seats=5)
    period = ents.subscriptions.get(ACME).current_period
    seconds = int(period.length.total_seconds())
    applied = []
    for second in sorted({c[0] for c in changes}):
        _, what, n = next(c for c in changes if c[0] == second)
        clock.set(START + timedelta(seconds=second))
        _apply(ents, what, n)
        applied.append((second, what, n))
    clock.set(period.end)
    draft = ents.invoices.draft(ACME, period=period.start)
    recurring = [x for x in draft.lines if x.kind in RECURRING]
    assert sum(x.exact for x in recurring) == _integral(applied, seconds)
    assert draft.total == sum(x.amount for x in draft.lines)
    # finalizing at the period's end gives exactly the draft taken at that instant
    invoice = ents.invoices.finalize(ACME, actor="staff")
    assert invoice.lines == draft.lines
    assert invoice.total == draft.total
    assert invoice.period == period
    assert invoice.content_hash == invoice_hash(invoice)
    assert ents.invoices.finalize(ACME, actor="staff", period=period.start) == invoice
    assert ents.invoices.get(invoice.id) == invoice


def test_finalize_twice_gives_one_invoice_and_the_sequence_has_no_gaps(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    owners = [Owner("organization", f"o{i}") for i in range(4)]
    for owner in owners:
        ents.subscriptions.subscribe(owner, "pro", actor="staff")
    free = Owner("organization", "free")
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    ents.subscriptions.subscribe(free, "free", actor="staff")
    clock.advance(timedelta(days=29))
    numbers = []
    for owner in owners * 2:
        numbers.append(ents.invoices.finalize(owner, actor="staff").number)
    assert ents.invoices.finalize(free, actor="staff") is None  # nothing owed, no invoice
    assert numbers[:4] == [f"INV-2026-{n:06d}" for n in range(1, 5)]
    assert numbers[4:] == numbers[:4]
    assert [len(ents.invoices.list(o)) for o in owners] == [1, 1, 1, 1]
    with pytest.raises(InvalidInput):  # the current period has not ended
        ents.invoices.finalize(owners[0], actor="staff", period=START + timedelta(days=28))


def test_the_sweep_invoices_each_ended_period(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    clock.advance(timedelta(days=62))  # Feb 28, Mar 31 passed
    ents.process_due()
    ents.process_due()
    invoices = ents.invoices.list(ACME)
    assert [i.period.start.date().isoformat() for i in invoices] == ["2026-01-31", "2026-02-28"]
    assert [i.total for i in invoices] == [Decimal("30.00")] * 2
    assert [i.number for i in invoices] == ["INV-2026-000001", "INV-2026-000002"]


# -- examples -------------------------------------------------------------------------------


def test_jan_31_anchor_through_february_and_april():
    clock = ManualClock(datetime(2028, 1, 31, tzinfo=UTC))  # 2028: February has 29 days
    ents = app(MemoryStore(), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    starts = []
    for _ in range(4):
        draft = ents.invoices.draft(ACME)
        starts.append(draft.period.start.date().isoformat())
        assert [x.amount for x in draft.lines] == [Decimal("30.00")]  # no sliver line
        clock.set(draft.period.end)
    assert starts == ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30"]


def test_seats_changed_on_the_last_day_of_a_short_month_use_the_true_period_length():
    clock = ManualClock(START)
    ents = app(MemoryStore(), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff", seats=5)
    clock.set(datetime(2026, 2, 27, 9, tzinfo=UTC))  # one day before the Feb 28 renewal
    ents.subscriptions.change_seats(ACME, 6, actor="staff")
    seats = [x for x in ents.invoices.draft(ACME).lines if x.kind is LineKind.SEATS]
    assert seats[0].exact == Fraction(10, 28)  # one day of 28, not of 31 or 30
    assert seats[0].amount == Decimal("0.36")


def test_a_dst_change_inside_a_period_changes_nothing():
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 15, 0, 0, tzinfo=berlin)  # clocks go forward on Mar 29
    clock = ManualClock(start)
    ents = app(MemoryStore(), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff", seats=5)
    clock.set(datetime(2026, 3, 30, 0, 0, tzinfo=berlin))
    ents.subscriptions.change_seats(ACME, 6, actor="staff")
    draft = ents.invoices.draft(ACME)
    period = draft.period
    assert period.length == timedelta(days=31)  # UTC: no hour lost or gained
    seats = next(x for x in draft.lines if x.kind is LineKind.SEATS)
    # elapsed time, not wall-clock time: the day clocks went forward had 23 hours
    elapsed = datetime(2026, 3, 30, 0, 0, tzinfo=berlin).astimezone(UTC) - start.astimezone(UTC)
    assert elapsed == timedelta(days=15, hours=-1)
    assert seats.exact == 10 * (
        1
        - Fraction(elapsed / timedelta(microseconds=1))
        / Fraction(period.length / timedelta(microseconds=1))
    )


@pytest.mark.parametrize(
    ("mode", "used", "expected"),
    [
        (TierMode.GRADUATED, 0, Fraction(0)),
        (TierMode.GRADUATED, 1000, Fraction(5)),  # at the boundary: the flat fee only
        (TierMode.GRADUATED, 1001, Fraction(5) + Fraction(2, 100) + 1),
        (TierMode.GRADUATED, 5001, Fraction(5) + 4000 * Fraction(2, 100) + 1 + Fraction(1, 100)),
        (TierMode.VOLUME, 1000, Fraction(5)),
        (TierMode.VOLUME, 1001, 1001 * Fraction(2, 100) + 1),
        (TierMode.VOLUME, 5001, 5001 * Fraction(1, 100)),
    ],
)
def test_tiers_at_and_across_boundaries(mode, used, expected):
    tiers = (Tier(1000, "0", "5"), Tier(5000, "0.02", "1"), Tier(None, "0.01"))
    assert UsageCharge("api_calls", tiers, mode).cost(used) == expected


def test_usage_is_billed_from_the_periods_counter(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    ents.usage.consume(ACME, "api_calls", 1234)
    usage = [x for x in ents.invoices.draft(ACME).lines if x.kind is LineKind.USAGE]
    assert [(x.quantity, x.amount) for x in usage] == [(1234, Decimal("2.34"))]


def test_a_contract_amount_for_a_12_month_term_replaces_the_flat_price():
    assert contract_share("12 months", "month", 1) == Fraction(1, 12)
    assert contract_share("1 year", "year", 1) == Fraction(1)
    assert contract_share("until further notice", "month", 1) == Fraction(1)
    clock = ManualClock(START)
    enterprise = Plan("ent", "Enterprise", price=ByContract(), status="active")
    ents = app(MemoryStore(), clock, enterprise)
    ents.subscriptions.subscribe(ACME, "ent", actor="staff")
    with ents.runtime.store.unit_of_work(None) as uow:  # as a conversion from a contract stores it
        uow.effective_at = START
        sub = uow.subscriptions.current(ACME)

        link = ContractLink("c1", Decimal("12000.00"), "EUR", "12 months")
        uow.subscriptions.update(attrs.evolve(sub, contract=link))
        uow.commit()
    draft = ents.invoices.draft(ACME)
    assert [(x.kind, x.amount) for x in draft.lines] == [(LineKind.CONTRACT, Decimal("1000.00"))]


def test_a_pause_inside_a_period_is_not_billed(make_store, kind):
    clock = ManualClock(START)  # the period runs Jan 31 to Feb 28: 28 days
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff", seats=7)
    ents.subscriptions.pause(
        ACME, at=START + timedelta(days=7), resume_at=START + timedelta(days=14), actor="staff"
    )
    clock.advance(timedelta(days=20))  # paused and unpaused by time alone, no sweep
    draft = ents.invoices.draft(ACME)
    recurring = [x for x in draft.lines if x.kind in RECURRING]
    assert sum(x.exact for x in recurring) == (Fraction(30) + 2 * 10) * Fraction(21, 28)
    assert {(x.start, x.end) for x in recurring} == {
        (START, START + timedelta(days=7)),
        (START + timedelta(days=14), draft.period.end),
    }
    clock.set(draft.period.end)
    ents.process_due()
    (invoice,) = ents.invoices.list(ACME)
    assert invoice.total == Decimal("37.50")


def test_a_restarting_pause_that_would_leave_billed_days_uninvoiced_is_refused(make_store, kind):
    clock = ManualClock(START)  # the period runs Jan 31 to Feb 28
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    clock.advance(timedelta(days=9))
    before = ents.subscriptions.get(ACME)
    with pytest.raises(InvalidInput, match="uninvoiced") as refused:
        ents.subscriptions.pause(ACME, actor="staff", restart_period=True)
    assert refused.value.field == "restart_period"
    with pytest.raises(InvalidInput, match="uninvoiced"):  # scheduled mid-period too
        ents.subscriptions.pause(
            ACME, actor="staff", at=START + timedelta(days=12), restart_period=True
        )
    assert ents.subscriptions.get(ACME) == before  # nothing stored
    period_end = before.current_period.end
    ents.subscriptions.pause(ACME, actor="staff", at=period_end, restart_period=True)
    clock.set(period_end + timedelta(days=3))
    ents.process_due()
    ents.subscriptions.unpause(ACME, actor="staff")
    assert ents.subscriptions.get(ACME).current_period.start == clock.now()
    (invoice,) = ents.invoices.list(ACME)  # the whole first period, nothing lost
    assert invoice.period.start == START
    assert invoice.total == Decimal("30.00")


# -- paid, void, credit, overdue -------------------------------------------------------------


def _overdue_setup(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock, pro(net_days=10), staff_managed=True)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    clock.advance(timedelta(days=28))
    invoice = ents.invoices.finalize(ACME, actor="staff")
    return ents, clock, invoice


def test_unpaid_at_due_at_is_past_due_at_that_instant_warm_and_cold(make_store, kind):
    ents, clock, invoice = _overdue_setup(make_store, kind)
    assert invoice.due_at == clock.now() + timedelta(days=10)
    assert ents.snapshot(ACME).status is SubscriptionStatus.ACTIVE  # warm from here on
    clock.set(invoice.due_at - timedelta(microseconds=1))
    assert ents.snapshot(ACME).status is SubscriptionStatus.ACTIVE
    clock.set(invoice.due_at)
    assert ents.snapshot(ACME).status is SubscriptionStatus.PAST_DUE  # no sweep ran
    cold = Entitlements(ents.store, clock=clock)
    assert cold.snapshot(ACME).status is SubscriptionStatus.PAST_DUE
    assert cold.subscriptions.get(ACME).past_due_since == invoice.due_at
    past_due = cold.subscriptions.search(statuses=["past_due"])
    assert [s.owner for s in past_due] == [ACME]  # the console's past-due queue


def test_paying_makes_it_active_again(make_store, kind):
    ents, clock, invoice = _overdue_setup(make_store, kind)
    clock.set(invoice.due_at + timedelta(days=2))
    paid = ents.invoices.mark_paid(invoice.id, actor="staff", reference="bank-42")
    assert paid.status is InvoiceStatus.PAID
    assert paid.paid_at == clock.now()
    assert ents.snapshot(ACME).status is SubscriptionStatus.ACTIVE
    assert ents.subscriptions.get(ACME).payment_due_at is None
    with pytest.raises(IllegalTransition):
        ents.invoices.void(invoice.id, actor="staff", reason="late")
    note = ents.invoices.credit(invoice.id, amount="5.00", actor="staff", reason="goodwill")
    assert note.total == Decimal("-5.00")
    assert note.credits == invoice.id
    assert note.number == "CN-2026-000001"
    with pytest.raises(InvalidInput):
        ents.invoices.credit(invoice.id, amount="25.01", actor="staff", reason="too much")
    actions = [e.action for e in ents.audit.for_owner(ACME)]
    assert {"invoice.finalize", "invoice.mark_paid", "invoice.credit"} <= set(actions)


def test_paying_while_suspended_resumes_to_active(make_store, kind):
    ents, clock, invoice = _overdue_setup(make_store, kind)
    clock.set(invoice.due_at + timedelta(days=2))
    ents.subscriptions.suspend(ACME, actor="staff", reason="fraud check")
    found = ents.subscriptions.get(ACME)
    assert found.suspended_from is SubscriptionStatus.PAST_DUE
    ents.invoices.mark_paid(invoice.id, actor="staff", reference="bank-42")
    found = ents.subscriptions.get(ACME)
    assert found.status is SubscriptionStatus.SUSPENDED
    assert found.suspended_from is SubscriptionStatus.ACTIVE
    assert found.past_due_since is None
    assert found.payment_due_at is None
    actions = [e.action for e in ents.audit.for_owner(ACME)]
    assert "subscription.invoice_paid" in actions
    clock.advance(timedelta(days=1))
    ents.subscriptions.resume(ACME, actor="staff")
    ents.process_due()
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.ACTIVE
    assert ents.snapshot(ACME).status is SubscriptionStatus.ACTIVE


def test_a_due_date_passed_while_paused_makes_it_past_due_when_unpaused(make_store, kind):
    ents, clock, invoice = _overdue_setup(make_store, kind)
    ents.subscriptions.pause(ACME, actor="staff")
    clock.set(invoice.due_at + timedelta(days=5))
    ents.process_due()
    assert ents.snapshot(ACME).status is SubscriptionStatus.PAUSED
    back = clock.now()
    ents.subscriptions.unpause(ACME, actor="staff")
    snapshot = ents.snapshot(ACME)
    assert snapshot.status is SubscriptionStatus.PAST_DUE
    assert snapshot.valid_until is None or snapshot.valid_until > back
    ents.process_due()
    found = ents.subscriptions.get(ACME)
    assert found.status is SubscriptionStatus.PAST_DUE
    assert found.past_due_since == back  # not backdated to the due date
    assert found.updated_at == back


def test_a_pause_that_ends_while_suspended_ends_at_the_resumption(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    ents.subscriptions.pause(
        ACME, actor="staff", resume_at=START + timedelta(days=5), restart_period=True
    )
    ents.subscriptions.suspend(ACME, actor="staff", reason="fraud check")
    clock.set(START + timedelta(days=20))
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.SUSPENDED
    ents.subscriptions.resume(ACME, actor="staff")
    resumed = clock.now()
    assert ents.snapshot(ACME).status is SubscriptionStatus.ACTIVE
    ents.process_due()
    found = ents.subscriptions.get(ACME)
    assert found.status is SubscriptionStatus.ACTIVE
    assert found.updated_at == resumed
    assert found.current_period.start == resumed  # the suspended days restart nothing


def test_void_before_payment_clears_the_due_date(make_store, kind):
    ents, clock, invoice = _overdue_setup(make_store, kind)
    voided = ents.invoices.void(invoice.id, actor="staff", reason="billed twice")
    assert voided.status is InvoiceStatus.VOID
    clock.set(invoice.due_at + timedelta(days=1))
    assert ents.snapshot(ACME).status is SubscriptionStatus.ACTIVE
    with pytest.raises(InvalidInput):
        ents.invoices.void(invoice.id, actor="staff", reason="")


def test_finalizing_is_heard_by_listeners():
    heard = []
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock, listeners=[heard.append])
    ents.plans.define(pro(), actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    clock.advance(timedelta(days=28))
    invoice = ents.invoices.finalize(ACME, actor="staff")
    event = next(e for e in heard if e.action == "invoice.finalize")
    assert event.target == f"invoice:{invoice.id}"
    assert event.after["number"] == invoice.number


def test_preview_change_reports_the_delta_and_the_draft_after_equals_it(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock, pro(), BASIC)
    ents.subscriptions.subscribe(ACME, "basic", actor="staff")
    clock.advance(timedelta(days=7))
    before = ents.invoices.draft(ACME).total
    preview = ents.subscriptions.preview_change(ACME, "pro")
    ents.subscriptions.change_plan(ACME, "pro", actor="staff")
    after = ents.invoices.draft(ACME).total
    assert preview.invoice_delta == after - before
    assert preview.invoice_delta == Decimal("13.50")  # 3/4 of (30 - 12)


# -- the command line ------------------------------------------------------------------------

CLI_CATALOG = """
[plans.pro]
name = "Pro"
status = "active"
limits = { seats = { value = 5, kind = "seats" } }
price = { amount = "30.00", currency = "EUR" }
charges = [{ seats = { unit_amount = "10.00", included = 5 } }]
"""


def test_the_command_line_drafts_finalizes_and_settles(tmp_path, monkeypatch, capsys):
    import json

    from entitlements.cli.main import main

    (tmp_path / "plans.toml").write_text(CLI_CATALOG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENTITLEMENTS_DATABASE_URL", raising=False)

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--actor", "ann", *args])
        return code, capsys.readouterr().out

    assert run("db", "upgrade")[0] == 0
    assert run("plans", "load", "plans.toml")[0] == 0
    assert run("subs", "trial", "organization:acme", "pro", "--now", "2025-01-01")[0] == 0
    assert run("subs", "convert", "organization:acme", "--now", "2025-01-05")[0] == 0
    assert run("subs", "seats", "organization:acme", "8", "--now", "2025-01-10")[0] == 0
    code, out = run("invoices", "draft", "organization:acme", "--now", "2025-01-20")
    assert code == 0
    assert "total 55.16 EUR" in out
    code, out = run("invoices", "finalize", "organization:acme", "--now", "2025-02-10")
    assert "INV-2025-000001" in out
    code, out = run("invoices", "list", "organization:acme", "--json")
    (listed,) = json.loads(out)
    assert listed["total"] == "55.16"
    code, out = run(
        "invoices", "mark-paid", listed["id"], "--reference", "B1", "--now", "2025-02-11"
    )
    assert code == 0
    assert ": paid" in out
    assert run("invoices", "void", listed["id"], "--reason", "x", "--now", "2025-02-11")[0] == 1
    code, out = run("invoices", "show", listed["id"])
    assert listed["content_hash"] in out


# -- through a payment provider ----------------------------------------------------------------


def test_a_provider_that_takes_invoices_gets_each_finalized_invoice_once(make_store, kind):
    from entitlements.testing.fakes import FakePaymentProvider

    class Collecting(FakePaymentProvider):
        def __init__(self, clock):
            super().__init__(clock)
            self.invoices: list[tuple[str, str]] = []

        def send_invoice(self, invoice, *, idempotency_key):
            if self.unavailable:
                raise ConnectionError("provider down")
            self.invoices.append((invoice.number, idempotency_key))
            return {"provider_invoice": f"in_{invoice.number}"}

    clock = ManualClock(START)
    provider = Collecting(clock)
    ents = Entitlements(make_store(kind), clock=clock, payment_provider=provider)
    ents.plans.define(pro(), actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    clock.advance(timedelta(days=28))
    provider.unavailable = True
    invoice = ents.invoices.finalize(ACME, actor="staff")
    assert provider.invoices == []
    assert [c.kind.value for c in ents.billing.state(ACME).pending] == ["send_invoice"]
    provider.unavailable = False
    clock.advance(timedelta(hours=1))
    ents.process_due()
    ents.process_due()
    assert [number for number, _ in provider.invoices] == [invoice.number]
    assert not ents.billing.state(ACME).pending_at_provider


def test_a_period_renewed_by_a_write_is_invoiced_once_as_by_the_sweep(make_store, kind):
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    ents.subscriptions.subscribe(ACME, "pro", actor="staff", seats=5)
    clock.advance(timedelta(days=30))  # the Jan 31 period ended on Feb 28; no sweep ran
    ents.subscriptions.change_seats(ACME, 6, actor="staff")  # this write stores the renewal
    (invoice,) = ents.invoices.list(ACME)
    assert invoice.period.start == START
    assert invoice.total == Decimal("30.00")
    ents.process_due()
    assert [i.id for i in ents.invoices.list(ACME)] == [invoice.id]


# -- many owners at once ------------------------------------------------------------------

OWNERS = [Owner("organization", f"group-{i}") for i in range(3)]
GROUP_CHANGES = st.lists(
    st.tuples(
        st.integers(1, 27 * 24 * 3600),
        st.sampled_from(OWNERS),
        st.sampled_from(["seats", "plan", "addon", "noaddon", "notes"]),
        st.integers(1, 12),
    ),
    max_size=6,
)


def _group_app(store, clock) -> Entitlements:
    """Ids counted, so that two stores given the same calls hold the same subscriptions."""
    counted = itertools.count(1)
    ents = Entitlements(store, clock=clock, ids=lambda: f"{next(counted):032x}")
    for plan in (pro(), BASIC):
        ents.plans.define(plan, actor="staff")
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    for owner in OWNERS:
        ents.subscriptions.subscribe(owner, "pro", actor="staff", seats=5)
    ents.subscriptions.subscribe(Owner("organization", "free"), "free", actor="staff")
    return ents


def _change(ents, owner: Owner, what: str, n: int) -> None:
    if what == "seats":
        ents.subscriptions.change_seats(owner, n, actor="staff")
    elif what == "plan":
        target = "basic" if ents.subscriptions.get(owner).plan_key == "pro" else "pro"
        ents.subscriptions.change_plan(owner, target, actor="staff", if_over_quota="allow")
    elif what == "addon" and ents.subscriptions.get(owner).plan_key == "pro":
        ents.subscriptions.add_addon(owner, AddOn("storage", quantity=n), actor="staff")
    elif what == "noaddon" and ents.subscriptions.get(owner).addons:
        ents.subscriptions.remove_addon(owner, "storage", actor="staff")
    else:
        ents.subscriptions.amend(owner, actor="staff", notes=f"note {n}")


def _issued(invoice):
    return None if invoice is None else attrs.evolve(invoice, id="")


@settings(
    max_examples=max(settings.default.max_examples // 5, 5),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(changes=GROUP_CHANGES)
def test_finalizing_many_gives_what_finalizing_each_gives(make_store, kind, changes):
    """The same history on the store under test (finalized in one call) and on a memory
    store (finalized owner by owner): the same invoices, numbered alike."""
    clocks = [ManualClock(START), ManualClock(START)]
    grouped, each = _group_app(make_store(kind), clocks[0]), _group_app(MemoryStore(), clocks[1])
    for second, owner, what, n in sorted(changes, key=lambda c: c[0]):
        for clock, ents in zip(clocks, (grouped, each), strict=True):
            clock.set(START + timedelta(seconds=second))
            _change(ents, owner, what, n)
    period = grouped.subscriptions.get(OWNERS[0]).current_period
    for clock in clocks:
        clock.set(period.end + timedelta(hours=1))
    asked = [*OWNERS, Owner("organization", "free"), Owner("organization", "none"), OWNERS[1]]
    made = grouped.invoices.finalize_many(asked, actor="staff")
    expected = [each.invoices.finalize(owner, actor="staff") for owner in asked]
    assert [_issued(i) for i in made] == [_issued(i) for i in expected]
    assert [i.number for i in made[:3]] == [f"INV-2026-{n:06d}" for n in (1, 2, 3)]
    assert made[3:5] == [None, None]
    assert made[5] == made[1]
    for owner, invoice in zip(OWNERS, made, strict=False):
        assert invoice.lines == grouped.invoices.draft(owner, period=period.start).lines
        assert invoice.content_hash == invoice_hash(invoice)
    # again, or owner by owner: the same invoices, no more numbers taken
    assert grouped.invoices.finalize_many(asked, actor="staff") == made
    assert [grouped.invoices.finalize(o, actor="staff") for o in asked] == made
