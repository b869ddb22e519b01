"""entitlements: plans, subscriptions, trials, seats, usage and contracts for SaaS
products, embedded in the host's own process and database.

Start with `Entitlements` over a store (`MemoryStore`, or `SqlStore` for production),
define `Plan`s, put an `Owner` on a trial, and ask ``allows(owner, feature)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from entitlements import errors
from entitlements.errors import *  # noqa: F403

if TYPE_CHECKING:
    from entitlements.adapters.memory import MemoryStore
    from entitlements.clock import ManualClock, SystemClock
    from entitlements.domain.access import Access, AccessPolicy, Source
    from entitlements.domain.actor import Actor, ActorKind
    from entitlements.domain.addon import AddOn
    from entitlements.domain.audit import AuditEvent
    from entitlements.domain.billing_cycle import BillingCycle, CycleUnit
    from entitlements.domain.charges import AddOnCharge, SeatCharge, Tier, TierMode, UsageCharge
    from entitlements.domain.ingestion import UsageEvent, UsageOutcome, UsageResult
    from entitlements.domain.instant import Period
    from entitlements.domain.invoice import (
        Invoice,
        InvoiceDraft,
        InvoiceKind,
        InvoiceLine,
        InvoiceStatus,
        LineKind,
    )
    from entitlements.domain.notification import (
        Delivery,
        Notification,
        NotificationKind,
        NotificationSettings,
    )
    from entitlements.domain.override import Override, OverrideKind
    from entitlements.domain.owner import Owner
    from entitlements.domain.page import Page
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
    from entitlements.domain.resolution import Decision, Reason, Snapshot, resolve
    from entitlements.domain.scheduled import Pause, PendingChange, PendingKind
    from entitlements.domain.subscription import (
        TRANSITIONS,
        Event,
        Subscription,
        SubscriptionStatus,
    )
    from entitlements.service.coherence import WhenUnreachable
    from entitlements.service.entitlements import Entitlements
    from entitlements.service.invoices import InvoiceSettings
    from entitlements.service.sweep import SweepFailure, SweepReport

__version__ = "0.1.0"

_LAZY = {
    "MemoryStore": "entitlements.adapters.memory",
    "ManualClock": "entitlements.clock",
    "SystemClock": "entitlements.clock",
    "Access": "entitlements.domain.access",
    "AccessPolicy": "entitlements.domain.access",
    "Source": "entitlements.domain.access",
    "Actor": "entitlements.domain.actor",
    "ActorKind": "entitlements.domain.actor",
    "AddOn": "entitlements.domain.addon",
    "AuditEvent": "entitlements.domain.audit",
    "BillingCycle": "entitlements.domain.billing_cycle",
    "CycleUnit": "entitlements.domain.billing_cycle",
    "UsageEvent": "entitlements.domain.ingestion",
    "UsageOutcome": "entitlements.domain.ingestion",
    "UsageResult": "entitlements.domain.ingestion",
    "Period": "entitlements.domain.instant",
    "Delivery": "entitlements.domain.notification",
    "Notification": "entitlements.domain.notification",
    "NotificationKind": "entitlements.domain.notification",
    "NotificationSettings": "entitlements.domain.notification",
    "Override": "entitlements.domain.override",
    "OverrideKind": "entitlements.domain.override",
    "Owner": "entitlements.domain.owner",
    "Page": "entitlements.domain.page",
    "Action": "entitlements.domain.plan",
    "Combine": "entitlements.domain.plan",
    "Enforcement": "entitlements.domain.plan",
    "Feature": "entitlements.domain.plan",
    "Limit": "entitlements.domain.plan",
    "LimitKind": "entitlements.domain.plan",
    "Plan": "entitlements.domain.plan",
    "PlanStatus": "entitlements.domain.plan",
    "Price": "entitlements.domain.plan",
    "ByContract": "entitlements.domain.plan",
    "Decision": "entitlements.domain.resolution",
    "Reason": "entitlements.domain.resolution",
    "Snapshot": "entitlements.domain.resolution",
    "resolve": "entitlements.domain.resolution",
    "PendingKind": "entitlements.domain.scheduled",
    "Pause": "entitlements.domain.scheduled",
    "PendingChange": "entitlements.domain.scheduled",
    "TRANSITIONS": "entitlements.domain.subscription",
    "Event": "entitlements.domain.subscription",
    "Subscription": "entitlements.domain.subscription",
    "SubscriptionStatus": "entitlements.domain.subscription",
    "AddOnCharge": "entitlements.domain.charges",
    "SeatCharge": "entitlements.domain.charges",
    "Tier": "entitlements.domain.charges",
    "TierMode": "entitlements.domain.charges",
    "UsageCharge": "entitlements.domain.charges",
    "Invoice": "entitlements.domain.invoice",
    "InvoiceDraft": "entitlements.domain.invoice",
    "InvoiceKind": "entitlements.domain.invoice",
    "InvoiceLine": "entitlements.domain.invoice",
    "InvoiceStatus": "entitlements.domain.invoice",
    "LineKind": "entitlements.domain.invoice",
    "InvoiceSettings": "entitlements.service.invoices",
    "WhenUnreachable": "entitlements.service.coherence",
    "Entitlements": "entitlements.service.entitlements",
    "SweepFailure": "entitlements.service.sweep",
    "SweepReport": "entitlements.service.sweep",
}
"""Where each name lives: loaded on first use, so that ``import entitlements`` stays cheap
(a command line's ``--help``, a web worker's fork) and pays for SQL, contracts or billing
only when they are touched."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'entitlements' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "TRANSITIONS",
    "Access",
    "AccessPolicy",
    "Action",
    "Actor",
    "ActorKind",
    "AddOn",
    "AddOnCharge",
    "AuditEvent",
    "BillingCycle",
    "ByContract",
    "Combine",
    "CycleUnit",
    "Decision",
    "Delivery",
    "Enforcement",
    "Entitlements",
    "Event",
    "Feature",
    "Invoice",
    "InvoiceDraft",
    "InvoiceKind",
    "InvoiceLine",
    "InvoiceSettings",
    "InvoiceStatus",
    "Limit",
    "LimitKind",
    "LineKind",
    "ManualClock",
    "MemoryStore",
    "Notification",
    "NotificationKind",
    "NotificationSettings",
    "Override",
    "OverrideKind",
    "Owner",
    "Page",
    "Pause",
    "PendingChange",
    "PendingKind",
    "Period",
    "Plan",
    "PlanStatus",
    "Price",
    "Reason",
    "SeatCharge",
    "Snapshot",
    "Source",
    "Subscription",
    "SubscriptionStatus",
    "SweepFailure",
    "SweepReport",
    "SystemClock",
    "Tier",
    "TierMode",
    "UsageCharge",
    "UsageEvent",
    "UsageOutcome",
    "UsageResult",
    "WhenUnreachable",
    "__version__",
    "resolve",
]
__all__ += errors.__all__  # every error a call can raise, from its one list
