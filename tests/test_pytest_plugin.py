"""The pytest plugin's fixtures, exercised in a test suite of their own (pytester)."""

from __future__ import annotations


def test_fixtures_are_available_to_any_test_suite(pytester):
    pytester.makepyfile(
        """
        from entitlements import Owner, Plan, Limit, SubscriptionStatus

        def test_trial_expires(entitlements_app, entitlements_clock):
            entitlements_app.plans.define(
                Plan("pro", "Pro", limits={"seats": Limit(3)}, status="active"), actor="t"
            )
            owner = Owner("organization", "o1")
            entitlements_app.subscriptions.start_trial(owner, "pro", actor="t")
            assert entitlements_app.limit(owner, "seats") == 3
            entitlements_clock.advance(days=91)
            entitlements_app.process_due()
            assert entitlements_app.subscriptions.get(owner).status is SubscriptionStatus.EXPIRED

        def test_each_test_gets_a_fresh_store(entitlements_memory_store, entitlements_app):
            assert entitlements_app.store is entitlements_memory_store
            assert entitlements_app.plans.list() == []

        def test_a_sqlite_store_in_tmp_path(entitlements_sqlite_store, tmp_path):
            from entitlements import Entitlements, Plan

            ents = Entitlements(entitlements_sqlite_store)
            ents.plans.define(Plan("p", "P", status="active"), actor="t")
            assert (tmp_path / "entitlements.db").exists()
            assert [p.key for p in ents.plans.list()] == ["p"]

        def test_the_fake_provider_takes_checkouts(entitlements_app, entitlements_payment_provider):
            from decimal import Decimal
            from entitlements import Owner, Plan, Price

            entitlements_app.plans.define(
                Plan("paid", "Paid", price=Price(Decimal("9"), "EUR"), status="active"), actor="t"
            )
            owner = Owner("workspace", "w")
            started = entitlements_app.billing.assign_plan(owner, "paid", actor="t")
            entitlements_payment_provider.complete_checkout(started.checkout.id)
            entitlements_payment_provider.deliver(entitlements_app)
            assert entitlements_app.subscriptions.get(owner).status.value == "active"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
