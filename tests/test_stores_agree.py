"""A hypothesis state machine drives the memory store and a SQL store side by side through
the service and asserts they give the same answers after every step."""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import timedelta

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from entitlements import (
    AccessPolicy,
    Action,
    Entitlements,
    EntitlementsError,
    Limit,
    ManualClock,
    MemoryStore,
    Owner,
)
from entitlements.adapters.sql import SqlStore
from entitlements.testing.contract import CATALOG, START

OWNERS = [Owner("organization", "a"), Owner("organization", "b"), Owner("app", "1", tenant="t1")]
PLANS = [p.key for p in CATALOG]
FEATURES = ["premium", "export", "sso", "beta"]
LIMITS = ["seats", "projects", "api_calls"]


def sql_store_for(kind: str, path) -> SqlStore:
    if kind == "sqlite":
        store = SqlStore.from_url(f"sqlite:///{path}")
        store.create_schema()
        return store
    from conftest import SERVERS, wipe

    store = SqlStore.from_url(os.environ[SERVERS[kind]])
    store.create_schema()
    wipe(store)
    return store


class StoresAgree(RuleBasedStateMachine):
    kind = "sqlite"
    workdir = None

    @initialize()
    def setup(self) -> None:
        self.clock = ManualClock(START)
        counter_a, counter_b = itertools.count(), itertools.count()
        policy = AccessPolicy(fallback_plan="free")
        self.memory = Entitlements(
            MemoryStore(), clock=self.clock, policy=policy, ids=lambda: f"id{next(counter_a):06d}"
        )
        self.sql_store = sql_store_for(self.kind, self.workdir / f"agree-{uuid.uuid4().hex}.db")
        self.sql = Entitlements(
            self.sql_store, clock=self.clock, policy=policy, ids=lambda: f"id{next(counter_b):06d}"
        )
        for plan in CATALOG:
            self.both(lambda e, plan=plan: e.plans.define(plan, actor="staff"))

    def teardown(self) -> None:
        if hasattr(self, "sql"):
            self.sql.close()  # its change-feed follower and listener go with it
        if hasattr(self, "sql_store"):
            self.sql_store.engine.dispose()

    def both(self, call) -> None:
        outcomes = []
        for ents in (self.memory, self.sql):
            try:
                outcomes.append(("ok", call(ents)))
            except EntitlementsError as error:
                outcomes.append(("error", type(error).__name__, str(error)))
        assert outcomes[0] == outcomes[1]

    @rule(
        owner=st.sampled_from(OWNERS),
        plan=st.sampled_from(PLANS),
        how=st.sampled_from(["start_trial", "subscribe", "begin_checkout"]),
    )
    def start(self, owner, plan, how) -> None:
        self.both(lambda e: getattr(e.subscriptions, how)(owner, plan, actor="staff"))

    @rule(owner=st.sampled_from(OWNERS), plan=st.sampled_from(PLANS), seats=st.integers(1, 30))
    def convert(self, owner, plan, seats) -> None:
        self.both(
            lambda e: e.subscriptions.convert(owner, actor="staff", plan_key=plan, seats=seats)
        )

    @rule(owner=st.sampled_from(OWNERS), plan=st.sampled_from(PLANS))
    def change_plan(self, owner, plan) -> None:
        self.both(lambda e: e.subscriptions.change_plan(owner, plan, actor="staff"))

    @rule(owner=st.sampled_from(OWNERS), seats=st.integers(-1, 40))
    def change_seats(self, owner, seats) -> None:
        self.both(lambda e: e.subscriptions.change_seats(owner, seats, actor="staff"))

    @rule(
        owner=st.sampled_from(OWNERS),
        event=st.sampled_from(
            [
                "suspend",
                "resume",
                "mark_past_due",
                "settle",
                "cancel",
                "undo_cancel",
                "expire",
                "fail",
                "migrate",
            ]
        ),
    )
    def lifecycle(self, owner, event) -> None:
        self.both(lambda e: getattr(e.subscriptions, event)(owner, actor="staff"))

    @rule(owner=st.sampled_from(OWNERS))
    def cancel_at_period_end(self, owner) -> None:
        self.both(lambda e: e.subscriptions.cancel(owner, actor="staff", at_period_end=True))

    @rule(
        owner=st.sampled_from(OWNERS),
        key=st.sampled_from(FEATURES),
        enabled=st.booleans(),
        days=st.one_of(st.none(), st.integers(1, 60)),
    )
    def feature_override(self, owner, key, enabled, days) -> None:
        until = None if days is None else self.clock.now() + timedelta(days=days)
        self.both(
            lambda e: e.overrides.set_feature(
                owner, key, enabled=enabled, actor="staff", reason="r", expires_at=until
            )
        )

    @rule(
        owner=st.sampled_from(OWNERS),
        key=st.sampled_from(LIMITS),
        value=st.one_of(st.none(), st.integers(0, 100)),
    )
    def limit_override(self, owner, key, value) -> None:
        self.both(lambda e: e.overrides.set_limit(owner, key, value, actor="staff", reason="r"))

    @rule(
        owner=st.sampled_from(OWNERS),
        kind=st.sampled_from(["feature", "limit"]),
        key=st.sampled_from(FEATURES + LIMITS),
    )
    def remove_override(self, owner, kind, key) -> None:
        self.both(lambda e: e.overrides.remove(owner, kind, key, actor="staff", reason="done"))

    @rule(plan=st.sampled_from(PLANS), projects=st.integers(0, 50))
    def revise(self, plan, projects) -> None:
        self.both(
            lambda e: e.plans.revise(plan, actor="staff", limits={"projects": Limit(projects)})
        )

    @rule(days=st.integers(1, 120))
    def time_passes(self, days) -> None:
        self.clock.advance(days=days)
        # how many cached snapshots a sweep drops depends on each process's cache, not on
        # what is stored
        self.both(lambda e: attrs.evolve(e.process_due(), snapshots_dropped=0))

    @invariant()
    def same_answers(self) -> None:
        if not hasattr(self, "sql"):
            return
        for owner in OWNERS:
            for ents in (self.memory, self.sql):
                ents.invalidate(owner)
            assert self.memory.subscriptions.history(owner) == self.sql.subscriptions.history(owner)
            assert self.memory.overrides.list(owner) == self.sql.overrides.list(owner)
            assert self.memory.audit.for_owner(owner) == self.sql.audit.for_owner(owner)
            a, b = self.memory.snapshot(owner), self.sql.snapshot(owner)
            for feature in FEATURES:
                for action in (None, *Action):
                    assert a.explain(feature, action) == b.explain(feature, action)
            for name in LIMITS:
                assert a.explain_limit(name) == b.explain_limit(name)
        assert self.memory.plans.list() == self.sql.plans.list()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_memory_and_sql_stores_agree(kind, tmp_path):
    if kind != "sqlite":
        from conftest import server_url

        server_url(kind)

    class Machine(StoresAgree):
        pass

    Machine.kind = kind
    Machine.workdir = tmp_path
    profile = settings()
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=max(10, profile.max_examples // 4),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(profile.suppress_health_check),
        ),
    )
