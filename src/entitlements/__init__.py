"""entitlements: plans, subscriptions, trials, seats, usage and contracts for SaaS
products, embedded in the host's own process and database.

Start with `Entitlements` over a store (`MemoryStore`, or `SqlStore` for production),
define `Plan`s, put an `Owner` on a trial, and ask ``allows(owner, feature)``.
"""

from entitlements.adapters.memory import MemoryStore
from entitlements.clock import ManualClock, SystemClock
from entitlements.domain.access import Access, AccessPolicy, Source
from entitlements.domain.actor import Actor, ActorKind
from entitlements.domain.addon import AddOn
from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing_cycle import BillingCycle, CycleUnit
from entitlements.domain.instant import Period
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import (
    Action,
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
from entitlements.domain.subscription import TRANSITIONS, Event, Subscription, SubscriptionStatus
from entitlements.errors import (
    Busy,
    Conflict,
    ConnectionLost,
    ContractNotCompleted,
    ContractNotFound,
    EntitlementsError,
    EvidenceBroken,
    FeedUnavailable,
    IdempotencyKeyReused,
    IllegalTransition,
    InvalidInput,
    InvalidToken,
    LimitExceeded,
    NaiveDatetime,
    NotAuthorized,
    NotFound,
    OverQuotaRefused,
    OverrideNotFound,
    PlanExists,
    PlanNotAssignable,
    PlanRetired,
    StaleWrite,
    StorageError,
    SubscriptionExists,
    SubscriptionNotFound,
    UnknownLimit,
    UnknownPlan,
    UsageDenied,
)
from entitlements.service.entitlements import Entitlements
from entitlements.service.sweep import SweepReport

__version__ = "0.1.0"

__all__ = [
    "TRANSITIONS",
    "Access",
    "AccessPolicy",
    "Action",
    "Actor",
    "ActorKind",
    "AddOn",
    "AuditEvent",
    "BillingCycle",
    "Busy",
    "Combine",
    "Conflict",
    "ConnectionLost",
    "ContractNotCompleted",
    "ContractNotFound",
    "CycleUnit",
    "Decision",
    "Enforcement",
    "Entitlements",
    "EntitlementsError",
    "Event",
    "EvidenceBroken",
    "Feature",
    "FeedUnavailable",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "InvalidInput",
    "InvalidToken",
    "Limit",
    "LimitExceeded",
    "LimitKind",
    "ManualClock",
    "MemoryStore",
    "NaiveDatetime",
    "NotAuthorized",
    "NotFound",
    "OverQuotaRefused",
    "Override",
    "OverrideKind",
    "OverrideNotFound",
    "Owner",
    "Period",
    "Plan",
    "PlanExists",
    "PlanNotAssignable",
    "PlanRetired",
    "PlanStatus",
    "Price",
    "Reason",
    "Snapshot",
    "Source",
    "StaleWrite",
    "StorageError",
    "Subscription",
    "SubscriptionExists",
    "SubscriptionNotFound",
    "SubscriptionStatus",
    "SweepReport",
    "SystemClock",
    "UnknownLimit",
    "UnknownPlan",
    "UsageDenied",
    "__version__",
    "resolve",
]
