"""Reading entitlements through OpenFeature (targeting key = owner)."""

from __future__ import annotations

import pytest

from catalog import build
from entitlements import InvalidInput, Owner

openfeature = pytest.importorskip("openfeature", reason="the openfeature extra is not installed")

from openfeature import api  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.exception import ErrorCode  # noqa: E402

from entitlements.openfeature import EntitlementsProvider  # noqa: E402

ACME = Owner("organization", "acme")


@pytest.fixture
def client():
    ents, _ = build()
    ents.subscriptions.subscribe(ACME, "free", actor="staff")
    ents.subscriptions.subscribe(Owner("app", "1", tenant="t1"), "enterprise", actor="staff")
    api.set_provider(EntitlementsProvider(ents))
    yield api.get_client()
    api.clear_providers()


def ctx(key):
    return EvaluationContext(targeting_key=key)


def test_boolean_flags_are_features_and_explain_themselves(client):
    details = client.get_boolean_details("premium:read", False, ctx("organization:acme"))
    assert details.value is True
    assert details.reason == "plan"
    assert details.variant == "plan"
    assert client.get_boolean_value("premium:create", True, ctx("organization:acme")) is False
    assert client.get_boolean_value("sso", False, ctx("t1/app:1")) is True


def test_unknown_features_fail_closed_even_with_a_true_default(client):
    details = client.get_boolean_details("teleport", True, ctx("organization:acme"))
    assert details.value is False
    assert details.reason == "unknown"


def test_integer_flags_are_limits(client):
    assert client.get_integer_value("projects", -1, ctx("organization:acme")) == 3
    unlimited = client.get_integer_details("projects", -1, ctx("t1/app:1"))
    assert unlimited.value == -1
    assert unlimited.flag_metadata["unlimited"] is True


def test_missing_or_bad_targeting_keys_are_errors(client):
    assert (
        client.get_boolean_details("premium", True, EvaluationContext()).error_code
        is ErrorCode.TARGETING_KEY_MISSING
    )
    assert (
        client.get_boolean_details("premium", True, ctx("acme")).error_code
        is ErrorCode.INVALID_CONTEXT
    )
    assert (
        client.get_string_details("premium", "x", ctx("organization:acme")).error_code
        is ErrorCode.TYPE_MISMATCH
    )


def test_owner_parse_is_the_inverse_of_str():
    for owner in (ACME, Owner("app", "1", tenant="t1")):
        assert Owner.parse(str(owner)) == owner
    with pytest.raises(InvalidInput):
        Owner.parse("no-colon")
