"""No use case calls another: every entry point composes the lifecycle steps inside its
own unit of work, so one public call asks the authorizer once and reads once.

Two checks. Statically, no service module but the facade (`Entitlements`) imports a use
case's class, and no use case is built from another use case, a bound method of one or an
untyped callable. Dynamically, a recording authorizer sees exactly one decision per public
call, however many lifecycle steps the call takes (a checkout, a provider plan change, a
provider event that starts, converts and cancels, a conversion from a contract).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import entitlements.service
from entitlements import (
    Actor,
    ActorKind,
    Entitlements,
    Limit,
    ManualClock,
    MemoryStore,
    Owner,
    Plan,
    Price,
    SubscriptionStatus,
)
from entitlements.domain.billing import AssignmentKind
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.service.runtime import Runtime
from entitlements.testing.fakes import FakePaymentProvider

SERVICE = Path(entitlements.service.__file__).parent
START = datetime(2026, 5, 1, 12, tzinfo=UTC)
ACME = Owner("organization", "acme")
ALICE = Actor("alice", ActorKind.MEMBER)
STAFF = Actor("ann", ActorKind.STAFF)


WIRING = {"runtime", "store", "coherence"}
"""Attributes of `Entitlements` that are its wiring, not use cases."""


def _groups() -> dict[str, type]:
    """The use cases an `Entitlements` carries (``ents.subscriptions``...), with the parts
    a group is built of."""
    ents = Entitlements(MemoryStore())
    try:
        lazy = [n for n, m in vars(Entitlements).items() if isinstance(m, property)]
        kept = [n for n in Entitlements.__slots__ if hasattr(ents, n)]
        values = {name: getattr(ents, name) for name in [*kept, *lazy]}
    finally:
        ents.close()
    found: dict[str, type] = {}
    for name, value in values.items():
        if (name.startswith("_") and name not in lazy) or name in WIRING:
            continue  # the sweep and the claims issuer are built lazily, privately
        cls = type(value)
        if cls.__module__.startswith("entitlements.service.") and cls is not Entitlements:
            for part in cls.__mro__:
                if part.__module__.startswith("entitlements.service."):
                    found[part.__name__] = part
    return found


USE_CASES = _groups()


def test_the_use_cases_are_found():
    assert {"Subscriptions", "Billing", "Contracts", "StaffContracts", "Sweep"} <= set(USE_CASES)


def _imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("entitlements"):
            names |= {alias.name for alias in node.names}
    return names


def test_no_service_module_but_the_facade_imports_a_use_case():
    facade = SERVICE / "entitlements.py"
    offenders = []
    for path in sorted(SERVICE.rglob("*.py")):
        if path == facade:
            continue
        defined_here = {
            node.name
            for node in ast.walk(ast.parse(path.read_text("utf-8")))
            if isinstance(node, ast.ClassDef)
        }
        package = path.parent / "__init__.py" if path.name == "__init__.py" else None
        for name in _imported_names(path) & set(USE_CASES):
            if name in defined_here or package is not None:
                continue  # a package's __init__ assembles its own parts
            offenders.append(f"{path.relative_to(SERVICE)} imports {name}")
    assert not offenders, offenders


def test_no_use_case_is_built_from_another_or_from_untyped_callables():
    offenders = []
    forbidden = set(USE_CASES) | {"Any", "Callable"}
    for name, cls in USE_CASES.items():
        if "__init__" not in vars(cls):
            continue
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.name == "self":
                continue
            annotation = parameter.annotation
            if annotation is inspect.Parameter.empty:
                offenders.append(f"{name}({parameter.name}) is untyped")
                continue
            words = set(re.findall(r"\w+", str(annotation)))
            if words & forbidden:
                offenders.append(f"{name}({parameter.name}: {annotation})")
    assert not offenders, offenders


# -- one authorization per public call ------------------------------------------------------


class Recording:
    """Allows everything and remembers each decision asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def authorize(self, actor, action, *, owner, subject, uow) -> None:
        self.asked.append(action)


FREE = Plan("free", "Free", limits={"documents": Limit(100)}, status="active")
GROWTH = Plan(
    "growth",
    "Growth",
    limits={"documents": Limit(1000)},
    price=Price(Decimal("29"), "USD"),
    status="active",
)
BIGGER = Plan(
    "bigger",
    "Bigger",
    limits={"documents": Limit(5000)},
    price=Price(Decimal("99"), "USD"),
    status="active",
)


@pytest.fixture
def app():
    clock = ManualClock(START)
    provider = FakePaymentProvider(clock)
    rules = Recording()
    ents = Entitlements(MemoryStore(), clock=clock, payment_provider=provider, authorizer=rules)
    for plan in (FREE, GROWTH, BIGGER):
        ents.plans.define(plan, actor="staff")
    yield ents, provider, rules
    ents.close()


def once(rules: Recording, call: Callable[[], object]) -> list[str]:
    rules.asked.clear()
    call()
    return list(rules.asked)


