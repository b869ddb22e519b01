"""The whole lifecycle in one script, on an embedded SQLite database: define plans, put
an organization on a 90-day trial, override a feature, convert to paid, suspend, resume,
cancel at period end, let time pass, and ask "may it do X, and why?" at every step.

Run it with ``python examples/quickstart.py [DATABASE_URL]``. By default it (re)creates
``entitlements-quickstart.db`` in the working directory; open it with ``sqlite3`` to see
exactly what is stored.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from entitlements import (
    AccessPolicy,
    Action,
    Entitlements,
    Feature,
    Limit,
    LimitKind,
    ManualClock,
    Owner,
    Plan,
    Price,
)
from entitlements.adapters.sql import SqlStore


def show(ents: Entitlements, owner: Owner, title: str) -> None:
    snapshot = ents.snapshot(owner)
    status = snapshot.status.value if snapshot.status else "no subscription"
    print(f"\n== {title} [{status}, plan {snapshot.plan_key} v{snapshot.plan_version}]")
    for feature, action in (("export", None), ("export", Action.CREATE), ("sso", None)):
        decision = snapshot.explain(feature, action)
        asked = feature if action is None else f"{feature}:{action.value}"
        verdict = "yes" if decision.allowed else "no "
        print(f"   {asked:<14} {verdict} ({decision.reason.value}: {decision.detail})")
    seats = snapshot.explain_limit("seats")
    print(f"   seats          {seats.value} ({seats.reason.value}: {seats.detail})")


def open_store(url: str | None) -> SqlStore:
    if url is None:
        path = Path("entitlements-quickstart.db")
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    store = SqlStore.from_url(url)
    store.create_schema()
    return store


def main(url: str | None = None) -> None:
    store = open_store(url)
    ents = Entitlements(store, clock=ManualClock(), policy=AccessPolicy(fallback_plan="free"))
    try:
        lifecycle(ents)
    finally:
        # closing every connection lets SQLite fold its -wal/-shm files back into the
        # database file: the folder holds entitlements-quickstart.db alone
        ents.close()
        store.engine.dispose()
    print(f"\nstored in {store.engine.url}")


def lifecycle(ents: Entitlements) -> None:
    clock = ents.runtime.clock
    assert isinstance(clock, ManualClock)
    staff = "staff:ann"

    ents.plans.define(
        Plan(
            "free",
            "Free",
            limits={"seats": Limit(1, "seats", kind=LimitKind.SEATS), "projects": Limit(3)},
            features={"export": Feature(actions=frozenset({Action.READ}))},
            status="active",
        ),
        actor=staff,
    )
    ents.plans.define(
        Plan(
            "business",
            "Business",
            limits={
                "seats": Limit(10, "seats", kind=LimitKind.SEATS),
                "projects": Limit.unlimited(),
            },
            features={"export": True, "sso": True},
            price=Price(Decimal("99.00"), "EUR"),
            status="active",
        ),
        actor=staff,
    )

    acme = Owner("organization", "acme")
    show(ents, acme, "a new organization starts on the fallback plan")

    ents.subscriptions.start_trial(acme, "business", actor=staff, notes="met at the trade fair")
    show(ents, acme, "on a 90-day trial of Business")

    ents.overrides.set_feature(
        acme, "sso", enabled=False, actor=staff, reason="SSO needs a signed DPA first"
    )
    show(ents, acme, "staff switched SSO off for this organization")

    clock.advance(days=30)
    ents.subscriptions.convert(acme, actor=staff, seats=25, notes="contract signed")
    ents.overrides.remove(acme, "feature", "sso", actor=staff, reason="DPA signed")
    show(ents, acme, "converted to paid with 25 seats")

    ents.subscriptions.suspend(acme, actor=staff, reason="chargeback under review")
    show(ents, acme, "suspended: read-only")
    ents.subscriptions.resume(acme, actor=staff, reason="chargeback resolved")

    subscription = ents.subscriptions.cancel(
        acme, actor=staff, at_period_end=True, reason="moving to a competitor"
    )
    assert subscription.current_period is not None
    show(
        ents,
        acme,
        f"cancels at period end ({subscription.current_period.end:%Y-%m-%d}), still active",
    )

    clock.set(subscription.current_period.end + timedelta(minutes=1))
    report = ents.process_due()
    print(
        f"\nsweep at {report.now:%Y-%m-%d %H:%M}: "
        + ", ".join(c.event.value for c in report.changes)
    )
    show(ents, acme, "the period ended: back on the fallback plan")

    print("\naudit trail:")
    for event in ents.audit.for_owner(acme):
        print(f"   {event.at:%Y-%m-%d} {event.actor:<14} {event.action:<30} {event.reason or ''}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
