"""Plan catalogs as TOML/JSON configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog import build
from entitlements import IllegalTransition, Limit, Plan, PlanStatus
from entitlements.catalog import Catalog, CatalogError, dump_catalog, load_catalog, loads_catalog
from entitlements.testing.strategies import catalogs

GOOD = """
[plans.free]
name = "Free"
status = "active"
trial_days = 0
features = { premium = { actions = ["read"] } }
limits = { seats = { value = 1, kind = "seats" }, projects = 3 }

[plans.growth]
name = "Growth"
status = "active"
owner_kinds = ["workspace"]
features = { premium = true, export = true }

[plans.growth.limits]
seats = { value = 5, kind = "seats" }
api_calls = { value = "unlimited", kind = "metered", enforcement = "soft" }

[plans.growth.price]
amount = "49.00"
currency = "EUR"
cycle = { unit = "month", every = 1 }
"""


def test_a_catalog_file_loads_into_plans(tmp_path):
    path = tmp_path / "plans.toml"
    path.write_text(GOOD)
    catalog = load_catalog(path)
    growth = catalog.plan("growth")
    assert growth.limits["api_calls"] == Limit(None, kind="metered", enforcement="soft")
    assert str(growth.price.amount) == "49.00"
    assert growth.owner_kinds == frozenset({"workspace"})
    assert catalog.plan("free").features["premium"].actions == frozenset({"read"})


@given(catalogs())
def test_toml_and_json_round_trip(catalog):
    for fmt in ("toml", "json"):
        assert loads_catalog(dump_catalog(catalog, fmt), fmt) == Catalog(
            tuple(p for p in catalog.plans)
        )


@given(st.from_type(Catalog))
def test_catalogs_are_registered_for_from_type(catalog):
    assert isinstance(catalog, Catalog)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('[plans.free]\nname = "Free"\nlimits = { seats = -1 }', "plans.free.limits.seats.value"),
        (
            '[plans.free]\nname = "Free"\nlimits = { seats = "lots" }',
            "plans.free.limits.seats.value",
        ),
        (
            '[plans.free]\nname = "Free"\nlimits = { seats = { value = 1, kind = "chairs" } }',
            "plans.free.limits.seats.kind",
        ),
        ('[plans.free]\nname = "Free"\nstatus = "gone"', "plans.free.status"),
        ('[plans.free]\nstatus = "active"', "plans.free.name"),
        ('[plans.free]\nname = "Free"\ncolour = "red"', "plans.free.colour"),
        (
            '[plans.paid]\nname = "P"\nprice = { amount = 9.5, currency = "EUR" }',
            "plans.paid.price.amount",
        ),
        (
            '[plans.paid]\nname = "P"\nprice = { amount = "9.50", currency = "euro" }',
            "plans.paid.price.currency",
        ),
        (
            '[plans.paid]\nname = "P"\nfeatures = { x = { actions = ["fly"] } }',
            "plans.paid.features.x.actions",
        ),
        ('[plans."Bad Key"]\nname = "P"', "plans.Bad Key"),
        ("[plans.free\nname=", "(syntax)"),
    ],
)
def test_errors_name_the_file_and_the_bad_field(text, path):
    with pytest.raises(CatalogError) as caught:
        loads_catalog(text, where="plans.toml")
    assert caught.value.path == path
    assert str(caught.value).startswith(f"plans.toml: {path}: ")


def test_missing_file_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match=r"missing\.toml"):
        load_catalog(tmp_path / "missing.toml")


def test_sync_defines_revises_and_reports():
    ents, _ = build()
    catalog = loads_catalog(GOOD)
    result = ents.plans.sync(catalog, actor="staff:ops")
    assert result.defined == ()
    assert set(result.changed) == {"free", "growth"}
    assert result.not_in_catalog == ("enterprise",)
    assert ents.plans.get("growth").version == 2
    assert ents.plans.get("growth").owner_kinds == frozenset({"workspace"})
    again = ents.plans.sync(catalog, actor="staff:ops")
    assert again.changed == ()
    new = Catalog((*catalog.plans, Plan("team", "Team", status=PlanStatus.ACTIVE)))
    assert ents.plans.sync(new, actor="staff:ops").defined == ("team",)


def test_a_sync_that_fails_changes_nothing():
    ents, _ = build()
    before = ents.plans.list()
    bad = Catalog((Plan("free", "Free 2"), Plan("growth", "Growth", status="draft")))
    with pytest.raises(IllegalTransition, match="draft"):
        ents.plans.sync(bad, actor="staff:ops")
    assert ents.plans.list() == before


def test_a_sync_that_loses_a_race_runs_again_whole(monkeypatch):
    from entitlements import StaleWrite
    from entitlements.adapters import memory

    ents, _ = build()
    update = memory._Plans.update
    lost: list[str] = []

    def loses_once(self, plan):
        if not lost:
            lost.append(plan.key)
            raise StaleWrite("plan", plan.key, plan.revision)
        return update(self, plan)

    monkeypatch.setattr(memory._Plans, "update", loses_once)
    result = ents.plans.sync(loads_catalog(GOOD), actor="staff:ops")
    assert lost, "the race was lost once"
    assert set(result.changed) == {"free", "growth"}
    assert ents.plans.get("growth").version == 2
    assert ents.plans.get("growth").owner_kinds == frozenset({"workspace"})