def test_billing_asks_once_per_call_however_many_steps_it_takes(app):
    ents, provider, rules = app
    assign = ents.billing.assign_plan
    assert once(rules, lambda: assign(ACME, "free", actor=ALICE)) == ["billing.assign_plan"]
    checkout = []
    assert once(rules, lambda: checkout.append(assign(ACME, "growth", actor=ALICE))) == [
        "billing.assign_plan"
    ]
    assert checkout[0].kind is AssignmentKind.CHECKOUT
    provider.complete_checkout(checkout[0].checkout.id)
    for event in provider.take_events():  # starts following: subscribe, amend, manager...
        asked = once(rules, lambda event=event: ents.billing.apply_provider_event(event))
        assert asked == ["billing.apply_provider_event"]
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.ACTIVE
    change = once(rules, lambda: assign(ACME, "bigger", actor=ALICE))
    assert change == ["billing.assign_plan"]
    assert once(rules, lambda: ents.billing.cancel(ACME, actor=ALICE)) == ["billing.cancel"]
    transfer = once(rules, lambda: ents.billing.transfer_plan_manager(ACME, "bob", actor=STAFF))
    assert transfer == ["billing.transfer_plan_manager"]
    assert once(rules, lambda: ents.billing.reconcile(ACME)) == ["billing.reconcile"]
    leave = once(rules, lambda: assign(ACME, "free", actor=STAFF))  # cancels at the provider
    assert leave == ["billing.assign_plan"]
    assert ents.subscriptions.get(ACME).plan_key == "free"


def test_subscriptions_and_contract_conversion_ask_once(app):
    ents, _, rules = app
    subs = ents.subscriptions
    assert once(rules, lambda: subs.start_trial(ACME, "growth", actor=STAFF)) == [
        "subscription.start_trial"
    ]
    assert once(rules, lambda: subs.change_plan(ACME, "bigger", actor=STAFF)) == [
        "subscription.change_plan"
    ]
    assert once(rules, lambda: subs.change_seats(ACME, 3, actor=STAFF)) == [
        "subscription.change_seats"
    ]
    contract = ents.contracts.issue(
        ACME,
        title="MSA",
        body="Terms.",
        signers=[SignerSpec("Ada", "ada@acme.test")],
        actor=STAFF,
        plan_key="growth",
        amount=Decimal("290"),
        currency="USD",
    )
    (token,) = ents.contracts.send(ACME, contract.id, actor=STAFF).values()
    ents.contracts.open(token)
    ents.contracts.consent(
        token, consent_text="I agree to sign electronically.", consent_version="v1"
    )
    ents.contracts.sign(token, typed_name="Ada")
    converted = []
    asked = once(
        rules, lambda: converted.append(ents.contracts.convert(ACME, contract.id, actor=STAFF))
    )
    assert asked == ["contract.convert"]
    assert (converted[0].status, converted[0].plan_key) == (SubscriptionStatus.ACTIVE, "growth")
    key = Ed25519PrivateKey.generate()
    assert ents.contracts.certificate(ACME, contract.id, key)["evidence"]


# -- no nested units of work ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_multi_step_calls_open_no_nested_unit_of_work(kind, make_store, monkeypatch):
    """A use case that called another opened a unit of work inside its own (joined
    through a savepoint). The lifecycle steps compose inside one: billing's paths and a
    provider event that subscribes, amends and names the plan manager open none."""
    ents = Entitlements(make_store(kind), clock=ManualClock(START))
    provider = FakePaymentProvider(ents.runtime.clock)
    ents.billing.provider = provider
    for plan in (FREE, GROWTH, BIGGER):
        ents.plans.define(plan, actor="staff")
    opened, nested = [], []
    real = Runtime.transaction

    def counted(self, *args, **kwargs):
        (nested if self.in_atomic_block else opened).append(args[:1])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Runtime, "transaction", counted)
    ents.billing.assign_plan(ACME, "free", actor=ALICE)
    checkout = ents.billing.assign_plan(ACME, "growth", actor=ALICE).checkout
    provider.complete_checkout(checkout.id)
    for event in provider.take_events():
        ents.billing.apply_provider_event(event)
    ents.billing.assign_plan(ACME, "bigger", actor=ALICE)
    ents.billing.cancel(ACME, actor=ALICE)
    ents.billing.assign_plan(ACME, "free", actor=STAFF)
    assert ents.subscriptions.get(ACME).plan_key == "free"
    assert len(opened) >= 6, "each call opened its own"
    assert nested == []


def test_the_facade_sweeps_through_the_sweeps_own_method():
    """`process_due` has one home: the facade hands out the sweep's bound method, so the
    signature, defaults and checks a host calls cannot drift from the sweep's."""
    from entitlements.service.sweep import Sweep

    ents = Entitlements(MemoryStore())
    try:
        due = ents.process_due
        assert due.__func__ is Sweep.process_due
        assert due.__self__ is ents.process_due.__self__
        assert inspect.signature(due) == inspect.signature(due.__self__.process_due)
        assert due(START).changes == ()
    finally:
        ents.close()
