"""Plans: what an owner gets (limits, features, price, trial), versioned.

A plan's *terms* (limits, features, price, trial length) are versioned: revising any of
them makes version n+1, and a subscription keeps the version it holds until it is
migrated explicitly (grandfathering). Name, status and allowed owner kinds belong to the
plan itself and are not versioned.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from entitlements.domain.alerts import check_alerts
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.charges import Charge, check_charges
from entitlements.domain.checks import (
    MAX_COUNT,
    check_bool,
    check_count,
    check_currency,
    check_instance,
    check_key,
    check_text,
    parse_enum,
)
from entitlements.domain.frozen import FrozenDict
from entitlements.domain.owner import OWNER_KIND
from entitlements.errors import IllegalTransition, InvalidInput, PlanNotAssignable, PlanRetired

__all__ = [
    "ALL_ACTIONS",
    "MAX_TRIAL_DAYS",
    "READ_ONLY",
    "Action",
    "ByContract",
    "Combine",
    "Enforcement",
    "Feature",
    "Limit",
    "LimitKind",
    "Plan",
    "PlanStatus",
    "Price",
    "check_trial_days",
    "price_label",
]


class PlanStatus(enum.StrEnum):
    """``draft`` is being prepared; ``active`` can be assigned; ``archived`` stays with the
    owners that have it but is not offered to new ones; ``retired`` also blocks issuing
    claims/tokens for owners still on it (seed 004)."""

    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"
    RETIRED = "retired"


PLAN_STATUS_TRANSITIONS: Mapping[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.DRAFT: frozenset({PlanStatus.ACTIVE}),
    PlanStatus.ACTIVE: frozenset({PlanStatus.ARCHIVED, PlanStatus.RETIRED}),
    PlanStatus.ARCHIVED: frozenset({PlanStatus.ACTIVE, PlanStatus.RETIRED}),
    PlanStatus.RETIRED: frozenset({PlanStatus.ARCHIVED}),
}


class Action(enum.StrEnum):
    """What a feature may be used for; a feature can be restricted to some actions, and
    read-only access keeps only ``read``."""

    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


ALL_ACTIONS: frozenset[Action] = frozenset(Action)
READ_ONLY: frozenset[Action] = frozenset({Action.READ})


class Enforcement(enum.StrEnum):
    """``hard`` denies past the limit; ``soft`` allows and reports."""

    HARD = "hard"
    SOFT = "soft"


class Combine(enum.StrEnum):
    """How an add-on's value for a limit combines with the plan's."""

    SUM = "sum"
    MAX = "max"
    REPLACE = "replace"


class LimitKind(enum.StrEnum):
    """``seats`` are named members; a ``gauge`` is a current amount (projects, storage);
    ``metered`` is a sum per billing period (API calls)."""

    SEATS = "seats"
    GAUGE = "gauge"
    METERED = "metered"


def _limit_value(value: object) -> int | None:
    return None if value is None else check_count(value, "limit.value")


def _unit(value: object) -> str:
    return check_text(value, "limit.unit", max_length=32)


def _limit_kind(value: object) -> LimitKind:
    return parse_enum(LimitKind, value, "limit.kind")


def _enforcement(value: object) -> Enforcement:
    return parse_enum(Enforcement, value, "limit.enforcement")


def _combine(value: object) -> Combine:
    return parse_enum(Combine, value, "limit.combine")


def _alerts(value: object) -> tuple[int, ...]:
    return check_alerts(value)


def _plan_status(value: object) -> PlanStatus:
    return parse_enum(PlanStatus, value, "plan.status")


@attrs.frozen
class Limit:
    """A quantity an owner may use. ``value=None`` means unlimited."""

    value: int | None = attrs.field(converter=_limit_value)
    """The quantity allowed (``None``: unlimited)."""
    unit: str = attrs.field(default="", converter=_unit)
    """What is counted, for people reading messages and claims (``calls``, ``GB``)."""
    kind: LimitKind = attrs.field(default=LimitKind.GAUGE, converter=_limit_kind)
    """How usage of it is counted: named seats, a current gauge, or a sum per billing
    period."""
    enforcement: Enforcement = attrs.field(default=Enforcement.HARD, converter=_enforcement)
    """Whether going past it is refused (``hard``) or allowed and reported (``soft``)."""
    combine: Combine = attrs.field(default=Combine.SUM, converter=_combine)
    """How an add-on's amount for this limit combines with ``value``."""
    alerts: tuple[int, ...] = attrs.field(default=(), converter=_alerts)
    """Percentages of the limit at which the host hears that usage crossed them (``(80,
    100)``: at 80% and when it is all used), once per billing period each."""

    @classmethod
    def unlimited(cls, unit: str = "", **kwargs: Any) -> Limit:
        """A limit with no ceiling that is still counted (usage is recorded, nothing is
        refused)."""
        return cls(None, unit, **kwargs)

    @property
    def is_unlimited(self) -> bool:
        """Whether there is no ceiling."""
        return self.value is None


