"""Plans priced by contract ("enterprise"): a kind of price of their own, never free.

Each customer's contract sets the amount, so the plan has no list price; before
`ByContract` such a plan had to be defined without a price, and then counted as free —
the one-free-plan rule refused it and every listing said "free"."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from conftest import STORE_KINDS
from entitlements import (
    Actor,
    ByContract,
    Entitlements,
    InvalidInput,
    MemoryStore,
    Owner,
    Plan,
    Price,
)
from entitlements.catalog import CatalogError, dump_catalog, loads_catalog
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.plan import price_label
from entitlements.errors import FreePlanTaken

ENTERPRISE = Plan(
    "enterprise", "Enterprise", price=ByContract(BillingCycle.annual()), status="active"
)
FREE = Plan("free", "Free", status="active")
PRO = Plan("pro", "Pro", price=Price(Decimal("49.00"), "EUR"), status="active")


def test_a_plan_priced_by_contract_is_neither_free_nor_listed_at_a_price():
    assert not ENTERPRISE.is_free
    assert ENTERPRISE.is_by_contract
    assert FREE.is_free
    assert not FREE.is_by_contract
    assert not PRO.is_free
    assert not PRO.is_by_contract
    assert [p.price_label for p in (FREE, PRO, ENTERPRISE)] == [
        "free",
        "49.00 EUR every 1 month",
        "by contract",
    ]
    assert price_label(None) == "free"
    assert ByContract().cycle == BillingCycle.monthly()
    with pytest.raises(InvalidInput, match="ByContract"):
        Plan("odd", "Odd", price="contract")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"price\.cycle"):
        ByContract("yearly")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_every_store_keeps_the_kind_of_price(make_store, kind):
    ents = Entitlements(make_store(kind))
    try:
        for plan in (FREE, PRO, ENTERPRISE):
            ents.plans.define(plan, actor="staff")
        stored = {p.key: p.price for p in ents.plans.list()}
        assert stored == {
            "enterprise": ByContract(BillingCycle.annual()),
            "free": None,
            "pro": Price(Decimal("49.00"), "EUR"),
        }
        revised = ents.plans.revise("enterprise", actor="staff", price=Price("990", "EUR"))
        assert (revised.version, revised.is_by_contract) == (2, False)
        assert ents.plans.get("enterprise", 1).price == ByContract(BillingCycle.annual())
        back = ents.plans.revise("enterprise", actor="staff", price=ByContract())
        assert (back.version, back.price) == (3, ByContract())
        assert ents.plans.get("enterprise").price_label == "by contract"
        owner = Owner("organization", "acme")
        sub = ents.subscriptions.subscribe(owner, "enterprise", actor="staff")
        assert sub.plan_version == 3
    finally:
        ents.close()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_the_one_free_plan_rule_ignores_plans_priced_by_contract(make_store, kind):
    ents = Entitlements(make_store(kind), one_free_plan_per_tenant=True)
    try:
        for plan in (FREE, ENTERPRISE, Plan("legacy", "Legacy, no price", status="active")):
            ents.plans.define(plan, actor="staff")
        first, second, third = (Owner("app", f"a{i}", "t1") for i in (1, 2, 3))
        ents.subscriptions.subscribe(first, "free", actor="staff")
        ents.subscriptions.subscribe(second, "enterprise", actor="staff")
        ents.billing.assign_plan(third, "enterprise", actor="staff")
        with pytest.raises(FreePlanTaken):  # a plan without a price is still free
            ents.subscriptions.subscribe(Owner("app", "a4", "t1"), "legacy", actor="staff")
        assert ents.subscriptions.get(second).plan_key == "enterprise"
    finally:
        ents.close()


CATALOG = """
[plans.free]
name = "Free"
status = "active"

[plans.enterprise]
name = "Enterprise"
status = "active"

[plans.enterprise.price]
by_contract = true
cycle = { unit = "year" }
"""


@pytest.mark.parametrize("format", ["toml", "json"])
def test_a_catalog_says_by_contract_and_reads_back_what_it_dumps(format):
    catalog = loads_catalog(CATALOG, where="plans.toml")
    assert catalog.plan("enterprise").price == ByContract(BillingCycle.annual())
    assert catalog.plan("free").price is None
    text = dump_catalog(catalog, format)
    assert loads_catalog(text, format) == catalog
    if format == "json":
        assert json.loads(text)["plans"]["enterprise"]["price"] == {
            "by_contract": True,
            "cycle": {"unit": "year", "every": 1},
        }


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("by_contract = false", "plans.toml: plans.e.price.by_contract: must be true"),
        ('by_contract = "yes"', "plans.toml: plans.e.price.by_contract: must be true"),
        (
            'by_contract = true\namount = "10.00"',
            "plans.toml: plans.e.price.amount: a price set by contract has no amount",
        ),
        (
            'by_contract = true\ncurrency = "EUR"',
            "plans.toml: plans.e.price.currency: a price set by contract has no amount",
        ),
        (
            'by_contract = true\ncycle = { unit = "fortnight" }',
            "plans.toml: plans.e.price.cycle:",
        ),
    ],
)
def test_a_bad_by_contract_price_names_its_place(price, message):
    with pytest.raises(CatalogError) as raised:
        loads_catalog(f'[plans.e]\nname = "E"\n[plans.e.price]\n{price}\n', where="plans.toml")
    assert str(raised.value).startswith(message)


def test_the_command_line_shows_by_contract(tmp_path, monkeypatch, capsys):
    from entitlements.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "plans.toml").write_text(
        CATALOG + '\n[plans.pro]\nname = "Pro"\nstatus = "active"\n'
        '[plans.pro.price]\namount = "49.00"\ncurrency = "EUR"\n'
    )
    assert main(["db", "upgrade"]) == 0
    assert main(["plans", "load", "plans.toml"]) == 0
    capsys.readouterr()
    assert main(["plans", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "by contract" in rows["enterprise"]
    assert " free " in rows["free"]
    assert "49.00 EUR every 1 month" in rows["pro"]
    assert main(["plans", "show", "enterprise"]) == 0
    assert "active, by contract, trial" in capsys.readouterr().out


def test_the_console_shows_by_contract():
    pytest.importorskip("starlette", reason="the web extra is not installed")
    pytest.importorskip("httpx2", reason="the test extra (httpx2) is not installed")
    from starlette.testclient import TestClient

    from web_host import make_ents, make_host

    ents = make_ents(MemoryStore())
    try:
        ents.plans.define(ENTERPRISE, actor=Actor("setup", "staff", {"subscriptions.manage"}))
        client = TestClient(make_host(ents), follow_redirects=True)
        client.get("/login?as=ann")
        page = client.get("/billing/plans")
        assert page.status_code == 200
        enterprise = page.text.split('id="plan-enterprise"', 1)[1].split("</p>", 1)[0]
        assert enterprise.endswith("Trial 90 days · by contract")
        assert "Trial 14 days · free</p>" in page.text
    finally:
        ents.close()
