"""The mutations a repeat would apply twice take an idempotency key (issue 13): issuing a
contract, opening a checkout, lowering a gauge. A repeat after a lost acknowledgement
gets the first result back and changes nothing more; the key reused for another request
is refused; the keys are forgotten with the usage keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from conftest import STORE_KINDS, server_url
from entitlements import (
    Busy,
    Entitlements,
    IdempotencyKeyReused,
    InvalidInput,
    Limit,
    ManualClock,
    Owner,
    Plan,
    Price,
)
from entitlements.adapters.sql import SqlStore
from entitlements.domain.billing import AssignmentKind
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.testing.fakes import FakePaymentProvider
from races import run_processes

START = datetime(2026, 5, 1, 12, tzinfo=UTC)
ACME = Owner("organization", "acme")
OTHER = Owner("organization", "other")
SIGNERS = [SignerSpec("Dana Buyer", "dana@acme.test", role="customer")]
FREE = Plan("free", "Free", limits={"projects": Limit(3)}, status="active")
GROWTH = Plan(
    "growth",
    "Growth",
    limits={"projects": Limit(50)},
    price=Price(Decimal("29"), "USD"),
    status="active",
)
BUSINESS = Plan(
    "business",
    "Business",
    limits={"projects": Limit(500)},
    price=Price(Decimal("99"), "USD"),
    status="active",
)


@pytest.fixture(params=STORE_KINDS)
def app(request, make_store):
    clock = ManualClock(START)
    provider = FakePaymentProvider(clock)
    ents = Entitlements(make_store(request.param), clock=clock, payment_provider=provider)
    for plan in (FREE, GROWTH, BUSINESS):
        ents.plans.define(plan, actor="staff")
    yield ents, clock, provider
    ents.close()


def issue(ents, key, title="Order form", owner=ACME):
    return ents.contracts.issue(
        owner, title=title, body="We agree.", signers=SIGNERS, actor="staff:ann", key=key
    )


def actions(ents, owner, action):
    return [e for e in ents.audit.for_owner(owner) if e.action == action]


# -- contracts.issue -----------------------------------------------------------------------


def test_a_repeated_issue_returns_the_first_contract_and_issues_no_other(app):
    ents, clock, _ = app
    first = issue(ents, "order-1")
    clock.advance(seconds=30)
    again = issue(ents, "order-1")
    assert again.id == first.id
    assert again.content_hash == first.content_hash
    assert [c.id for c in ents.contracts.list(ACME)] == [first.id]
    assert len(actions(ents, ACME, "contract.issue")) == 1


def test_a_repeat_answers_with_the_contract_as_it_stands_now(app):
    ents, _, _ = app
    first = issue(ents, "order-1")
    ents.contracts.send(ACME, first.id, actor="staff:ann")
    assert issue(ents, "order-1").status == ents.contracts.get(ACME, first.id).status


def test_an_issue_key_reused_for_another_contract_is_refused_and_stores_nothing(app):
    ents, _, _ = app
    issue(ents, "order-1")
    before = len(ents.audit.for_owner(ACME))
    with pytest.raises(IdempotencyKeyReused) as refused:
        issue(ents, "order-1", title="Another order form")
    assert refused.value.key == "order-1"
    assert len(ents.contracts.list(ACME)) == 1
    assert len(ents.audit.for_owner(ACME)) == before


def test_issue_keys_are_scoped_to_their_owner(app):
    ents, _, _ = app
    mine, theirs = issue(ents, "order-1"), issue(ents, "order-1", owner=OTHER)
    assert mine.id != theirs.id
    assert theirs.owner == OTHER


def test_without_a_key_every_issue_is_a_new_contract(app):
    ents, _, _ = app
    issue(ents, None)
    issue(ents, None)
    assert len(ents.contracts.list(ACME)) == 2


def test_a_refused_request_leaves_its_key_free(app):
    ents, _, _ = app
    with pytest.raises(InvalidInput):
        ents.contracts.issue(
            ACME, title="  ", body="We agree.", signers=SIGNERS, actor="staff:ann", key="k"
        )
    assert issue(ents, "k").title == "Order form", "the failed call claimed nothing"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 129, 7, ["k"]])
def test_a_malformed_key_is_refused_before_anything_is_stored(app, bad):
    ents, _, _ = app
    with pytest.raises(InvalidInput):
        issue(ents, bad)
    assert ents.contracts.list(ACME) == []


# -- billing.assign_plan -------------------------------------------------------------------


def on_free(ents):
    assert ents.billing.assign_plan(ACME, "free", actor="staff").kind is AssignmentKind.DIRECT


def test_a_repeated_checkout_opens_no_second_checkout_at_the_provider(app):
    ents, _, provider = app
    on_free(ents)
    first = ents.billing.assign_plan(ACME, "growth", actor="staff", key="upgrade-1")
    assert first.kind is AssignmentKind.CHECKOUT
    assert first.checkout is not None
    again = ents.billing.assign_plan(ACME, "growth", actor="staff", key="upgrade-1")
    assert again.kind is AssignmentKind.CHECKOUT
    assert again.command.id == first.command.id
    assert again.checkout == first.checkout
    assert [name for name, _ in provider.calls].count("start_checkout") == 1
    assert len(actions(ents, ACME, "billing.checkout")) == 1


def test_without_a_key_a_repeated_checkout_opens_another(app):
    ents, _, provider = app
    on_free(ents)
    ents.billing.assign_plan(ACME, "growth", actor="staff")
    ents.billing.assign_plan(ACME, "growth", actor="staff")
    assert [name for name, _ in provider.calls].count("start_checkout") == 2, (
        "what the key is for (docs/retries.md)"
    )


def test_a_checkout_key_reused_for_another_plan_is_refused(app):
    ents, _, provider = app
    on_free(ents)
    ents.billing.assign_plan(ACME, "growth", actor="staff", key="upgrade-1")
    with pytest.raises(IdempotencyKeyReused):
        ents.billing.assign_plan(ACME, "business", actor="staff", key="upgrade-1")
    assert [name for name, _ in provider.calls].count("start_checkout") == 1


def test_a_repeated_direct_assignment_answers_instead_of_refusing(app):
    ents, _, _ = app
    first = ents.billing.assign_plan(ACME, "free", actor="staff", key="start")
    again = ents.billing.assign_plan(ACME, "free", actor="staff", key="start")
    assert again.kind is AssignmentKind.DIRECT
    assert again.subscription.id == first.subscription.id
    assert len(ents.subscriptions.history(ACME)) == 1


def test_a_repeat_with_the_provider_down_answers_with_the_pending_command(app):
    ents, clock, provider = app
    on_free(ents)
    provider.unavailable = True
    first = ents.billing.assign_plan(ACME, "growth", actor="staff", key="upgrade-1")
    assert first.checkout is None
    provider.unavailable = False
    clock.advance(minutes=5)
    ents.process_due()  # the sweep sends it
    again = ents.billing.assign_plan(ACME, "growth", actor="staff", key="upgrade-1")
    assert again.command.id == first.command.id
    assert again.checkout is not None, "the repeat answers with what the provider said since"
    assert provider.acted == [first.command.idempotency_key], "one checkout, sent by the sweep"


# -- usage.decrease ------------------------------------------------------------------------


def test_a_repeated_decrease_subtracts_once(app):
    ents, _, _ = app
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.usage.set_gauge(ACME, "projects", 10)
    first = ents.usage.decrease(ACME, "projects", 3, key="delete-p7")
    again = ents.usage.decrease(ACME, "projects", 3, key="delete-p7")
    assert (first.used, first.duplicate) == (7, False)
    assert (again.used, again.duplicate) == (7, True)
    assert ents.usage.counter(ACME, "projects").used == 7
    with pytest.raises(IdempotencyKeyReused):
        ents.usage.decrease(ACME, "projects", 2, key="delete-p7")
    assert ents.usage.counter(ACME, "projects").used == 7


def test_a_key_names_one_request_of_its_owner_whatever_the_operation(app):
    ents, _, _ = app
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.usage.set_gauge(ACME, "projects", 10)
    issue(ents, "req-1")
    with pytest.raises(IdempotencyKeyReused):
        ents.usage.decrease(ACME, "projects", 1, key="req-1")
    assert ents.usage.counter(ACME, "projects").used == 10


# -- retention -----------------------------------------------------------------------------


def test_the_sweep_forgets_keyed_requests_after_the_key_retention(app):
    ents, clock, _ = app
    first = issue(ents, "order-1")
    clock.advance(days=29)
    report = ents.process_due()
    assert issue(ents, "order-1").id == first.id, "still remembered within the window"
    clock.advance(days=2)
    report = ents.process_due()
    assert report.keys_forgotten >= 1
    assert issue(ents, "order-1").id != first.id, "a retry later than the window is new"
    clock.advance(days=1)
    assert ents.process_due(key_retention=timedelta(hours=1)).keys_forgotten == 1


# -- concurrent repeats in separate processes ----------------------------------------------


def _repeat_issue(url: str, barrier, results) -> None:
    ents = Entitlements(SqlStore.from_url(url))
    barrier.wait()
    contract = issue(ents, "order-race")
    results.put(contract.id)
    ents.close()


def _repeat_decrease(url: str, barrier, results) -> None:
    ents = Entitlements(SqlStore.from_url(url))
    barrier.wait()
    results.put(ents.usage.decrease(ACME, "projects", 5, key="delete-race").duplicate)
    ents.close()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_concurrent_repeats_in_eight_processes_apply_once(kind, make_store):
    make_store(kind)
    url = server_url(kind)
    ents = Entitlements(SqlStore.from_url(url))
    ents.plans.define(GROWTH, actor="staff")
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.usage.set_gauge(ACME, "projects", 100)

    ids = run_processes(_repeat_issue, [(url,)] * 8)
    assert len(ids) == 8
    assert len(set(ids)) == 1, "every repeat got the one contract"
    assert len(ents.contracts.list(ACME)) == 1

    duplicates = run_processes(_repeat_decrease, [(url,)] * 8)
    assert sorted(duplicates) == [False] + [True] * 7
    assert ents.usage.counter(ACME, "projects").used == 95
    ents.close()


# -- found in review: isolation levels, spaces, many rows -----------------------------------


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_repeat_on_a_hosts_engine_at_repeatable_read_finds_the_first_request(kind, make_store):
    import sqlalchemy as sa

    make_store(kind)
    url = server_url(kind)
    ours = Entitlements(SqlStore.from_url(url))
    host = Entitlements(SqlStore(sa.create_engine(url, isolation_level="REPEATABLE READ")))
    ours.plans.define(GROWTH, actor="staff")
    ours.subscriptions.subscribe(ACME, "growth", actor="staff")
    ours.usage.set_gauge(ACME, "projects", 10)
    try:
        with host.atomic():
            host.usage.counter(ACME, "projects")  # the block's snapshot predates the first call
            assert ours.usage.decrease(ACME, "projects", 3, key="del-7").used == 7
            again = host.usage.decrease(ACME, "projects", 3, key="del-7")
            assert again.duplicate
    except Busy:
        assert kind == "postgres", "PostgreSQL refuses a write on a row newer than the snapshot"
    assert ours.usage.counter(ACME, "projects").used == 7
    ours.close()
    host.close()


@pytest.mark.parametrize("bad", ["k ", " k", "k\u00a0"])
def test_keys_and_ids_with_spaces_around_them_are_refused_on_every_store(app, bad):
    ents, _, _ = app
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.usage.set_gauge(ACME, "projects", 10)
    ents.usage.decrease(ACME, "projects", 1, key="k")
    with pytest.raises(InvalidInput):
        ents.usage.decrease(ACME, "projects", 1, key=bad)
    with pytest.raises(InvalidInput):
        ents.usage.consume(ACME, "projects", 1, key=bad)
    with pytest.raises(InvalidInput):
        Owner("organization", bad)
    assert ents.usage.counter(ACME, "projects").used == 9


def test_a_reservation_key_reused_for_another_reservation_is_refused(app):
    ents, _, _ = app
    ents.plans.define(
        Plan("metered", "Metered", limits={"calls": Limit(100, kind="metered")}, status="active"),
        actor="staff",
    )
    ents.subscriptions.subscribe(ACME, "metered", actor="staff")
    first = ents.usage.reserve(ACME, "calls", 5, key="job-1")
    assert ents.usage.reserve(ACME, "calls", 5, key="job-1").id == first.id
    with pytest.raises(IdempotencyKeyReused):
        ents.usage.reserve(ACME, "calls", 6, key="job-1")
    assert ents.usage.counter(ACME, "calls").reserved == 5
