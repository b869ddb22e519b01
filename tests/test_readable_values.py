"""What a person sees when printing a decision, a snapshot or an error: one line with the
answer and why, a short summary, the message staff act on — never an object dump."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from entitlements import (
    Entitlements,
    EntitlementsError,
    Feature,
    IllegalTransition,
    InvalidInput,
    Limit,
    LimitExceeded,
    ManualClock,
    MemoryStore,
    Owner,
    Plan,
    UnknownPlan,
)

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ACME = Owner("organization", "acme")


@pytest.fixture
def ents():
    ents = Entitlements(MemoryStore(), clock=ManualClock(START))
    ents.plans.define(
        Plan(
            "pro",
            "Pro",
            limits={
                "seats": Limit(5),
                "api_calls": Limit(2, kind="metered"),
                "storage": Limit.unlimited("GB"),
            },
            features={"sso": True, "reports": Feature(actions={"read"})},
            status="active",
        ),
        actor="staff:ann",
    )
    ents.subscriptions.start_trial(ACME, "pro", actor="staff:ann", trial_days=14)
    yield ents
    ents.close()


def test_a_feature_decision_prints_its_answer_and_why(ents):
    assert str(ents.explain(ACME, "sso")) == "sso: allowed by plan pro v1 [plan, trialing]"
    assert str(ents.explain(ACME, "reports", "create")) == (
        "reports (create): denied: plan pro v1; allows only read [action_restricted, trialing]"
    )
    assert str(ents.explain(ACME, "nope")) == (
        "nope: denied: no plan, add-on or override grants it [unknown, trialing]"
    )


def test_a_limit_decision_prints_its_value(ents):
    assert (
        str(ents.explain_limit(ACME, "seats")) == "seats: limit 5 from plan pro v1 [plan, trialing]"
    )
    assert str(ents.explain_limit(ACME, "storage")).startswith("storage: limit unlimited from plan")


def test_a_decision_without_a_subscription_says_so():
    ents = Entitlements(MemoryStore(), clock=ManualClock(START))
    text = str(ents.explain(ACME, "sso"))
    assert text.startswith("sso: denied: ")
    assert text.endswith("no subscription]")


def test_a_decision_repr_is_one_line_of_plain_values(ents):
    text = repr(ents.explain(ACME, "reports", "create"))
    assert text == (
        "Decision('reports', False, action='create', reason='action_restricted', "
        "source='plan', status='trialing', detail='plan pro v1; allows only read')"
    )


def test_a_snapshot_prints_plan_grants_and_validity(ents):
    lines = str(ents.snapshot(ACME)).splitlines()
    assert lines == [
        "organization:acme: plan pro v1, trialing (full access)",
        "  features: reports (read), sso",
        "  limits: api_calls=2, seats=5, storage=unlimited",
        "  resolved 2026-03-01 09:00:00 UTC, valid until 2026-03-15 09:00:00 UTC",
    ]


def test_a_snapshot_repr_leaves_out_its_internals(ents):
    text = repr(ents.snapshot(ACME))
    assert text.startswith("Snapshot('organization:acme', plan='pro v1', status='trialing'")
    assert "valid_until='2026-03-15 09:00:00 UTC'" in text
    assert "_full" not in text
    assert "frozenset" not in text
    assert "\n" not in text


def _raised(call) -> EntitlementsError:
    with pytest.raises(EntitlementsError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        (UnknownPlan, lambda ents: ents.plans.get("enterprise")),
        (InvalidInput, lambda ents: ents.subscriptions.get(Owner("", "acme"))),
        (IllegalTransition, lambda ents: ents.subscriptions.settle(ACME, actor="staff:ann")),
        (LimitExceeded, lambda ents: ents.usage.consume(ACME, "api_calls", 3)),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_an_error_prints_its_message_and_reprs_as_its_type_and_message(ents, kind, call):
    error = _raised(lambda: call(ents))
    assert isinstance(error, kind)
    assert str(error) == error.message
    assert repr(error) == f"{type(error).__name__}({error.message!r})"
    assert "\n" not in str(error)
