"""Hypothesis strategies for the library's values, for integrators' property tests.

Installed with the package, they are registered through hypothesis' entry point, so
``st.from_type(Plan)``, ``st.from_type(Owner)`` and friends work out of the box::

    from hypothesis import given, strategies as st
    from entitlements import Plan

    @given(st.from_type(Plan))
    def test_every_plan_round_trips_through_my_admin_form(plan): ...
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
from hypothesis import strategies as st

from entitlements.catalog import Catalog
from entitlements.domain.addon import AddOn
from entitlements.domain.billing_cycle import BillingCycle, CycleUnit
from entitlements.domain.contracts.contract import (
    Contract,
    ContractStatus,
    Signer,
    SignerStatus,
    Terms,
)
from entitlements.domain.override import Override
from entitlements.domain.owner import Owner
from entitlements.domain.plan import (
    Action,
    ByContract,
    Combine,
    Enforcement,
    Feature,
    Limit,
    LimitKind,
    Plan,
    PlanStatus,
    Price,
)
from entitlements.domain.subscription import (
    CREATION_EVENTS,
    NEW,
    PREVIOUS,
    RULES,
    SAME,
    TRANSITIONS,
    Event,
    Subscription,
    SubscriptionStatus,
    create,
    transition,
)
from entitlements.errors import EntitlementsError

__all__ = [
    "OPERATIONS",
    "addons",
    "billing_cycles",
    "catalogs",
    "contracts",
    "features",
    "instants",
    "keys",
    "limits",
    "operation_sequences",
    "overrides",
    "owners",
    "plans",
    "prices",
    "subscriptions",
    "usage_streams",
]

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

_NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_.&()éüßøłñ中文"


def instants(start: datetime = EPOCH, days: int = 3650) -> st.SearchStrategy[datetime]:
    """Aware UTC datetimes (microseconds included) within ``days`` after ``start``."""
    return st.integers(min_value=0, max_value=days * 86_400 * 10**6).map(
        lambda us: start + timedelta(microseconds=us)
    )


def keys() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z][a-z0-9_\-]{0,15}", fullmatch=True)


def owners(
    kinds: Sequence[str] = ("organization", "workspace", "app", "customer"),
) -> st.SearchStrategy[Owner]:
    return st.builds(
        Owner,
        st.sampled_from(list(kinds)),
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,11}", fullmatch=True),
        st.one_of(st.none(), st.sampled_from(["tenant-a", "tenant-b"])),
    )


def limits() -> st.SearchStrategy[Limit]:
    return st.builds(
        Limit,
        st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
        st.sampled_from(["", "seats", "calls", "bytes", "document units"]),
        st.sampled_from(list(LimitKind)),
        st.sampled_from(list(Enforcement)),
        st.sampled_from(list(Combine)),
    )


def features() -> st.SearchStrategy[Feature]:
    return st.builds(
        Feature,
        st.booleans(),
        st.one_of(st.none(), st.frozensets(st.sampled_from(list(Action)), min_size=1)),
    )


def billing_cycles() -> st.SearchStrategy[BillingCycle]:
    return st.builds(
        BillingCycle, st.sampled_from(list(CycleUnit)), st.integers(min_value=1, max_value=24)
    )


def prices() -> st.SearchStrategy[Price]:
    amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)
    return st.builds(
        Price, amounts, st.sampled_from(["EUR", "USD", "GBP", "JPY", "CHF"]), billing_cycles()
    )


def plans(status: PlanStatus | None = None) -> st.SearchStrategy[Plan]:
    return st.builds(
        Plan,
        keys(),
        st.text(_NAME_ALPHABET, min_size=1, max_size=30).filter(lambda s: bool(s.strip())),
        st.dictionaries(keys(), limits(), max_size=4),
        st.dictionaries(keys(), features(), max_size=4),
        st.one_of(st.none(), prices(), st.builds(ByContract, billing_cycles())),
        st.integers(min_value=0, max_value=365),
        st.just(status) if status is not None else st.sampled_from(list(PlanStatus)),
        st.frozensets(
            st.sampled_from(["organization", "workspace", "app", "customer"]), max_size=2
        ),
    )


def catalogs(min_size: int = 1, max_size: int = 5) -> st.SearchStrategy[Catalog]:
    return st.lists(plans(), min_size=min_size, max_size=max_size, unique_by=lambda p: p.key).map(
        lambda ps: Catalog(tuple(ps))
    )


def addons() -> st.SearchStrategy[AddOn]:
    return st.builds(
        AddOn,
        keys(),
        st.dictionaries(keys(), st.one_of(st.none(), st.integers(0, 1000)), max_size=3),
        st.dictionaries(keys(), features(), max_size=2),
        st.integers(min_value=1, max_value=10),
    )


def overrides(owner: Owner | None = None, at: datetime = EPOCH) -> st.SearchStrategy[Override]:
    who = st.just(owner) if owner is not None else owners()
    expiry = st.one_of(st.none(), st.integers(1, 10**6).map(lambda s: at + timedelta(seconds=s)))
    feature = st.builds(
        lambda o, k, on, exp: Override.feature(
            o, k, enabled=on, reason="test", actor="staff:test", at=at, expires_at=exp
        ),
        who,
        keys(),
        st.booleans(),
        expiry,
    )
    limit = st.builds(
        lambda o, k, v, exp: Override.limit(
            o, k, value=v, reason="test", actor="staff:test", at=at, expires_at=exp
        ),
        who,
        keys(),
        st.one_of(st.none(), st.integers(0, 10**6)),
        expiry,
    )
    return st.one_of(feature, limit)


OPERATIONS: tuple[Event, ...] = tuple(e for e in Event if e not in CREATION_EVENTS)


def _path(source: str, target: str) -> list[Event] | None:
    """The shortest sequence of events leading from ``source`` to ``target`` in the table."""
    frontier: list[tuple[str, list[Event]]] = [(source, [])]
    seen = {source}
    while frontier:
        state, path = frontier.pop(0)
        if state == target:
            return path
        for rule in TRANSITIONS:
            if (
                state in rule.sources
                and rule.target not in (SAME, PREVIOUS)
                and rule.target not in seen
            ):
                seen.add(rule.target)
                frontier.append((rule.target, [*path, rule.event]))
    return None


@st.composite
def subscriptions(draw: st.DrawFn, status: SubscriptionStatus | None = None) -> Subscription:
    """A subscription in a state reached through the transition table (never one the
    table forbids); ``status`` asks for a particular status."""
    owner = draw(owners())
    now = draw(instants(days=365))
    cycle = draw(billing_cycles())
    fields: dict[str, Any] = {
        "cycle": cycle,
        "cycle_anchor": now,
        "current_period": cycle.period_containing(now, now),
        "seats": draw(st.one_of(st.none(), st.integers(1, 500))),
        "trial_ends_at": now + timedelta(days=draw(st.integers(1, 120))),
    }
    if status is None:
        start = draw(st.sampled_from(sorted(CREATION_EVENTS)))
        walk = draw(st.lists(st.sampled_from(OPERATIONS), max_size=12))
    else:
        start, *walk = draw(st.sampled_from([p for p in (_path(NEW, status.value),) if p]))
    if start is not Event.START_TRIAL:
        fields["trial_ends_at"] = None
    sub = create(
        start,
        id=draw(st.uuids()).hex,
        owner=owner,
        plan_key=draw(keys()),
        plan_version=1,
        now=now,
        current=None,
        **fields,
    )
    for event in walk:
        if sub.status.value not in RULES[event].sources:
            continue
        now = now + timedelta(hours=draw(st.integers(0, 2000)))
        try:
            sub = transition(sub, event, now)
        except EntitlementsError:
            continue
    return attrs.evolve(sub, revision=draw(st.integers(1, 50)))


@st.composite
def operation_sequences(draw: st.DrawFn, max_size: int = 20) -> list[tuple[str, Any]]:
    """Valid-looking service calls as data: ``("start_trial", plan_key)``, ``("advance",
    timedelta)``... for driving an `Entitlements` in a property test. Some will be refused
    by the state machine; that is part of what such tests check."""
    plan_keys = ["free", "growth", "enterprise"]
    ops = st.one_of(
        st.tuples(st.just("start_trial"), st.sampled_from(plan_keys)),
        st.tuples(st.just("subscribe"), st.sampled_from(plan_keys)),
        st.tuples(st.just("convert"), st.sampled_from(plan_keys)),
        st.tuples(st.just("change_plan"), st.sampled_from(plan_keys)),
        st.tuples(st.just("change_seats"), st.integers(1, 50)),
        st.tuples(
            st.sampled_from(
                [
                    "suspend",
                    "resume",
                    "mark_past_due",
                    "settle",
                    "cancel",
                    "cancel_at_period_end",
                    "undo_cancel",
                    "expire",
                ]
            ),
            st.none(),
        ),
        st.tuples(st.just("advance"), st.integers(1, 100).map(lambda d: timedelta(days=d))),
    )
    result: list[tuple[str, Any]] = draw(st.lists(ops, max_size=max_size))
    return result


def _hypothesis_setup_hook() -> None:
    """Called by hypothesis (entry point) so ``st.from_type`` knows our types."""
    st.register_type_strategy(Owner, owners())
    st.register_type_strategy(Limit, limits())
    st.register_type_strategy(Feature, features())
    st.register_type_strategy(Price, prices())
    st.register_type_strategy(BillingCycle, billing_cycles())
    st.register_type_strategy(Plan, plans())
    st.register_type_strategy(Catalog, catalogs())
    st.register_type_strategy(AddOn, addons())
    st.register_type_strategy(Subscription, subscriptions())
    st.register_type_strategy(Override, overrides())
    st.register_type_strategy(Contract, contracts())
    # The library builds contracts, billing, claims and the sweep on first use; a property
    # test times each example, so their imports are paid here rather than by whichever
    # example first touches them (a deadline exceeded once, "unreliable timings").
    for module in ("contracts", "billing", "claims", "sweep"):
        importlib.import_module(f"entitlements.service.{module}")


@st.composite
def usage_streams(
    draw: st.DrawFn,
    metrics: Sequence[str] = ("api_calls", "projects"),
    max_size: int = 30,
) -> list[tuple[str, dict[str, Any]]]:
    """Usage as a host produces it: consumptions (some retried with the same idempotency
    key, repeating the request exactly, as a retry does), reservations committed or
    released, and time passing. Each step is ``(kind, arguments)`` with kind ``consume``,
    ``reserve``, ``commit``, ``release`` or ``advance``."""
    requests = {
        f"req-{i}": (draw(st.sampled_from(list(metrics))), draw(st.integers(1, 50)))
        for i in range(6)
    }
    keyed = st.sampled_from(sorted(requests)).map(
        lambda k: ("consume", {"metric": requests[k][0], "amount": requests[k][1], "key": k})
    )
    step: st.SearchStrategy[tuple[str, dict[str, Any]]] = st.one_of(
        st.builds(
            lambda m, n: ("consume", {"metric": m, "amount": n, "key": None}),
            st.sampled_from(list(metrics)),
            st.integers(1, 50),
        ),
        keyed,
        st.builds(
            lambda m, n: ("reserve", {"metric": m, "amount": n}),
            st.sampled_from(list(metrics)),
            st.integers(1, 50),
        ),
        st.builds(lambda n: ("commit", {"amount": n}), st.integers(0, 50)),
        st.just(("release", {})),
        st.builds(lambda d: ("advance", {"delta": timedelta(days=d)}), st.integers(1, 40)),
    )
    return draw(st.lists(step, max_size=max_size))


_STAGE_PATH: dict[ContractStatus, tuple[str, ...]] = {
    ContractStatus.CREATED: (),
    ContractStatus.SENT: ("send",),
    ContractStatus.VIEWED: ("send", "open"),
    ContractStatus.SIGNED: ("send", "sign_first"),
    ContractStatus.COMPLETED: ("send", "sign_all"),
    ContractStatus.DECLINED: ("send", "decline"),
    ContractStatus.VOIDED: ("send", "void"),
    ContractStatus.EXPIRED: ("send", "expire"),
}


@st.composite
def contracts(draw: st.DrawFn, stage: ContractStatus | None = None) -> Contract:
    """A contract at any stage of its lifecycle (or the one asked for), reached through
    the contract's own transition rules."""
    wanted = draw(st.sampled_from(list(ContractStatus))) if stage is None else stage
    count = draw(st.integers(2 if wanted is ContractStatus.SIGNED else 1, 4))
    at = draw(instants(days=365))
    signers = tuple(
        Signer(
            f"s{i + 1}",
            f"{i:064x}",
            f"{i + 100:064x}",
            draw(st.sampled_from(["", "CEO", "CFO"])),
            i + 1,
        )
        for i in range(count)
    )
    contract = Contract(
        id=draw(st.uuids()).hex,
        owner=draw(owners()),
        title=draw(st.text(_NAME_ALPHABET, min_size=1, max_size=40).filter(str.strip)),
        body=draw(st.text(_NAME_ALPHABET + "\n\t", min_size=1, max_size=200).filter(str.strip)),
        terms=Terms(),
        signers=signers,
        sequential=draw(st.booleans()),
        created_at=at,
        expires_at=at + timedelta(days=30),
    ).with_hashes()
    for step in _STAGE_PATH[wanted]:
        if step == "send":
            contract = attrs.evolve(
                contract,
                status=contract.check("send"),
                signers=tuple(
                    attrs.evolve(s, status=SignerStatus.SENT, token_hash=f"{i:064x}")
                    for i, s in enumerate(contract.signers)
                ),
            )
        elif step in ("void", "expire"):
            contract = attrs.evolve(contract, status=contract.check(step))
        elif step == "decline":
            contract, _ = contract.after_signer(contract.signers[0], "decline")
        elif step == "open":
            contract, _ = contract.after_signer(contract.signers[0], "open")
        else:
            for signer in contract.signers[: 1 if step == "sign_first" else None]:
                for event in ("open", "consent", "sign"):
                    contract, signer = contract.after_signer(signer, event)
    return contract
