"""One over-quota rule: what `preview_change` reports over quota is exactly what the change
refuses with ``if_over_quota=REFUSE`` (and reports with ``ALLOW``), on every store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import Entitlements, Limit, LimitKind, ManualClock, Owner, Plan
from entitlements.domain.usage import OverQuota, OverQuotaPolicy
from entitlements.errors import OverQuotaRefused

START = datetime(2026, 3, 1, tzinfo=UTC)
GAUGES = ("projects", "storage")
_run = itertools.count()


@pytest.fixture(params=STORE_KINDS)
def store(request, make_store):
    return make_store(request.param)


def _plan(key: str, values: dict[str, int | None], soft: bool) -> Plan:
    return Plan(
        key,
        key,
        limits={
            name: Limit(value, kind=LimitKind.GAUGE, enforcement="soft" if soft else "hard")
            for name, value in values.items()
        },
        status="active",
    )


limit_values = st.one_of(st.none(), st.integers(0, 12))
terms = st.fixed_dictionaries(dict.fromkeys(GAUGES, limit_values))


def test_a_raised_limit_the_owner_is_still_over_is_neither_previewed_nor_refused(store):
    """The reported defect: a soft limit of 5 with 10 in use, moved to a hard limit of 8."""
    ents = Entitlements(store, clock=ManualClock(START))
    acme = Owner("organization", "acme")
    ents.plans.define(_plan("beta", {"projects": 5}, soft=True), actor="staff")
    ents.plans.define(_plan("mid", {"projects": 8}, soft=False), actor="staff")
    ents.subscriptions.subscribe(acme, "beta", actor="staff")
    ents.usage.consume(acme, "projects", 10)
    assert ents.subscriptions.preview_change(acme, "mid").over_quota == ()
    change = ents.subscriptions.change_plan(acme, "mid", actor="staff")
    assert change.over_quota == ()
    ents.close()


def test_a_lowered_limit_is_previewed_and_refused_alike(store):
    ents = Entitlements(store, clock=ManualClock(START))
    acme = Owner("organization", "acme")
    ents.plans.define(_plan("roomy", {"projects": 10}, soft=False), actor="staff")
    ents.plans.define(_plan("small", {"projects": 3}, soft=False), actor="staff")
    ents.subscriptions.subscribe(acme, "roomy", actor="staff")
    ents.usage.consume(acme, "projects", 4)
    expected = (OverQuota("projects", 3, 4),)
    assert ents.subscriptions.preview_change(acme, "small").over_quota == expected
    with pytest.raises(OverQuotaRefused) as refused:
        ents.subscriptions.change_plan(acme, "small", actor="staff")
    assert refused.value.over_quota == expected
    ents.close()


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=terms,
    middle=terms,
    target=terms,
    used=st.fixed_dictionaries({name: st.integers(0, 15) for name in GAUGES}),
    soft=st.booleans(),
)
def test_what_preview_reports_over_quota_is_what_refuse_refuses(
    store, first, middle, target, used, soft
):
    """Usage taken on roomy terms, then terms moved (allowing over quota) to ``middle``;
    previewing ``target`` and changing to it with REFUSE agree, and ALLOW reports the
    same."""
    run = next(_run)
    ents = Entitlements(store, clock=ManualClock(START))
    owner = Owner("organization", f"o{run}")
    keys = [f"r{run}-{name}" for name in ("roomy", "first", "middle", "target")]
    roomy = dict.fromkeys(GAUGES)
    for key, values in zip(keys, (roomy, first, middle, target), strict=True):
        ents.plans.define(_plan(key, values, soft), actor="staff")
    ents.subscriptions.subscribe(owner, keys[0], actor="staff")
    for name, amount in used.items():
        if amount:
            ents.usage.consume(owner, name, amount)
    for key in keys[1:3]:
        ents.subscriptions.change_plan(owner, key, actor="staff", if_over_quota="allow")
    previewed = ents.subscriptions.preview_change(owner, keys[3]).over_quota
    refused: OverQuotaRefused | None = None
    try:
        change = ents.subscriptions.change_plan(owner, keys[3], actor="staff")
    except OverQuotaRefused as error:
        refused = error
    if refused is not None:
        assert refused.over_quota == previewed
        assert previewed != ()
        assert ents.subscriptions.get(owner).plan_key == keys[2]
        allowed = ents.subscriptions.change_plan(
            owner, keys[3], actor="staff", if_over_quota=OverQuotaPolicy.ALLOW
        )
        assert allowed.over_quota == previewed
    else:
        assert previewed == ()
        assert change.over_quota == ()
        assert change.subscription.plan_key == keys[3]
    ents.close()