def as_actions(value: object) -> frozenset[Action] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("feature.actions", "must be a set of actions, or None for all", value)
    actions = frozenset(parse_enum(Action, a, "feature.actions") for a in value)
    if not actions:
        raise InvalidInput(
            "feature.actions", "must name at least one action (or be None for all)", value
        )
    return actions


def _enabled(value: object) -> bool:
    return check_bool(value, "feature.enabled")


@attrs.frozen
class Feature:
    """A capability; ``actions`` restricts it to some of read/create/update/delete."""

    enabled: bool = attrs.field(default=True, converter=_enabled)
    """``False`` lists the feature as known but not granted, so explanations can say why it
    is off."""
    actions: frozenset[Action] | None = attrs.field(default=None, converter=as_actions)
    """The actions it is granted for (``None``: every action)."""

    @property
    def granted_actions(self) -> frozenset[Action]:
        """The actions it grants as it stands (none when disabled)."""
        if not self.enabled:
            return frozenset()
        return ALL_ACTIONS if self.actions is None else self.actions


def _amount(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise InvalidInput(
            "price.amount", "must be a Decimal or a string such as '9.99' (never a float)", value
        )
    if isinstance(value, float):
        raise InvalidInput("price.amount", "must be a Decimal or a string, never a float", value)
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise InvalidInput("price.amount", f"is not a decimal amount: {value!r}", value) from exc
    if not amount.is_finite() or amount <= 0:
        raise InvalidInput(
            "price.amount", "must be a positive finite amount (a free plan has no price)", value
        )
    if amount >= Decimal(10) ** 12:
        raise InvalidInput("price.amount", "is too large", value)
    return amount


def _currency(value: object) -> str:
    return check_currency(value, "price.currency")


def _cycle(value: object) -> BillingCycle:
    return check_instance(value, BillingCycle, "price.cycle")


@attrs.frozen
class Price:
    """What a paid plan costs per billing cycle; a plan without one is free."""

    amount: Decimal = attrs.field(converter=_amount)
    """A `Decimal` (never a float, so cents stay exact)."""
    currency: str = attrs.field(converter=_currency)
    """An ISO 4217 code (``EUR``, ``USD``)."""
    cycle: BillingCycle = attrs.field(factory=BillingCycle.monthly, converter=_cycle)
    """How often it is charged; subscriptions to the plan roll their periods on it."""


@attrs.frozen
class ByContract:
    """The price of a plan sold by contract (an "enterprise" plan): each customer's
    contract sets the amount, so the plan has no list price — and is not free (the
    one-free-plan rule ignores it; consoles show "by contract")."""

    cycle: BillingCycle = attrs.field(factory=BillingCycle.monthly, converter=_cycle)
    """How often it is billed; subscriptions to the plan roll their periods on it."""


def price_label(price: Price | ByContract | None) -> str:
    """How a price reads in a console or a terminal: ``free``, ``by contract`` or
    ``49.00 EUR every 1 month`` (one wording everywhere it is shown)."""
    if price is None:
        return "free"
    if isinstance(price, ByContract):
        return "by contract"
    return f"{price.amount} {price.currency} {price.cycle}"


def _limits(value: Mapping[str, Limit]) -> Mapping[str, Limit]:
    out: FrozenDict[str, Limit] = FrozenDict()
    for name, limit in _mapping(value, "limits").items():
        check_key(name, "limit name")
        if not isinstance(limit, Limit):
            raise InvalidInput(f"limits.{name}", "must be a Limit", limit)
        dict.__setitem__(out, name, limit)
    return out


def _mapping(value: object, field: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(field, f"must be a mapping of names, got {type(value).__name__}", value)
    return value


def as_features(value: Mapping[str, Feature | bool]) -> Mapping[str, Feature]:
    out: FrozenDict[str, Feature] = FrozenDict()
    for name, feature in _mapping(value, "features").items():
        check_key(name, "feature name")
        if isinstance(feature, bool):
            feature = Feature(feature)
        if not isinstance(feature, Feature):
            raise InvalidInput(f"features.{name}", "must be a Feature or a bool", feature)
        dict.__setitem__(out, name, feature)
    return out


def _owner_kinds(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput(
            "owner_kinds",
            "must be a set of owner kind names such as {'organization'}, not a single string",
            value,
        )
    try:
        kinds: frozenset[str] = frozenset(value)
    except TypeError:
        raise InvalidInput("owner_kinds", "must be owner kind names", value) from None
    for kind in kinds:
        if not isinstance(kind, str) or not OWNER_KIND.match(kind):
            raise InvalidInput("owner_kinds", "must be owner kind names", value)
    return kinds


def _price(value: object) -> Price | ByContract | None:
    if value is not None and not isinstance(value, Price | ByContract):
        raise InvalidInput(
            "plan.price",
            "must be a Price (e.g. Price('9.99', 'EUR')), ByContract() or None for free",
            value,
        )
    return value


def _net_days(value: object) -> int | None:
    return None if value is None else check_count(value, "plan.net_days", maximum=3650)


def _version(value: object) -> int:
    return check_count(value, "plan.version", maximum=MAX_COUNT)


def _revision(value: object) -> int:
    return check_count(value, "plan.revision", maximum=MAX_COUNT)


def _plan_key(value: object) -> str:
    return check_key(value, "plan.key")


MAX_TRIAL_DAYS = 3650
"""The longest trial, in days. The shortest is 0: a plan without a trial (``trial_days =
0`` in a catalog), whose trial, if started anyway, ends the instant it starts."""


def check_trial_days(value: object, field: str = "trial_days") -> int:
    """The one definition of a trial's length, for a plan's ``trial_days`` and for the
    ``trial_days`` a trial is started with alike: what a plan may say, a trial may run."""
    return check_count(value, field, maximum=MAX_TRIAL_DAYS)


def _trial_days(value: object) -> int:
    return check_trial_days(value, "plan.trial_days")


def _name(value: object) -> str:
    return check_text(value, "plan.name", max_length=200, allow_empty=False)


@attrs.frozen
class Plan:
    """One version of a plan, with the plan-level name and status it has now.

    ``owner_kinds`` empty means any kind of owner may hold it (seed 002 restricts plans to
    customer or organization owners). ``revision`` counts writes for optimistic
    concurrency and is managed by the store.
    """

    key: str = attrs.field(converter=_plan_key)
    """The stable name hosts and catalogs refer to; all versions share it."""
    name: str = attrs.field(converter=_name)
    """The name people see; renaming does not make a new version."""
    limits: Mapping[str, Limit] = attrs.field(factory=dict, converter=_limits)
    """The plan's limits by name (``seats``, ``api_calls``...)."""
    features: Mapping[str, Feature] = attrs.field(factory=dict, converter=as_features)
    """The plan's features by name; a bool is shorthand for ``Feature(enabled)``."""
    price: Price | ByContract | None = attrs.field(default=None, converter=_price)
    """The price: a list `Price`, `ByContract` (each customer's contract sets it), or
    ``None`` for a free plan."""
    trial_days: int = attrs.field(default=90, converter=_trial_days)
    """How long a trial of this plan lasts unless the call says otherwise."""
    status: PlanStatus = attrs.field(default=PlanStatus.DRAFT, converter=_plan_status)
    """Whether it may be assigned (``active``), kept only by current holders (``archived``),
    or neither."""
    owner_kinds: frozenset[str] = attrs.field(factory=frozenset, converter=_owner_kinds)
    """The owner kinds allowed to hold it (empty: any)."""
    version: int = attrs.field(default=1, converter=_version)
    """Which version of the terms this is; subscriptions keep theirs until migrated."""
    revision: int = attrs.field(default=0, converter=_revision)
    """Counts writes, so a stale copy cannot overwrite a newer one; managed by the store."""
    charges: tuple[Charge, ...] = attrs.field(default=(), converter=check_charges)
    """What it charges besides the flat price (`SeatCharge`, `AddOnCharge`,
    `UsageCharge`), in the price's currency; a free plan charges nothing."""
    net_days: int | None = attrs.field(default=None, converter=_net_days)
    """Days an invoice for it may stay unpaid (``None``: the host's default, 30)."""

    def __attrs_post_init__(self) -> None:
        if self.charges and self.price is None:
            raise InvalidInput(
                "plan.charges",
                "a free plan charges nothing: give it a Price or ByContract first",
                self.charges,
            )

    @property
    def is_free(self) -> bool:
        """Whether the plan has no price (a plan priced `ByContract` is not free)."""
        return self.price is None

    @property
    def is_by_contract(self) -> bool:
        """Whether each customer's contract sets the price (`ByContract`)."""
        return isinstance(self.price, ByContract)

    @property
    def price_label(self) -> str:
        """The price as consoles show it (`price_label`)."""
        return price_label(self.price)

    def same_terms(self, other: Plan) -> bool:
        """Whether ``other`` has the same versioned terms, so a revision to it would not
        need a new version."""
        return (
            self.limits == other.limits
            and self.features == other.features
            and self.price == other.price
            and self.trial_days == other.trial_days
            and self.charges == other.charges
            and self.net_days == other.net_days
        )

    def check_status_change(self, to: PlanStatus) -> None:
        """Refuses (`IllegalTransition`) a status change the plan lifecycle does not allow."""
        allowed = PLAN_STATUS_TRANSITIONS[self.status]
        if to not in allowed:
            sources = tuple(
                sorted(s.value for s, targets in PLAN_STATUS_TRANSITIONS.items() if to in targets)
            )
            raise IllegalTransition(
                "plan", self.key, self.status.value, f"make {to.value}", sources
            )

    def check_grants_claims(self) -> None:
        """Seed 004: a retired plan grants nothing a token could carry, so its owners get
        no claims (`PlanRetired`); every other status does (an archived plan still serves
        the owners that hold it)."""
        if self.status is PlanStatus.RETIRED:
            raise PlanRetired(self.key)

    def check_assignable(self, owner_kind: str, *, already_held: bool) -> None:
        """Seed 004's rules: only active plans go to new owners; an owner that already
        holds an archived plan keeps it; draft and retired plans are never assigned."""
        if self.owner_kinds and owner_kind not in self.owner_kinds:
            kinds = ", ".join(sorted(self.owner_kinds))
            raise PlanNotAssignable(self.key, f"it is for {kinds} owners, not {owner_kind}")
        if self.status is PlanStatus.ACTIVE:
            return
        if self.status is PlanStatus.ARCHIVED and already_held:
            return
        reasons = {
            PlanStatus.DRAFT: "it is a draft; activate it first",
            PlanStatus.ARCHIVED: "it is archived and no longer offered to new owners",
            PlanStatus.RETIRED: "it is retired",
        }
        raise PlanNotAssignable(self.key, reasons[self.status])
