"""Batch ingestion: ``consume_many`` is consuming the same events one by one, in order —
same outcomes, same stored state — on every store, with hard and soft limits,
idempotency keys, reservations holding units and periods rolling over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from entitlements import (
    Entitlements,
    IdempotencyKeyReused,
    InvalidInput,
    Limit,
    LimitExceeded,
    LimitKind,
    ManualClock,
    Owner,
    Plan,
    UsageEvent,
    UsageOutcome,
)
from entitlements.errors import EntitlementsError, UsageDenied
from entitlements.testing.strategies import usage_streams

START = datetime(2026, 1, 31, 12, tzinfo=UTC)
METRICS = ("api_calls", "projects")
PLAN = Plan(
    "metered",
    "Metered",
    limits={
        "api_calls": Limit(150, kind=LimitKind.METERED),
        "projects": Limit(90, kind=LimitKind.METERED, enforcement="soft"),
    },
    status="active",
)
SINGLE = Owner("organization", "one-by-one")
BATCH = Owner("organization", "batched")


def _decision(decision: Any) -> tuple[Any, ...] | None:
    if decision is None:
        return None
    fields = decision._asdict()
    fields.pop("owner")
    return tuple(fields.values())


def _single(ents: Entitlements, args: dict[str, Any]) -> tuple[Any, ...]:
    try:
        decision = ents.usage.consume(SINGLE, args["metric"], args["amount"], key=args["key"])
    except IdempotencyKeyReused as error:
        return ("refused", type(error).__name__, None)
    except UsageDenied as error:
        return ("refused", type(error).__name__, _decision(error.decision))
    outcome = "duplicate" if decision.duplicate else "accepted"
    return (outcome, None, _decision(decision))


def _batched(ents: Entitlements, steps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    results = ents.usage.consume_many(
        [UsageEvent(BATCH, s["metric"], s["amount"], key=s["key"]) for s in steps]
    )
    out = []
    for result in results:
        error = None if result.error is None else type(result.error).__name__
        decision = None if error == "IdempotencyKeyReused" else _decision(result.decision)
        out.append((result.outcome.value, error, decision))
    return out


def _state(ents: Entitlements, owner: Owner) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for metric in METRICS:
        counters = ents.usage.history(owner, metric)
        state[metric] = [(c.period_start, c.used, c.reserved) for c in counters]
        state[f"{metric} records"] = [
            (r.amount, r.period_start, r.at, r.key)
            for c in counters
            for r in ents.usage.records(owner, metric, c.period_start)
        ]
    # in time order; events of one instant in no particular order (a batch settles a
    # metric's expired reservations before it decides the batch's events of any metric)
    state["audit"] = sorted((e.at, e.action, e.reason or "") for e in ents.audit.for_owner(owner))
    return state


class _Run:
    """The same stream for two owners: one consumes step by step, the other takes each
    run of consecutive consumptions as one batch."""

    def __init__(self, ents: Entitlements, clock: ManualClock) -> None:
        self.ents, self.clock = ents, clock
        self.held: dict[Owner, list[str]] = {SINGLE: [], BATCH: []}
        self.pending: list[dict[str, Any]] = []
        self.single: list[tuple[Any, ...]] = []
        self.batched: list[tuple[Any, ...]] = []

    def flush(self) -> None:
        if self.pending:
            self.batched.extend(_batched(self.ents, self.pending))
            self.pending = []

    def step(self, kind: str, args: dict[str, Any]) -> None:
        if kind == "consume":
            self.single.append(_single(self.ents, args))
            self.pending.append(args)
            return
        self.flush()
        for owner in (SINGLE, BATCH):
            self._other(owner, kind, args)

    def _other(self, owner: Owner, kind: str, args: dict[str, Any]) -> None:
        usage, held = self.ents.usage, self.held[owner]
        try:
            if kind == "reserve":
                held.append(usage.reserve(owner, args["metric"], args["amount"]).id)
            elif kind == "commit" and held:
                usage.commit(owner, held.pop(), args["amount"])
            elif kind == "release" and held:
                usage.release(owner, held.pop())
        except EntitlementsError:
            pass
        if kind == "advance" and owner is BATCH:
            self.clock.advance(args["delta"])


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "mysql"])
def test_a_batch_is_the_same_events_one_by_one(kind, make_store):
    examples = settings().max_examples  # the profile's: more in CI

    @settings(
        max_examples=examples if kind == "memory" else max(examples // 4, 10),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        deadline=None,
    )
    @given(stream=usage_streams(METRICS, max_size=25))
    def check(stream: list[tuple[str, dict[str, Any]]]) -> None:
        clock = ManualClock(START)
        ents = Entitlements(make_store(kind), clock=clock)
        ents.plans.define(PLAN, actor="staff")
        for owner in (SINGLE, BATCH):
            ents.subscriptions.subscribe(owner, "metered", actor="staff")
        run = _Run(ents, clock)
        for kind_of_step, args in stream:
            run.step(kind_of_step, args)
        run.flush()
        assert run.batched == run.single
        assert _state(ents, BATCH) == _state(ents, SINGLE)

    check()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "mysql"])
def test_a_batch_reports_each_event_and_stops_at_the_hard_limit(kind, make_store):
    ents = Entitlements(make_store(kind), clock=ManualClock(START))
    ents.plans.define(PLAN, actor="staff")
    other = Owner("organization", "other")
    for owner in (BATCH, other):
        ents.subscriptions.subscribe(owner, "metered", actor="staff")
    ents.usage.consume(BATCH, "api_calls", 100, key="earlier")
    results = ents.usage.consume_many(
        [
            UsageEvent(BATCH, "api_calls", 40, key="a"),
            UsageEvent(BATCH, "api_calls", 100, key="earlier"),
            UsageEvent(other, "api_calls", 150),
            UsageEvent(BATCH, "api_calls", 20, key="b"),
            UsageEvent(BATCH, "api_calls", 10, key="c"),
            UsageEvent(BATCH, "api_calls", 40, key="a"),
            UsageEvent(BATCH, "api_calls", 41, key="a"),
            UsageEvent(BATCH, "projects", 95),
        ]
    )
    assert [r.outcome for r in results] == [
        UsageOutcome.ACCEPTED,
        UsageOutcome.DUPLICATE,
        UsageOutcome.ACCEPTED,
        UsageOutcome.REFUSED,
        UsageOutcome.ACCEPTED,
        UsageOutcome.DUPLICATE,
        UsageOutcome.REFUSED,
        UsageOutcome.ACCEPTED,
    ]
    refused = results[3].error
    assert isinstance(refused, LimitExceeded)
    assert (refused.limit, refused.used, refused.requested) == (150, 140, 20)
    assert isinstance(results[6].error, IdempotencyKeyReused)
    assert (results[4].decision.used, results[4].decision.remaining) == (150, 0)
    assert results[7].decision.over_limit
    assert ents.usage.total(BATCH, "api_calls") == 150
    assert ents.usage.total(other, "api_calls") == 150
    assert ents.usage.total(BATCH, "projects") == 95
    assert sorted(r.key or "" for r in ents.usage.records(BATCH, "api_calls")) == [
        "a",
        "c",
        "earlier",
    ]
    assert "usage.over_limit" in [e.action for e in ents.audit.for_owner(BATCH)]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_malformed_events_write_nothing(kind, make_store):
    store = make_store(kind)
    ents = Entitlements(store, clock=ManualClock(START))
    ents.plans.define(PLAN, actor="staff")
    ents.subscriptions.subscribe(BATCH, "metered", actor="staff")
    before = store.dump()
    bad: list[Any] = [
        [UsageEvent(BATCH, "api_calls", 1), UsageEvent(BATCH, "api_calls", 0)],
        [UsageEvent(BATCH, "api_calls", 1), ("organization", "acme", "api_calls", 1)],
        [UsageEvent(BATCH, "api_calls", 1, key="")],
        [UsageEvent(BATCH, "api_calls", 1, at=datetime(2026, 2, 1))],
        [
            UsageEvent(BATCH, "api_calls", 1),
            UsageEvent(Owner("organization", "x", "t2"), "api_calls"),
        ],
    ]
    for events in bad:
        with pytest.raises(InvalidInput):
            ents.usage.consume_many(events)
    assert store.dump() == before
    assert ents.usage.consume_many([]) == []


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "mysql"])
def test_a_batch_counts_each_event_in_the_period_it_happened(kind, make_store):
    clock = ManualClock(START)
    ents = Entitlements(make_store(kind), clock=clock)
    ents.plans.define(PLAN, actor="staff")
    ents.subscriptions.subscribe(BATCH, "metered", actor="staff")
    clock.advance(timedelta(days=40))
    earlier = START + timedelta(days=3)
    results = ents.usage.consume_many(
        [
            UsageEvent(BATCH, "api_calls", 5, at=earlier),
            UsageEvent(BATCH, "api_calls", 7),
        ]
    )
    assert [r.accepted for r in results] == [True, True]
    periods = {c.period_start: c.used for c in ents.usage.history(BATCH, "api_calls")}
    assert sorted(periods.values()) == [5, 7]
    assert results[0].decision.period_start < results[1].decision.period_start
