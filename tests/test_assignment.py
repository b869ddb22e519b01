"""One rule set decides whether an owner may be put on a plan, and every entry point asks
it: subscribe, trial, conversion, plan change, billing assignment, contracts (seed 004)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import STORE_KINDS
from entitlements import (
    Entitlements,
    Owner,
    Plan,
    PlanNotAssignable,
    Price,
    SubscriptionStatus,
)
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.errors import BillingActionRequired

ACME = Owner("organization", "acme")
BOB = Owner("user", "bob")


@pytest.fixture(params=STORE_KINDS)
def ents(request, make_store) -> Entitlements:
    app = Entitlements(make_store(request.param))
    app.plans.define(Plan("free", "Free", status="active"), actor="staff")
    app.plans.define(Plan("team", "Team", status="active"), actor="staff")
    app.plans.define(Plan("pro", "Pro", price=Price("49.00", "USD"), status="active"), actor="s")
    app.plans.define(Plan("beta", "Beta"), actor="staff")  # a draft
    app.plans.define(
        Plan("orgs", "Orgs only", owner_kinds={"organization"}, status="active"), actor="s"
    )
    return app


Path = Callable[[Entitlements, Owner, str], object]


def _subscribe(ents: Entitlements, owner: Owner, plan: str) -> object:
    return ents.subscriptions.subscribe(owner, plan, actor="staff")


def _trial(ents: Entitlements, owner: Owner, plan: str) -> object:
    return ents.subscriptions.start_trial(owner, plan, actor="staff")


def _convert(ents: Entitlements, owner: Owner, plan: str) -> object:
    ents.subscriptions.start_trial(owner, "team", actor="staff")
    return ents.subscriptions.convert(owner, actor="staff", plan_key=plan)


def _change(ents: Entitlements, owner: Owner, plan: str) -> object:
    ents.subscriptions.subscribe(owner, "team", actor="staff")
    return ents.subscriptions.change_plan(owner, plan, actor="staff")


def _billing(ents: Entitlements, owner: Owner, plan: str) -> object:
    ents.subscriptions.subscribe(owner, "team", actor="staff")
    return ents.billing.assign_plan(owner, plan, actor="staff")


def _contract(ents: Entitlements, owner: Owner, plan: str) -> object:
    ents.subscriptions.start_trial(owner, "team", actor="staff")
    return ents.contracts.issue(
        owner,
        title="Order form",
        body="Terms of service",
        signers=[SignerSpec("Ann", "ann@example.com", "CEO", 1)],
        plan_key=plan,
        actor="staff",
    )


PATHS = [_subscribe, _trial, _convert, _change, _billing, _contract]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__.strip("_"))
def test_a_draft_plan_is_refused_on_every_path(ents, path):
    with pytest.raises(PlanNotAssignable, match="draft"):
        path(ents, ACME, "beta")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__.strip("_"))
def test_a_plan_for_other_kinds_of_owner_is_refused_on_every_path(ents, path):
    with pytest.raises(PlanNotAssignable, match="organization"):
        path(ents, BOB, "orgs")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__.strip("_"))
def test_an_archived_plan_is_refused_to_owners_that_do_not_hold_it(ents, path):
    ents.plans.archive("orgs", actor="staff")
    with pytest.raises(PlanNotAssignable, match="archived"):
        path(ents, ACME, "orgs")


def _member_change(ents: Entitlements, plan: str) -> object:
    return ents.subscriptions.change_plan(ACME, plan, actor="member:bob")


def _member_billing(ents: Entitlements, plan: str) -> object:
    return ents.billing.assign_plan(ACME, plan, actor="member:bob")


@pytest.mark.parametrize("path", [_member_change, _member_billing], ids=["change", "billing"])
def test_a_past_due_owner_may_not_change_its_own_plan_on_any_path(ents, path):
    ents.subscriptions.subscribe(ACME, "team", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="staff")
    with pytest.raises(BillingActionRequired):
        path(ents, "free")
    assert ents.subscriptions.get(ACME).plan_key == "team"
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.PAST_DUE


def test_staff_may_still_change_a_past_due_owners_plan(ents):
    ents.subscriptions.subscribe(ACME, "team", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="staff")
    ents.subscriptions.change_plan(ACME, "free", actor="staff:ann")
    assert ents.subscriptions.get(ACME).plan_key == "free"
