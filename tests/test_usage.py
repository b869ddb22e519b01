"""Usage and limits: seats, gauges, metered counters, enforcement, reservations, add-ons,
previews and over-quota policies (memory store; the SQL stores run the contract, and
a bad commit amount runs on every store)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    AccessPolicy,
    AddOn,
    Conflict,
    Entitlements,
    Feature,
    IdempotencyKeyReused,
    InvalidInput,
    Limit,
    LimitExceeded,
    LimitKind,
    ManualClock,
    MemoryStore,
    NotFound,
    Owner,
    Plan,
    Reason,
    Source,
)
from entitlements.domain.usage import OverQuota, OverQuotaPolicy, ReservationStatus
from entitlements.errors import OverQuotaRefused, UsageDenied

ACME = Owner("organization", "acme")
START = datetime(2026, 1, 31, 12, tzinfo=UTC)
PRO = Plan(
    "pro",
    "Pro",
    limits={
        "seats": Limit(3, kind=LimitKind.SEATS),
        "projects": Limit(5),
        "storage": Limit(1000, "bytes", enforcement="soft"),
        "api_calls": Limit(100, "calls", kind=LimitKind.METERED),
        "doc_units": Limit(50, "document units", kind=LimitKind.METERED, enforcement="soft"),
        "exports": Limit.unlimited(kind=LimitKind.METERED),
    },
    features={"reports": True},
    status="active",
)
LITE = Plan(
    "lite",
    "Lite",
    limits={
        "seats": Limit(1, kind=LimitKind.SEATS),
        "projects": Limit(2),
        "api_calls": Limit(10, kind="metered"),
    },
    status="active",
)


@pytest.fixture
def app():
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(PRO, actor="staff")
    ents.plans.define(LITE, actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    return ents, clock


# -- metered ---------------------------------------------------------------------------


def test_check_has_no_side_effect_and_consume_records(app):
    ents, _ = app
    decision = ents.usage.check(ACME, "api_calls", 10)
    assert (decision.allowed, decision.limit, decision.used, decision.remaining) == (
        True,
        100,
        0,
        100,
    )
    assert ents.usage.check(ACME, "api_calls", 10).used == 0
    consumed = ents.usage.consume(ACME, "api_calls", 10)
    assert (consumed.used, consumed.remaining) == (10, 90)
    assert ents.usage.total(ACME, "api_calls") == 10
    assert [r.amount for r in ents.usage.records(ACME, "api_calls")] == [10]


def test_hard_limit_denies_with_the_numbers_and_records_nothing(app):
    ents, _ = app
    ents.usage.consume(ACME, "api_calls", 95)
    with pytest.raises(LimitExceeded) as caught:
        ents.usage.consume(ACME, "api_calls", 6)
    err = caught.value
    assert (err.limit_name, err.limit, err.used, err.requested) == ("api_calls", 100, 95, 6)
    assert ents.usage.total(ACME, "api_calls") == 95
    assert not ents.usage.check(ACME, "api_calls", 6).allowed
    assert ents.usage.consume(ACME, "api_calls", 5).remaining == 0


def test_soft_limit_allows_reports_and_audits(app):
    ents, _ = app
    heard = []
    ents.runtime.listeners.append(lambda e: heard.append(e.action))
    ents.usage.consume(ACME, "doc_units", 45)
    over = ents.usage.consume(ACME, "doc_units", 10)
    assert over.allowed
    assert over.over_limit
    assert over.used == 55
    assert heard == ["usage.over_limit"]
    assert ents.audit.for_owner(ACME)[-1].after["used"] == 55


def test_unlimited_is_always_allowed(app):
    ents, _ = app
    decision = ents.usage.consume(ACME, "exports", 10**9)
    assert decision.allowed
    assert decision.limit is None
    assert decision.remaining is None


def test_the_same_key_counts_once(app):
    ents, _ = app
    first = ents.usage.consume(ACME, "api_calls", 7, key="req-1")
    again = ents.usage.consume(ACME, "api_calls", 7, key="req-1")
    assert not first.duplicate
    assert again.duplicate
    assert ents.usage.total(ACME, "api_calls") == 7


def test_a_refused_key_can_be_retried(app):
    ents, _ = app
    ents.usage.consume(ACME, "api_calls", 100)
    with pytest.raises(LimitExceeded):
        ents.usage.consume(ACME, "api_calls", 1, key="req-9")
    assert ents.usage.records(ACME, "api_calls")[-1].key is None


@pytest.mark.parametrize("amount", [0, -1, 1.5, math.nan, Decimal("2"), True, "3", 10**13])
def test_bad_amounts_are_refused_clearly(app, amount):
    ents, _ = app
    with pytest.raises(InvalidInput) as caught:
        ents.usage.consume(ACME, "api_calls", amount)
    assert caught.value.field == "amount"
    with pytest.raises(InvalidInput):
        ents.usage.check(ACME, "api_calls", amount)


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("amount", {"amount": True}),
        ("amount", {"amount": 10**13}),
        ("key", {"key": ""}),
        ("key", {"key": "line\nbreak"}),
        ("metric", {"metric": "Not A Metric"}),
        ("actor", {"actor": "membr:bob"}),
        ("owner", {"owner": ("organization", "acme")}),
    ],
)
def test_bad_input_is_refused_on_the_warm_path_too(app, field, arguments):
    """Once a metric has been consumed the in-process store counts the next call in one
    step; its shortcut checks must refuse exactly what the full checks refuse."""
    ents, _ = app
    ents.usage.consume(ACME, "api_calls", 1, key="warm-1")
    ents.usage.consume(ACME, "api_calls", 1, key="warm-2")
    call = {"owner": ACME, "metric": "api_calls", "amount": 1, "key": "k", **arguments}
    with pytest.raises(InvalidInput) as caught:
        ents.usage.consume(call.pop("owner"), call.pop("metric"), call.pop("amount"), **call)
    assert caught.value.field == field
    assert ents.usage.total(ACME, "api_calls") == 2


def test_unknown_metrics_and_read_only_owners_consume_nothing(app):
    ents, _ = app
    with pytest.raises(UsageDenied) as caught:
        ents.usage.consume(ACME, "rockets", 1)
    assert caught.value.decision.reason is Reason.UNKNOWN
    ents.subscriptions.suspend(ACME, actor="staff")
    with pytest.raises(UsageDenied) as caught:
        ents.usage.consume(ACME, "api_calls", 1)
    assert caught.value.decision.reason is Reason.READ_ONLY
    assert not isinstance(caught.value, LimitExceeded)


def test_metered_usage_starts_again_each_period_and_keeps_history(app):
    ents, clock = app
    ents.usage.consume(ACME, "api_calls", 60)
    clock.set(datetime(2026, 2, 28, 12, tzinfo=UTC))  # Jan 31 anchor: the next period starts Feb 28
    ents.process_due()
    assert ents.usage.check(ACME, "api_calls", 100).allowed
    ents.usage.consume(ACME, "api_calls", 30)
    history = ents.usage.history(ACME, "api_calls")
    assert [(c.period_start.date().isoformat(), c.used) for c in history] == [
        ("2026-01-31", 60),
        ("2026-02-28", 30),
    ]


# -- gauges ------------------------------------------------------------------------------


def test_gauges_move_up_and_down(app):
    ents, _ = app
    for _ in range(5):
        ents.usage.consume(ACME, "projects")
    with pytest.raises(LimitExceeded):
        ents.usage.consume(ACME, "projects")
    ents.usage.decrease(ACME, "projects", 2)
    assert ents.usage.check(ACME, "projects").used == 3
    with pytest.raises(InvalidInput):
        ents.usage.decrease(ACME, "projects", 4)


def test_setting_a_gauge_records_reality_and_reports_overage(app):
    ents, _ = app
    assert not ents.usage.set_gauge(ACME, "storage", 900).over_limit
    over = ents.usage.set_gauge(ACME, "storage", 1200)
    assert over.over_limit
    assert ents.usage.total(ACME, "storage") == 1200
    assert ents.audit.for_owner(ACME)[-1].action == "usage.over_limit"
    with pytest.raises(InvalidInput, match="metered"):
        ents.usage.set_gauge(ACME, "api_calls", 3)


# -- reservations ------------------------------------------------------------------------


def test_reservations_hold_units_until_committed_or_released(app):
    ents, _ = app
    held = ents.usage.reserve(ACME, "api_calls", 60, key="job-1")
    assert ents.usage.reserve(ACME, "api_calls", 60, key="job-1") == held
    assert ents.usage.check(ACME, "api_calls", 50).allowed is False
    with pytest.raises(LimitExceeded):
        ents.usage.reserve(ACME, "api_calls", 50)
    record = ents.usage.commit(ACME, held.id, 45)
    assert record.amount == 45
    assert ents.usage.check(ACME, "api_calls", 55).allowed
    with pytest.raises(InvalidInput, match="committed"):
        ents.usage.release(ACME, held.id)
    other = ents.usage.reserve(ACME, "api_calls", 10)
    released = ents.usage.release(ACME, other.id)
    assert released.status is ReservationStatus.RELEASED
    assert ents.usage.counter(ACME, "api_calls").reserved == 0
    with pytest.raises(NotFound):
        ents.usage.commit(ACME, "nope")


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_bad_commit_amount_is_refused_and_the_reservation_stays_held(kind, make_store):
    ents = Entitlements(make_store(kind), clock=ManualClock(START))
    ents.plans.define(PRO, actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    held = ents.usage.reserve(ACME, "api_calls", 10)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidInput, match="amount"):
            ents.usage.commit(ACME, held.id, bad)
    with pytest.raises(InvalidInput, match="only 10 units were reserved"):
        ents.usage.commit(ACME, held.id, 11)
    assert ents.usage.counter(ACME, "api_calls").reserved == 10
    assert ents.usage.commit(ACME, held.id, 0).amount == 0
    assert ents.usage.counter(ACME, "api_calls").reserved == 0
    ents.close()


def test_uncommitted_reservations_expire_through_the_sweep(app):
    ents, clock = app
    held = ents.usage.reserve(ACME, "api_calls", 80, ttl=timedelta(minutes=30))
    clock.advance(minutes=31)
    report = ents.process_due()
    assert [r.id for r in report.expired_reservations] == [held.id]
    assert report.expired_reservations[0].status is ReservationStatus.EXPIRED
    assert ents.usage.check(ACME, "api_calls", 100).allowed
    assert ents.process_due().expired_reservations == ()
    with pytest.raises(InvalidInput, match="expired"):
        ents.usage.commit(ACME, held.id)


def test_reservation_ttl_is_validated(app):
    ents, _ = app
    with pytest.raises(InvalidInput):
        ents.usage.reserve(ACME, "api_calls", 1, ttl=timedelta(days=90))


# -- seats -------------------------------------------------------------------------------


def test_seats_are_assigned_up_to_the_purchased_count(app):
    ents, _ = app
    for member in ("ann", "bob", "cy"):
        ents.seats.assign(ACME, member, actor="staff")
    with pytest.raises(LimitExceeded) as caught:
        ents.seats.assign(ACME, "dee", actor="staff")
    assert (caught.value.limit, caught.value.used) == (3, 3)
    with pytest.raises(Conflict):
        ents.seats.assign(ACME, "ann", actor="staff")
    assert [a.member for a in ents.seats.list(ACME)] == ["ann", "bob", "cy"]
    ents.seats.unassign(ACME, "bob", actor="staff")
    ents.seats.assign(ACME, "dee", actor="staff")
    with pytest.raises(NotFound):
        ents.seats.unassign(ACME, "zed", actor="staff")
    with pytest.raises(InvalidInput, match="seats"):
        ents.usage.consume(ACME, "seats")


def test_reducing_seats_below_those_assigned_is_refused_or_reported(app):
    ents, _ = app
    ents.subscriptions.change_seats(ACME, 5, actor="staff")
    for member in ("ann", "bob", "cy", "dee"):
        ents.seats.assign(ACME, member, actor="staff")
    with pytest.raises(OverQuotaRefused) as caught:
        ents.subscriptions.change_seats(ACME, 2, actor="staff")
    assert caught.value.over_quota == (OverQuota("seats", 2, 4),)
    assert ents.subscriptions.get(ACME).seats == 5
    assert ents.audit.for_owner(ACME)[-1].action == "subscription.over_quota_refused"
    change = ents.subscriptions.change_seats(
        ACME, 2, actor="staff", if_over_quota=OverQuotaPolicy.ALLOW
    )
    assert change.subscription.seats == 2
    assert change.over_quota == (OverQuota("seats", 2, 4),)
    actions = [e.action for e in ents.audit.for_owner(ACME)[-2:]]
    assert actions == ["subscription.over_quota", "subscription.change_seats"]


# -- add-ons ------------------------------------------------------------------------------


def test_add_ons_raise_limits_and_show_in_explain(app):
    ents, _ = app
    ents.subscriptions.add_addon(ACME, AddOn("extra-seats", limits={"seats": 5}), actor="staff")
    ents.subscriptions.add_addon(ACME, AddOn("sso", features={"sso": Feature()}), actor="staff")
    assert ents.limit(ACME, "seats") == 8
    seats = ents.explain_limit(ACME, "seats")
    assert (seats.source, seats.reason) == (Source.ADDON, Reason.ADDON)
    assert "extra-seats x1" in seats.detail
    assert ents.explain(ACME, "sso").source is Source.ADDON
    ents.subscriptions.add_addon(
        ACME, AddOn("extra-seats", limits={"seats": 5}, quantity=2), actor="staff"
    )
    assert ents.limit(ACME, "seats") == 13
    for member in [f"m{i}" for i in range(10)]:
        ents.seats.assign(ACME, member, actor="staff")
    with pytest.raises(OverQuotaRefused):
        ents.subscriptions.remove_addon(ACME, "extra-seats", actor="staff")
    with pytest.raises(InvalidInput):
        ents.subscriptions.remove_addon(ACME, "nothing", actor="staff")


# -- previews and downgrades -------------------------------------------------------------


def test_preview_shows_the_diff_and_changes_nothing(app):
    ents, _ = app
    ents.usage.consume(ACME, "projects", 4)
    ents.usage.consume(ACME, "api_calls", 50)
    before = ents.subscriptions.get(ACME)
    preview = ents.subscriptions.preview_change(ACME, "lite")
    assert ents.subscriptions.get(ACME) == before
    assert preview.from_plan == ("pro", 1)
    assert preview.to_plan == ("lite", 1)
    assert [f.key for f in preview.features_lost] == ["reports"]
    lowered = {c.name: (c.before, c.after) for c in preview.limits_lowered}
    assert lowered["projects"] == (5, 2)
    assert lowered["api_calls"] == (100, 10)
    assert "storage" in lowered
    assert preview.over_quota == (OverQuota("api_calls", 10, 50), OverQuota("projects", 2, 4))
    up = ents.subscriptions.preview_change(ACME, "pro")
    assert up.limits_raised == ()
    assert up.features_gained == ()


def test_a_downgrade_over_quota_is_refused_or_applied_and_both_are_audited(app):
    ents, _ = app
    ents.usage.consume(ACME, "projects", 4)
    with pytest.raises(OverQuotaRefused) as caught:
        ents.subscriptions.change_plan(ACME, "lite", actor="staff")
    assert caught.value.over_quota == (OverQuota("projects", 2, 4),)
    assert ents.subscriptions.get(ACME).plan_key == "pro"
    refused = ents.audit.for_owner(ACME)[-1]
    assert refused.action == "subscription.over_quota_refused"
    assert refused.after["over_quota"] == [{"metric": "projects", "limit": 2, "used": 4}]
    change = ents.subscriptions.change_plan(ACME, "lite", actor="staff", if_over_quota="allow")
    assert change.subscription.plan_key == "lite"
    assert change.over_quota == (OverQuota("projects", 2, 4),)
    assert ents.audit.for_owner(ACME)[-2].action == "subscription.over_quota"
    assert not ents.usage.check(ACME, "projects").allowed


def test_an_upgrade_reports_nothing(app):
    ents, _ = app
    ents.subscriptions.change_plan(ACME, "lite", actor="staff")
    assert ents.subscriptions.change_plan(ACME, "pro", actor="staff").over_quota == ()


# -- the warm path -----------------------------------------------------------------------


def test_a_warm_usage_check_does_no_io(app, monkeypatch):
    ents, _ = app
    ents.usage.consume(ACME, "api_calls", 3)
    assert ents.usage.check(ACME, "api_calls").used == 3

    def forbidden(*args, **kwargs):
        raise AssertionError("the warm usage check touched storage")

    monkeypatch.setattr(ents.store, "unit_of_work", forbidden)
    assert ents.usage.check(ACME, "api_calls", 97).allowed
    assert not ents.usage.check(ACME, "api_calls", 98).allowed


def test_usage_writes_refresh_the_warm_counter(app):
    ents, _ = app
    assert ents.usage.check(ACME, "api_calls").used == 0
    ents.usage.consume(ACME, "api_calls", 9)
    assert ents.usage.check(ACME, "api_calls").used == 9


def test_owners_on_the_fallback_plan_meter_by_calendar_month():
    clock = ManualClock(datetime(2026, 3, 15, tzinfo=UTC))
    ents = Entitlements(MemoryStore(), clock=clock, policy=AccessPolicy(fallback_plan="lite"))
    ents.plans.define(LITE, actor="staff")
    ents.usage.consume(ACME, "api_calls", 10)
    with pytest.raises(LimitExceeded):
        ents.usage.consume(ACME, "api_calls", 1)
    assert ents.usage.counter(ACME, "api_calls").period_start == datetime(2026, 3, 1, tzinfo=UTC)
    clock.set(datetime(2026, 4, 1, tzinfo=UTC))
    ents.process_due()
    assert ents.usage.consume(ACME, "api_calls", 1).used == 1


# -- properties --------------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["consume", "reserve", "commit", "release", "advance"]),
        st.integers(1, 40),
        st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "k4"])),
    ),
    max_size=30,
)


@given(operations)
def test_hard_limits_hold_and_totals_equal_their_records(ops):
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(PRO, actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    held: list[str] = []
    keys_counted: dict[str, int] = {}
    for op, amount, key in ops:
        try:
            if op == "consume":
                decision = ents.usage.consume(ACME, "api_calls", amount, key=key)
                if key is not None and not decision.duplicate:
                    keys_counted[key] = amount
            elif op == "reserve":
                held.append(ents.usage.reserve(ACME, "api_calls", amount).id)
            elif op == "commit" and held:
                ents.usage.commit(ACME, held.pop(0), min(amount, 1))
            elif op == "release" and held:
                ents.usage.release(ACME, held.pop())
            elif op == "advance":
                clock.advance(days=amount)
                ents.process_due()
        except (LimitExceeded, InvalidInput, IdempotencyKeyReused):
            pass  # refused (over the limit, the reservation expired, a key reused differently)
        for counter in ents.usage.history(ACME, "api_calls"):
            assert counter.used + counter.reserved <= 100
            records = ents.usage.records(ACME, "api_calls", counter.period_start)
            assert counter.used == sum(r.amount for r in records)
            assert len({r.key for r in records if r.key}) == len([r for r in records if r.key])
