"""Bad input at the public boundary: a hypothesis fuzz over the public API of
`Entitlements` on every store at once.

Each example takes one public call with valid arguments and replaces one (sometimes two)
of them with a hostile value: a wrong type, ``None``, a list, NaN or infinity, a huge or
negative integer, a float for money, an empty, blank or over-long string, a lone
surrogate or a control character, a naive datetime, an SQL-ish string. Then, on every
store: only library errors come out; a refused call leaves the store exactly as it was
(the full dump before and after); and all stores give the same outcome.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitlements import (
    AccessPolicy,
    Actor,
    AddOn,
    BillingCycle,
    Entitlements,
    EntitlementsError,
    Feature,
    InvalidInput,
    Limit,
    ManualClock,
    MemoryStore,
    NotAuthorized,
    OverQuotaRefused,
    Override,
    Owner,
    Plan,
    Price,
)
from entitlements.catalog import loads_catalog
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.service.authorization import PermissionRules
from entitlements.testing.contract import CATALOG, START
from entitlements.testing.fakes import FakePaymentProvider

STORE_KINDS = ["memory", "sqlite", "postgres", "mysql"]
ACME = Owner("organization", "acme")
GLOBEX = Owner("organization", "globex")
NEWCO = Owner("organization", "newco")
T1_APP = Owner("app", "1", tenant="t1")

HOSTILE: list[Any] = [
    None,
    [],
    ["sso"],
    ("pro",),
    {},
    {"x": 1},
    {"x"},
    0,
    -1,
    1.5,
    9.99,
    float("nan"),
    float("inf"),
    -float("inf"),
    True,
    False,
    2**31,
    2**63,
    -(2**63),
    10**30,
    Decimal("NaN"),
    Decimal("-1"),
    "",
    " ",
    "\t\n",
    "x" * 300,
    "y" * 70_000,
    "\ud800",
    "ok\udfffok",
    "a\x00b",
    "\x1b[31mred",
    "bell\x07",
    "line\nbreak",
    "'; DROP TABLE ent_plans; --",
    "Robert'); DELETE FROM ent_subscriptions; --",
    "%s%s%s",
    "member:bob",
    "membr:bob",
    "monthly",
    "pro",
    b"bytes",
    datetime(2026, 2, 1, 12, 0),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    timedelta(days=-1),
    timedelta(0),
    timedelta(days=10**6),
    object(),
    ACME,
    Limit(5),
    lambda: None,
]

hostile = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=3),
    st.datetimes(),
)


@attrs.frozen
class Call:
    """A public call with valid arguments; ``path`` walks from `Entitlements`."""

    path: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)

    @property
    def slots(self) -> list[int | str]:
        return [*range(len(self.args)), *self.kwargs]

    def with_values(self, changes: dict[int | str, Any]) -> Call:
        args = tuple(changes.get(i, a) for i, a in enumerate(self.args))
        kwargs = {k: changes.get(k, v) for k, v in self.kwargs.items()}
        return Call(self.path, args, kwargs)

    def run(self, ents: Entitlements) -> Any:
        target: Any = ents
        for part in self.path.split("."):
            target = getattr(target, part)
        args = tuple(_seeded(ents, a) for a in self.args)
        return target(*args, **self.kwargs)


SEEDED_CONTRACT = "seeded-contract"
"""Stands for the id of the contract `seed` issued (ids differ by store)."""


def _seeded(ents: Entitlements, value: Any) -> Any:
    if isinstance(value, str) and value == SEEDED_CONTRACT:
        return ents.contracts.list(ACME)[0].id
    return value


LATER = START + timedelta(days=10)
SIGNING_KEY = Ed25519PrivateKey.generate()
# refusals the library records in the audit trail on purpose (who tried what, and why not)
AUDITED_REFUSALS = (NotAuthorized, OverQuotaRefused)
ADDON = AddOn("extra-seats", limits={"seats": 2})
SIGNERS = [SignerSpec("Ann Signer", "ann@example.com")]

CALLS = [
    Call("allows", (ACME, "premium"), {"action": None}),
    Call("allows", (ACME, "premium", "read")),
    Call("limit", (ACME, "seats")),
    Call("snapshot", (ACME,)),
    Call("explain", (ACME, "export", "update")),
    Call("explain_limit", (ACME, "projects")),
    Call("resolve", (ACME,), {"at": LATER}),
    Call("resolve", (ACME, START + timedelta(seconds=1))),
    Call("claims", (ACME,), {"now": LATER}),
    Call("catch_up", (None,)),
    Call("invalidate", (ACME,)),
    Call("process_due", (), {"now": START}),
    Call("plans.define", (CATALOG[0],), {"actor": "ann", "reason": None}),
    Call("plans.get", ("growth",), {"version": None}),
    Call("plans.versions", ("growth",)),
    Call("plans.revise", ("growth",), {"actor": "ann", "trial_days": 30, "reason": "r"}),
    Call("plans.revise", ("growth",), {"actor": "ann", "limits": {"seats": Limit(9)}}),
    Call("plans.revise", ("growth",), {"actor": "ann", "features": {"sso": True}}),
    Call("plans.revise", ("growth",), {"actor": "ann", "price": Price("9", "EUR")}),
    Call("plans.rename", ("growth", "Growth"), {"actor": "ann"}),
    Call("plans.set_owner_kinds", ("growth", frozenset({"organization"})), {"actor": "ann"}),
    Call("plans.set_status", ("growth", "active"), {"actor": "ann"}),
    Call("plans.archive", ("free",), {"actor": "ann", "reason": "r"}),
    Call("subscriptions.find", (ACME,), {"actor": None}),
    Call("subscriptions.get", (ACME,), {"actor": "ann"}),
    Call("subscriptions.history", (ACME,)),
    Call("subscriptions.at", (ACME, START + timedelta(seconds=1)), {"actor": None}),
    Call(
        "subscriptions.subscribe",
        (NEWCO, "growth"),
        {"actor": "ann", "seats": 2, "cycle": None, "now": None, "reason": None},
    ),
    Call(
        "subscriptions.start_trial",
        (NEWCO, "enterprise"),
        {"actor": "ann", "trial_days": 14, "seats": None, "notes": "n", "external_id": "x"},
    ),
    Call(
        "subscriptions.start_trial",
        (NEWCO, "enterprise"),
        {"actor": "ann", "metadata": {"crm": "1"}, "expires_at": LATER},
    ),
    Call("subscriptions.begin_checkout", (NEWCO, "growth"), {"actor": "ann", "seats": 1}),
    Call("subscriptions.convert", (GLOBEX,), {"actor": "ann", "plan_key": "growth"}),
    Call("subscriptions.change_plan", (ACME, "enterprise"), {"actor": "ann", "version": None}),
    Call("subscriptions.change_plan", (ACME, "growth"), {"actor": "ann", "if_over_quota": "allow"}),
    Call("subscriptions.preview_change", (ACME, "enterprise"), {"version": 1, "now": None}),
    Call("subscriptions.change_seats", (ACME, 4), {"actor": "ann", "expected_revision": None}),
    Call("subscriptions.add_addon", (ACME, ADDON), {"actor": "ann"}),
    Call("subscriptions.remove_addon", (ACME, "extra-seats"), {"actor": "ann"}),
    Call("subscriptions.suspend", (ACME,), {"actor": "ann", "reason": "r", "now": None}),
    Call("subscriptions.cancel", (ACME,), {"actor": "ann", "at_period_end": True}),
    Call(
        "subscriptions.amend",
        (ACME,),
        {"actor": "ann", "notes": "n", "external_id": "e", "metadata": {"a": 1}},
    ),
    Call("subscriptions.amend", (ACME,), {"actor": "ann", "expires_at": LATER}),
    Call("subscriptions.migrate", (ACME,), {"actor": "ann"}),
    Call("overrides.set_feature", (ACME, "sso"), {"enabled": True, "actor": "ann", "reason": "r"}),
    Call(
        "overrides.set_feature",
        (ACME, "export"),
        {"enabled": False, "actor": "ann", "reason": "r", "actions": frozenset({"read"})},
    ),
    Call(
        "overrides.set_limit",
        (ACME, "projects", 40),
        {"actor": "ann", "reason": "r", "expires_at": LATER},
    ),
    Call("overrides.remove", (ACME, "limit", "seats"), {"actor": "ann", "reason": "r"}),
    Call("overrides.list", (ACME,)),
    Call("audit.for_owner", (ACME,)),
    Call("audit.for_target", ("plan:growth",), {"tenant": None}),
    Call("usage.check", (ACME, "projects", 1)),
    Call("usage.consume", (ACME, "api_calls", 3), {"key": None, "actor": "app"}),
    Call("usage.consume", (ACME, "api_calls", 1), {"key": "req-1"}),
    Call("usage.set_gauge", (ACME, "projects", 2)),
    Call("usage.decrease", (ACME, "projects", 1)),
    Call("usage.decrease", (ACME, "projects", 1), {"key": "delete-1"}),
    Call("usage.total", (ACME, "api_calls"), {"period_start": None}),
    Call("usage.counter", (ACME, "api_calls")),
    Call("usage.history", (ACME, "api_calls")),
    Call("usage.records", (ACME, "api_calls")),
    Call("usage.reserve", (ACME, "api_calls", 5), {"ttl": timedelta(minutes=5), "key": "r1"}),
    Call("usage.commit", (ACME, "no-such-reservation"), {"amount": 1}),
    Call("usage.release", (ACME, "no-such-reservation")),
    Call("seats.assign", (ACME, "bob"), {"actor": "ann", "pool": "seats"}),
    Call("seats.unassign", (ACME, "carol"), {"actor": "ann"}),
    Call("seats.list", (ACME,), {"pool": "seats"}),
    Call(
        "contracts.issue",
        (ACME,),
        {
            "title": "Order form",
            "body": "Terms.",
            "signers": SIGNERS,
            "actor": "ann",
            "plan_key": "growth",
            "term": "12 months",
            "amount": "100.00",
            "currency": "EUR",
            "valid_for": timedelta(days=30),
        },
    ),
    Call("contracts.get", (ACME, "no-such-contract")),
    Call("contracts.list", (ACME,)),
    Call("contracts.void", (ACME, "no-such-contract"), {"actor": "ann", "reason": "r"}),
    Call("contracts.open", ("not-a-token",), {"ip": "10.0.0.1", "user_agent": "ua"}),
    Call("contracts.sign", ("not-a-token",), {"typed_name": "Ann"}),
    Call("contracts.decline", ("not-a-token",), {"reason": "no"}),
    Call(
        "contracts.consent",
        ("not-a-token",),
        {"consent_text": "I agree", "consent_version": "1"},
    ),
    Call("billing.assign_plan", (NEWCO, "free"), {"actor": "ann", "seats": None}),
    Call("billing.assign_plan", (NEWCO, "growth"), {"actor": "ann", "key": "upgrade-1"}),
    Call(
        "contracts.issue",
        (ACME,),
        {"title": "Order", "body": "Terms.", "signers": SIGNERS, "actor": "ann", "key": "k1"},
    ),
    Call("billing.cancel", (ACME,), {"actor": "ann"}),
    Call("billing.ensure_deletable", (ACME,)),
    Call("billing.ensure_member_removable", (ACME, "bob")),
    Call("claims_token", (ACME, SIGNING_KEY), {"ttl": timedelta(minutes=5), "audience": "api"}),
    Call(
        "plans.sync",
        (loads_catalog('[plans.free]\nname = "Free"\nstatus = "active"\n'),),
        {"actor": "ann"},
    ),
    Call("contracts.send", (ACME, "no-such-contract"), {"actor": "ann"}),
    Call("contracts.events", (ACME, "no-such-contract")),
    # key arguments: the host's signing key, on a contract that exists
    Call("contracts.checkpoint", (ACME, SEEDED_CONTRACT, SIGNING_KEY), {"now": LATER}),
    Call("contracts.certificate", (ACME, SEEDED_CONTRACT, SIGNING_KEY)),
    Call("contracts.verify", (ACME, SEEDED_CONTRACT)),
    Call("catch_up", (0,)),
]


def seed(ents: Entitlements) -> None:
    for plan in CATALOG:
        ents.plans.define(plan, actor="ann")
    ents.subscriptions.subscribe(ACME, "growth", actor="ann", seats=3)
    ents.subscriptions.start_trial(GLOBEX, "enterprise", actor="ann")
    ents.subscriptions.subscribe(T1_APP, "free", actor="ann")
    ents.overrides.set_limit(ACME, "seats", 8, actor="ann", reason="deal")
    ents.usage.consume(ACME, "api_calls", 2)
    ents.seats.assign(ACME, "carol", actor="ann")
    ents.contracts.issue(ACME, title="Order", body="Terms.", signers=SIGNERS, actor="ann")


def outcome(ents: Entitlements, call: Call) -> tuple[str, BaseException | None]:
    try:
        call.run(ents)
    except EntitlementsError as error:
        return type(error).__name__, error
    except Exception as error:
        return f"ESCAPED {type(error).__name__}: {error!r}"[:300], error
    return "ok", None


@pytest.fixture
def all_stores(make_store):
    """An `Entitlements` on each store whose server is configured, seeded alike."""
    opened = {}
    for kind in STORE_KINDS:
        try:
            store = make_store(kind)
        except pytest.skip.Exception:
            continue
        counter = itertools.count()
        ents = Entitlements(
            store, clock=ManualClock(START), ids=lambda c=counter: f"id{next(c):06d}"
        )
        seed(ents)
        opened[kind] = ents
    yield opened
    for ents in opened.values():
        ents.close()


@pytest.mark.parametrize("metric", ["nope", "sso", "projects"])
def test_a_refused_consume_leaves_nothing_behind(all_stores, metric) -> None:
    for kind, ents in all_stores.items():
        before = ents.store.dump()
        with pytest.raises(EntitlementsError):
            ents.usage.consume(ACME, metric, 10**9)
        assert ents.store.dump() == before, kind


def test_hostile_arguments_are_refused_alike_on_every_store(all_stores) -> None:
    tally: Counter[str] = Counter()
    escapes: list[str] = []
    disagreements: list[str] = []
    changed: list[str] = []

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def explore(data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(CALLS), label="call")
        slots = data.draw(
            st.lists(st.sampled_from(call.slots), min_size=1, max_size=2, unique=True),
            label="slots",
        )
        bad = call.with_values({slot: data.draw(hostile, label=f"slot {slot}") for slot in slots})
        tally["inputs"] += 1
        results = {}
        for kind, ents in all_stores.items():
            before = ents.store.dump()
            result, error = outcome(ents, bad)
            results[kind] = result
            if result.startswith("ESCAPED"):
                escapes.append(f"{kind} {bad.path} {slots}: {result}")
                tally["escapes"] += 1
            audited = isinstance(error, AUDITED_REFUSALS)
            if error is not None and not audited and ents.store.dump() != before:
                changed.append(f"{kind}: {bad.path} {slots} was refused ({result}) but wrote")
                tally["changed"] += 1
        if len(set(results.values())) > 1:
            disagreements.append(f"{bad.path} {slots} {bad}: {results}")
            tally["disagreements"] += 1

    explore()
    print(
        f"\nfuzzed the public API on {', '.join(all_stores)}: "
        f"{tally['inputs']} inputs, {tally['escapes']} escapes, "
        f"{tally['disagreements']} disagreements, {tally['changed']} refused calls that wrote"
    )
    problems = sorted(set(escapes)) + sorted(set(changed)) + disagreements
    assert not problems, "\n".join(problems[:60])


# -- value constructors and the catalog loader ----------------------------------------


@attrs.frozen
class Build:
    """A value constructor with valid arguments."""

    make: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)

    @property
    def slots(self) -> list[int | str]:
        return [*range(len(self.args)), *self.kwargs]


BUILDS = [
    Build(
        Plan,
        ("pro", "Pro"),
        {
            "limits": {"seats": Limit(5)},
            "features": {"sso": True},
            "price": Price("9.99", "EUR"),
            "trial_days": 14,
            "status": "active",
            "owner_kinds": frozenset({"organization"}),
        },
    ),
    Build(Limit, (5,), {"unit": "seats", "kind": "seats", "enforcement": "soft", "combine": "max"}),
    Build(Price, ("9.99", "EUR"), {"cycle": BillingCycle.annual()}),
    Build(Feature, (True,), {"actions": frozenset({"read"})}),
    Build(AddOn, ("extra",), {"limits": {"seats": 2}, "features": {"sso": True}, "quantity": 2}),
    Build(AddOn, ("season",), {"ends_at": LATER}),
    Build(Owner, ("organization", "acme"), {"tenant": "t1"}),
    Build(Owner.parse, ("t1/organization:acme",)),
    Build(Actor, ("ann",), {"kind": "member", "permissions": frozenset({"subscriptions.manage"})}),
    Build(BillingCycle, ("month", 3)),
    Build(SignerSpec, ("Ann Signer", "ann@example.com"), {"role": "CEO", "order": 1}),
    Build(AccessPolicy, (), {"fallback_plan": "free", "past_due_grace": timedelta(days=3)}),
    Build(
        Override.feature,
        (ACME, "sso"),
        {"enabled": True, "reason": "deal", "actor": "staff:ann", "at": START},
    ),
    Build(
        Override.limit,
        (ACME, "seats"),
        {"value": 9, "reason": "deal", "actor": "staff:ann", "at": START, "expires_at": LATER},
    ),
    Build(
        loads_catalog, ('[plans.pro]\nname = "Pro"\nlimits = { seats = 5 }\n',), {"format": "toml"}
    ),
    Build(loads_catalog, ('{"plans": {"pro": {"name": "Pro"}}}',), {"format": "json"}),
]

documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_value_constructors_refuse_hostile_arguments_with_library_errors(data) -> None:
    build = data.draw(st.sampled_from(BUILDS), label="build")
    slots = data.draw(
        st.lists(st.sampled_from(build.slots), min_size=1, max_size=2, unique=True), label="slots"
    )
    values = {slot: data.draw(hostile, label=f"slot {slot}") for slot in slots}
    args = tuple(values.get(i, a) for i, a in enumerate(build.args))
    kwargs = {k: values.get(k, v) for k, v in build.kwargs.items()}
    with contextlib.suppress(EntitlementsError):
        build.make(*args, **kwargs)


@settings(max_examples=150, deadline=None)
@given(documents, st.sampled_from(["json", "toml"]))
def test_the_catalog_loader_refuses_any_document_with_library_errors(document, format) -> None:
    import json

    text = json.dumps({"plans": {"pro": document}} if format == "json" else document)
    with contextlib.suppress(EntitlementsError):
        loads_catalog(text, format)


def test_the_issue_examples_are_refused_naming_the_field(all_stores) -> None:
    with pytest.raises(InvalidInput) as kinds:
        Plan("org", "Org", owner_kinds="organization")
    assert kinds.value.field == "owner_kinds"
    with pytest.raises(InvalidInput) as price:
        Plan("org", "Org", price=9.99)
    assert price.value.field == "plan.price"
    for kind, ents in all_stores.items():
        with pytest.raises(InvalidInput) as feature:
            ents.allows(ACME, ["sso"])
        assert feature.value.field == "feature", kind
        with pytest.raises(InvalidInput) as cycle:
            ents.subscriptions.subscribe(NEWCO, "growth", actor="ann", cycle="monthly")
        assert cycle.value.field == "cycle", kind
        with pytest.raises(InvalidInput) as key:
            ents.subscriptions.subscribe(NEWCO, ["growth"], actor="ann")
        assert key.value.field == "plan_key", kind
        assert ents.subscriptions.find(NEWCO) is None, kind


def _nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for _ in range(depth):
        document = {"k": document}
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_nested(18), "is nested too deeply"),
        ({"n": 2**60}, r"numbers must be within ±2\*\*53"),
        ({"x": [1.0, float("nan")]}, "numbers must be finite"),
        ({"x": {"y": {1, 2}}}, "must hold only JSON values, not set"),
        ({1: "x"}, "metadata key"),
        ({"x": "y" * 70_000}, "characters"),
    ],
)
def test_a_document_json_columns_cannot_keep_exactly_is_refused(document, message):
    from entitlements.domain.checks import check_document

    with pytest.raises(InvalidInput, match=message):
        check_document(document, "metadata")


def test_a_document_json_keeps_exactly_is_accepted():
    from entitlements.domain.checks import check_document

    document = {"a": [1, 2.5, None, True, "x", {"b": []}], "c": (1, 2), "n": -(2**53)}
    assert check_document(document, "metadata") == document
    assert check_document(_nested(15), "metadata") == _nested(15)


# -- the constructor, and arguments the library keeps for later ---------------------------

FRESH_STORE = "fresh-memory-store"
"""Stands for a new `MemoryStore` per example."""

BUILD_ENTITLEMENTS = Build(
    Entitlements,
    (FRESH_STORE,),
    {
        "clock": ManualClock(START),
        "policy": AccessPolicy(fallback_plan="free"),
        "authorizer": PermissionRules(),
        "listeners": (print,),
        "cache_size": 100,
        "telemetry": None,
        "ids": None,
        "payment_provider": FakePaymentProvider(ManualClock(START)),
        "one_free_plan_per_tenant": False,
        "max_staleness": 0,
        "when_unreachable": "serve_stale",
    },
)


def _first_calls(ents: Entitlements) -> None:
    """What a host does first with a new `Entitlements`: each either answers or raises a
    library error, never fails on what the constructor accepted."""
    staff = Actor("ann", "staff", frozenset({"subscriptions.manage", "plans.manage"}))
    for call in (
        lambda: ents.allows(ACME, "premium"),
        lambda: ents.subscriptions.find(ACME),
        lambda: ents.plans.define(CATALOG[0], actor=staff),
        lambda: ents.subscriptions.subscribe(ACME, CATALOG[0].key, actor=staff),
        lambda: ents.limit(ACME, "seats", default=0),
        lambda: ents.process_due(),
    ):
        with contextlib.suppress(EntitlementsError):
            call()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_constructor_refuses_what_would_fail_at_a_later_call(data) -> None:
    """A constructor argument the library cannot use raises `InvalidInput` naming it, at
    construction: not an ``AttributeError`` at the first call (``store=None``,
    ``policy='strict'``, ``clock=object()`` did)."""
    build = BUILD_ENTITLEMENTS
    slots = data.draw(
        st.lists(st.sampled_from(build.slots), min_size=1, max_size=2, unique=True), label="slots"
    )
    values = {slot: data.draw(hostile, label=f"slot {slot}") for slot in slots}
    args = [values.get(i, a) for i, a in enumerate(build.args)]
    args = [MemoryStore() if isinstance(a, str) and a == FRESH_STORE else a for a in args]
    kwargs = {k: values.get(k, v) for k, v in build.kwargs.items()}
    refused: InvalidInput | None = None
    try:
        ents = Entitlements(*args, **kwargs)
    except InvalidInput as error:
        refused = error
    if refused is not None:
        if len(slots) == 1:
            assert refused.field == ("store" if slots[0] == 0 else slots[0])
        return
    try:
        _first_calls(ents)
    finally:
        ents.close()


def test_the_issue_examples_of_constructors_and_keys_are_refused_naming_the_argument(
    all_stores,
) -> None:
    for given_, field in (
        ({"store": None}, "store"),
        ({"policy": "strict"}, "policy"),
        ({"clock": object()}, "clock"),
    ):
        arguments: dict[str, Any] = {"store": MemoryStore(), **given_}
        with pytest.raises(InvalidInput) as refused:
            Entitlements(arguments.pop("store"), **arguments)
        assert refused.value.field == field
    for kind, ents in all_stores.items():
        contract = ents.contracts.list(ACME)[0].id
        before = ents.store.dump()
        with pytest.raises(InvalidInput) as checkpoint:
            ents.contracts.checkpoint(ACME, contract, key="notakey")
        assert checkpoint.value.field == "key", kind
        with pytest.raises(InvalidInput) as certificate:
            ents.contracts.certificate(ACME, contract, key=None)
        assert certificate.value.field == "key", kind
        with pytest.raises(InvalidInput) as member:
            ents.billing.ensure_member_removable(ACME, member=None)
        assert member.value.field == "member", kind
        assert ents.store.dump() == before, kind


def test_list_arguments_of_migrations_and_delivery_refuse_what_is_not_a_list(all_stores) -> None:
    for kind, ents in all_stores.items():
        before = ents.store.dump()
        with pytest.raises(InvalidInput, match="from_versions"):
            ents.migrations.create("growth", from_versions=[None], actor="ann")
        for tenants in (5, "eu", [5], [""]):
            with pytest.raises(InvalidInput, match="tenants"):
                ents.notifications.deliver(lambda n: None, tenants=tenants)
        assert ents.store.dump() == before, kind


def test_batch_calls_refuse_one_item_or_none_where_a_collection_is_due(all_stores) -> None:
    one = Owner("organization", "acme")
    for kind, ents in all_stores.items():
        before = ents.store.dump()
        for owners in (None, one, "acme"):
            with pytest.raises(InvalidInput, match="owners: must be a collection of Owner"):
                ents.invoices.finalize_many(owners, actor="ann")
        for events in (None, 5, "api"):
            with pytest.raises(InvalidInput, match="events: must be a collection of UsageEvent"):
                ents.usage.consume_many(events)
        assert ents.store.dump() == before, kind
