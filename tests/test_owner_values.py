"""Owners are built on every request: building one already seen returns it unchecked,
yet owners stay values (equal by kind, id and tenant; hashable; picklable; immutable),
and a bad part is refused however many good owners were built before."""

from __future__ import annotations

import copy
import pickle

import attrs
import pytest
from hypothesis import given

from entitlements import Entitlements, MemoryStore, Owner
from entitlements.errors import InvalidInput
from entitlements.testing.strategies import owners


def test_an_owner_seen_before_is_the_same_object() -> None:
    first = Owner("organization", "acme")
    assert Owner("organization", "acme") is first
    assert Owner(kind="organization", id="acme") is first
    assert Owner("organization", "acme", "t1") is not first


@given(owners(), owners())
def test_owners_compare_and_hash_by_kind_id_and_tenant(a: Owner, b: Owner) -> None:
    same = (a.kind, a.id, a.tenant) == (b.kind, b.id, b.tenant)
    assert (a == b) is same
    assert (a != b) is not same
    if same:
        assert hash(a) == hash(b)
    assert Owner(a.kind, a.id, a.tenant) == a


@given(owners())
def test_owners_survive_pickle_copy_and_evolve(owner: Owner) -> None:
    assert pickle.loads(pickle.dumps(owner)) == owner
    assert copy.copy(owner) == owner == copy.deepcopy(owner)
    assert attrs.evolve(owner) == owner
    assert Owner.parse(str(owner)) == owner


def test_an_owner_cannot_be_changed() -> None:
    owner = Owner("organization", "acme")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        owner.id = "globex"  # type: ignore[misc]
    assert owner.id == "acme"


@pytest.mark.parametrize(
    ("kind", "ident", "tenant", "field"),
    [
        ("Organization", "acme", None, "owner.kind"),
        ("organization", "", None, "owner.id"),
        ("organization", " acme", None, "owner.id"),
        ("organization", "acme", "", "owner.tenant"),
        ("organization", ["acme"], None, "owner.id"),
        (["organization"], "acme", None, "owner.kind"),
        ("organization", "acme", ["t1"], "owner.tenant"),
        ("organization", 7, None, "owner.id"),
    ],
)
def test_bad_parts_are_refused_after_good_owners_were_built(
    kind: object, ident: object, tenant: object, field: str
) -> None:
    Owner("organization", "acme")
    Owner("organization", "acme", "t1")
    with pytest.raises(InvalidInput) as refused:
        Owner(kind, ident, tenant)
    assert refused.value.field == field


def test_a_check_with_an_owner_built_per_call_answers_from_the_cache() -> None:
    ents = Entitlements(MemoryStore(), max_staleness=60)
    kept = Owner("organization", "acme")
    first = ents.snapshot(kept)
    assert ents.snapshot(Owner("organization", "acme")) is first
    assert len(ents.runtime.cache.warm) == len(ents.runtime.cache.snapshots) == 1
    ents.invalidate(Owner("organization", "acme"))
    assert not ents.runtime.cache.warm
    ents.close()
