"""Public values are read-only all the way down, actor strings never grant a kind they do
not name, and an unknown limit is told apart from an unlimited one without truthiness."""

from __future__ import annotations

import copy
import pickle

import pytest

from entitlements import (
    AccessPolicy,
    Actor,
    ActorKind,
    AddOn,
    Entitlements,
    Feature,
    InvalidInput,
    Limit,
    ManualClock,
    Owner,
    Plan,
    UnknownLimit,
)
from entitlements.domain.actor import as_actor
from entitlements.domain.frozen import FrozenDict
from entitlements.testing.contract import CATALOG, START

STORE_KINDS = ["memory", "sqlite", "postgres", "mysql"]
ACME = Owner("organization", "acme")


@pytest.fixture(params=STORE_KINDS)
def ents(request, make_store):
    app = Entitlements(make_store(request.param), clock=ManualClock(START))
    for plan in CATALOG:
        app.plans.define(plan, actor="ann")
    app.subscriptions.subscribe(
        ACME, "growth", actor="ann", seats=3, metadata={"crm": {"tags": ["a"]}}
    )
    yield app
    app.close()


def _writes(mapping) -> list[str]:
    """Each way of writing to ``mapping`` that did not raise."""
    attempts = {
        "setitem": lambda m: m.__setitem__("x", 1),
        "delitem": lambda m: m.__delitem__(next(iter(m))),
        "update": lambda m: m.update({"x": 1}),
        "setdefault": lambda m: m.setdefault("x", 1),
        "pop": lambda m: m.pop(next(iter(m))),
        "popitem": lambda m: m.popitem(),
        "clear": lambda m: m.clear(),
    }
    allowed = []
    for name, write in attempts.items():
        try:
            write(mapping)
        except (TypeError, AttributeError):
            continue
        allowed.append(name)
    return allowed


def test_snapshot_mappings_are_read_only_and_answers_do_not_change(ents) -> None:
    snapshot = ents.snapshot(ACME)
    assert snapshot.limits["seats"] == 3
    assert _writes(snapshot.limits) == []
    assert isinstance(snapshot.features, frozenset)
    assert ents.limit(ACME, "seats") == 3
    assert ents.snapshot(ACME).limits == {"seats": 3, "projects": 20, "api_calls": None}


def test_plan_addon_subscription_and_policy_fields_are_read_only(ents) -> None:
    plan = ents.plans.get("growth")
    for mapping in (plan.limits, plan.features):
        assert _writes(mapping) == []
    assert isinstance(plan.owner_kinds, frozenset)
    sub = ents.subscriptions.get(ACME)
    assert _writes(sub.metadata) == []
    assert _writes(sub.metadata["crm"]) == []
    with pytest.raises(AttributeError):
        sub.metadata["crm"]["tags"].append("b")
    assert sub.metadata == {"crm": {"tags": ["a"]}}, "still equal to the plain document"
    addon = AddOn("extra", limits={"seats": 2}, features={"sso": True})
    assert _writes(addon.limits) == []
    assert _writes(addon.features) == []
    assert _writes(AccessPolicy().by_status) == []
    assert isinstance(Actor("ann", permissions=["a"]).permissions, frozenset)


def test_read_only_mappings_copy_pickle_and_compare_like_dicts() -> None:
    plan = Plan("pro", "Pro", limits={"seats": Limit(5)}, features={"sso": Feature()})
    assert copy.deepcopy(plan) == plan
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert plan.limits == {"seats": Limit(5)}
    assert isinstance(plan.limits, dict)
    assert isinstance(plan.limits, FrozenDict)
    assert dict(plan.limits) | {"x": Limit(1)} == {"seats": Limit(5), "x": Limit(1)}


@pytest.mark.parametrize("text", ["membr:bob", "Member:bob", "staf:ann", "admin:root", ":x"])
def test_an_actor_string_with_an_unknown_kind_is_refused(text) -> None:
    with pytest.raises(InvalidInput) as refused:
        as_actor(text)
    assert refused.value.field == "actor"


def test_actor_strings_that_name_a_kind_or_none() -> None:
    assert as_actor("member:bob") == Actor("bob", ActorKind.MEMBER)
    assert as_actor("staff:auth0:42") == Actor("auth0:42", ActorKind.STAFF)
    assert as_actor("ann") == Actor("ann", ActorKind.STAFF)


def test_a_refused_actor_string_changes_nothing(ents) -> None:
    before = ents.store.dump()
    with pytest.raises(InvalidInput):
        ents.subscriptions.change_seats(ACME, 4, actor="membr:bob")
    assert ents.store.dump() == before


def test_unknown_and_unlimited_limits_are_told_apart(ents) -> None:
    assert ents.limit(ACME, "api_calls") is None, "unlimited"
    with pytest.raises(UnknownLimit) as unknown:
        ents.limit(ACME, "rockets")
    assert unknown.value.name == "rockets"
    assert isinstance(unknown.value, LookupError)
    assert ents.limit(ACME, "rockets", default=0) == 0
    snapshot = ents.snapshot(ACME)
    assert snapshot.defines("api_calls")
    assert not snapshot.defines("rockets")
    assert "rockets" not in snapshot.limits
    assert "api_calls" in snapshot.limits


def test_an_owner_without_a_plan_has_no_limits_but_a_default_answers(ents) -> None:
    nobody = Owner("organization", "nobody")
    with pytest.raises(UnknownLimit):
        ents.limit(nobody, "seats")
    assert ents.limit(nobody, "seats", default=0) == 0
    assert not ents.snapshot(nobody).defines("seats")
