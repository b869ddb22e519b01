"""A small plan catalog shaped like the seeds' (Free, Growth, Enterprise)."""

from __future__ import annotations

from decimal import Decimal

from entitlements import (
    Action,
    BillingCycle,
    Entitlements,
    Feature,
    Limit,
    LimitKind,
    ManualClock,
    MemoryStore,
    Plan,
    Price,
)

FREE = Plan(
    "free",
    "Free",
    limits={"seats": Limit(1, "seats", kind=LimitKind.SEATS), "projects": Limit(3)},
    features={"premium": Feature(actions=frozenset({Action.READ}))},
    status="active",
)
GROWTH = Plan(
    "growth",
    "Growth",
    limits={
        "seats": Limit(5, "seats", kind=LimitKind.SEATS),
        "projects": Limit(20),
        "api_calls": Limit(10_000, "calls", kind=LimitKind.METERED),
    },
    features={"premium": True, "export": True},
    price=Price(Decimal("49.00"), "EUR", BillingCycle.monthly()),
    status="active",
)
ENTERPRISE = Plan(
    "enterprise",
    "Enterprise",
    limits={
        "seats": Limit(50, "seats", kind=LimitKind.SEATS),
        "projects": Limit.unlimited(),
        "api_calls": Limit.unlimited("calls", kind=LimitKind.METERED),
    },
    features={"premium": True, "export": True, "sso": True},
    price=Price(Decimal("499.00"), "EUR", BillingCycle.annual()),
    status="active",
)


def build(**kwargs: object) -> tuple[Entitlements, ManualClock]:
    clock = ManualClock()
    ents = Entitlements(MemoryStore(), clock=clock, **kwargs)  # type: ignore[arg-type]
    for plan in (FREE, GROWTH, ENTERPRISE):
        ents.plans.define(plan, actor="catalog")
    return ents, clock
