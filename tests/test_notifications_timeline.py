"""Notifications of what scheduled changes, pauses and invoices bring: each written once
per fact, in the transaction of the fact or by the sweep."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest

from conftest import STORE_KINDS
from entitlements import Entitlements, ManualClock, Owner
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
