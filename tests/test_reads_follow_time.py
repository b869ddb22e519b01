"""Every public read sees a subscription as time has made it, without a sweep: after a
trial end, an expiry, a grace end and a period roll-over, the subscription reads, billing's
state and guards, search, the snapshot, the console and the command line agree."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from conftest import STORE_KINDS
from entitlements import (
    Action,
    Actor,
    ActorKind,
    Entitlements,
    Feature,
    Limit,
    ManualClock,
    Owner,
    Plan,
    Price,
)
from entitlements.adapters.sql import SqlStore
from entitlements.cli.main import main
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import OwnerHasActivePlan, PlanManagerProtected
from web_host import make_host

START = datetime(2026, 4, 1, 9, tzinfo=UTC)
ACME = Owner("organization", "acme")
ALICE = Actor("alice", ActorKind.MEMBER)
PRO = Plan(
    "pro",
    "Pro",
    limits={"projects": Limit(10)},
    features={"reports": Feature(actions={Action.READ, Action.CREATE})},
    price=Price(Decimal("49"), "EUR"),
    trial_days=14,
    status="active",
)
_S = SubscriptionStatus


@pytest.fixture(params=STORE_KINDS)
def store(request, make_store):
    return make_store(request.param)


@pytest.fixture
def app(store):
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock, max_staleness=0)
    ents.plans.define(PRO, actor="staff")
    yield ents, clock
    ents.close()


def _refuses(call, error: type[Exception]) -> bool:
    try:
        call()
    except error:
        return True
    return False


def _console_status(ents: Entitlements) -> str:
    client = TestClient(make_host(ents), follow_redirects=True)
    client.get("/login?as=ann")
    page = client.get("/billing/owner?ref=organization:acme").text
    return re.search(r'id="sub-status">([^<]+)<', page).group(1)


def _every_read(ents: Entitlements, member: str | None = None) -> dict[str, object]:
    """What each public read says about ACME's subscription now."""
    found = ents.subscriptions.find(ACME)
    state = ents.billing.state(ACME).subscription
    searched = [s for s in ents.subscriptions.search("acme") if s.owner == ACME]
    by_status = ents.subscriptions.search(statuses=[found.status])
    return {
        "get": ents.subscriptions.get(ACME),
        "history": ents.subscriptions.history(ACME)[-1],
        "billing.state": state,
        "search": searched[0],
        "search by status": next(s for s in by_status if s.owner == ACME),
        "snapshot status": ents.snapshot(ACME).status,
        "resolve status": ents.resolve(ACME).status,
        "snapshot period": ents.snapshot(ACME).usage_period,
        "console": _console_status(ents),
        "deletable": not _refuses(lambda: ents.billing.ensure_deletable(ACME), OwnerHasActivePlan),
        "member removable": member is None
        or not _refuses(
            lambda: ents.billing.ensure_member_removable(ACME, member), PlanManagerProtected
        ),
    }


def _agree(reads: dict[str, object], status: SubscriptionStatus) -> Subscription:
    """Every subscription read is the same subscription, with ``status``."""
    found = reads["get"]
    assert isinstance(found, Subscription)
    for name in ("history", "billing.state", "search", "search by status"):
        assert reads[name] == found, name
    assert found.status is status
    assert reads["snapshot status"] is reads["resolve status"] is status
    assert reads["console"] == status.value.replace("_", " ")
    return found


def test_after_a_trial_end_every_read_says_expired(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    clock.advance(timedelta(days=1))
    assert _agree(_every_read(ents), _S.TRIALING)
    assert not _every_read(ents)["deletable"]  # a paid plan on trial
    clock.advance(timedelta(days=19))
    reads = _every_read(ents)
    _agree(reads, _S.EXPIRED)
    assert reads["deletable"]


def test_after_an_expiry_every_read_says_expired_and_the_guards_let_go(app):
    ents, clock = app
    ents.billing.assign_plan(ACME, "pro", actor=ALICE)
    ents.subscriptions.amend(ACME, expires_at=START + timedelta(days=10), actor="staff")
    reads = _every_read(ents, "alice")
    _agree(reads, _S.ACTIVE)
    assert not reads["deletable"]
    assert not reads["member removable"]
    clock.advance(timedelta(days=11))
    reads = _every_read(ents, "alice")
    _agree(reads, _S.EXPIRED)
    assert reads["deletable"]
    assert reads["member removable"]


def test_after_a_grace_end_every_read_says_past_due_and_access_is_read_only(app):
    ents, clock = app
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="staff")
    assert ents.allows(ACME, "reports", "create")
    clock.advance(timedelta(days=8))  # the default grace is 7 days
    reads = _every_read(ents)
    _agree(reads, _S.PAST_DUE)
    assert not reads["deletable"]  # still a live paid plan
    assert ents.allows(ACME, "reports", "read")
    assert not ents.allows(ACME, "reports", "create")
    assert not ents.resolve(ACME).allows("reports", "create")


def test_after_a_period_roll_over_every_read_is_in_the_new_period(app):
    ents, clock = app
    first = ents.subscriptions.subscribe(ACME, "pro", actor="staff").current_period
    clock.advance(timedelta(days=40))
    reads = _every_read(ents)
    found = _agree(reads, _S.ACTIVE)
    now = START + timedelta(days=40)
    assert found.current_period != first
    assert found.current_period.start <= now < found.current_period.end
    assert reads["snapshot period"] == found.current_period
    assert ents.usage.check(ACME, "projects", 1).used == 0


def test_the_command_line_reads_what_time_made(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'entitlements.db'}"
    store = SqlStore.from_url(url)
    store.create_schema()
    ents = Entitlements(store, clock=ManualClock(START))
    ents.plans.define(PRO, actor="staff")
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    ents.close()
    store.engine.dispose()
    later = (START + timedelta(days=20)).isoformat()
    capsys.readouterr()
    code = main(
        [
            "--db",
            url,
            "--actor",
            "ann",
            "--now",
            later,
            "--json",
            "subs",
            "show",
            "organization:acme",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)[-1]["status"] == "expired"
