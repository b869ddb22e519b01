"""Entitlement resolution: one pure function from everything that decides an owner's
access to an immutable `Snapshot` that answers on the request path.

All the work happens here, once per owner and write; the snapshot's ``allows`` and
``limit`` are a set membership and a dict lookup. Every answer can be explained: each
decision records the value, a reason from a small vocabulary, the source layer
(override, add-on, plan, fallback, status policy) and the subscription status.

Most owners differ only in what is theirs (status, period, overrides, add-ons): what a
plan version grants is the same for every owner on it. Those decisions and maps are
resolved once per plan version, status and layer order and shared by every snapshot
that has nothing of its own to add, so a process caching many owners on a few plans
holds the plans' terms once (an owner with an override or add-on shares every decision
its own records leave alone). Shared maps are never handed out mutable.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from entitlements.domain.access import Access, AccessPolicy, Source, status_access
from entitlements.domain.addon import AddOn
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import parse_enum
from entitlements.domain.due import as_of
from entitlements.domain.instant import Period, utc
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import (
    ALL_ACTIONS,
    READ_ONLY,
    Action,
    Combine,
    Limit,
    LimitKind,
    Plan,
)
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import InvalidInput, UnknownLimit

__all__ = ["Decision", "Reason", "Snapshot", "resolve", "usage_period_of"]

SEATS = "seats"
CALENDAR_MONTHS = BillingCycle.monthly()
CALENDAR_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
"""Owners without a billing period (no subscription, or an ended one) meter usage by
calendar month."""
_EMPTY: frozenset[Action] = frozenset()


class _Missing(enum.Enum):
    MISSING = "missing"


_MISSING = _Missing.MISSING


def check_question(feature: object, action: object) -> None:
    """Refuse what cannot name a feature or an action (called once the answer is no)."""
    if not isinstance(feature, str):
        raise InvalidInput("feature", "must be a feature name (a string)", feature)
    if action is not None and not isinstance(action, str):
        raise InvalidInput("action", "must be an Action, its name, or None", action)


class _Shared:
    """Values many owners resolve alike, kept once. Bounded: a full table starts over
    (a miss only costs the resolution the table saves)."""

    def __init__(self, size: int) -> None:
        self._entries: dict[Hashable, Any] = {}
        self._size = size

    def get(self, key: Hashable) -> Any:
        return self._entries.get(key)

    def put(self, key: Hashable, value: Any) -> Any:
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = value
        return value

    def once(self, value: Any) -> Any:
        """The one kept instance equal to ``value``."""
        found = self._entries.get(value)
        return found if found is not None else self.put(value, value)


_PLAN_FEATURES = _Shared(1024)
_PLAN_LIMITS = _Shared(1024)
_GRANTS = _Shared(1024)
_SMALL = _Shared(4096)


class Reason(enum.StrEnum):
    """Why a decision came out as it did. Small on purpose: hosts switch on it."""

    PLAN = "plan"
    """The owner's plan version decided."""
    FALLBACK = "fallback"
    """The fallback plan decided (no live subscription, or a status that falls back)."""
    OVERRIDE = "override"
    """A staff override decided."""
    ADDON = "addon"
    """An add-on granted the feature or raised the limit."""
    PURCHASED_SEATS = "purchased_seats"
    """The seat limit is the number of seats bought, not the plan's."""
    DISABLED = "disabled"
    """Listed but turned off, by the plan or by an override."""
    ACTION_RESTRICTED = "action_restricted"
    """Granted, but not for the action asked (read-only reports, say)."""
    READ_ONLY = "read_only"
    """The status allows reads only (suspended, past due after the grace period)."""
    STATUS = "status"
    """The subscription status grants nothing."""
    NO_SUBSCRIPTION = "no_subscription"
    """The owner has no subscription and there is no fallback plan."""
    UNKNOWN = "unknown"
    """Nothing defines the feature or limit; checks fail closed."""


def _when(at: datetime | None) -> str:
    return "never" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(status: SubscriptionStatus | None) -> str | None:
    return None if status is None else status.value


def _call(kind: str, *args: object, **named: object) -> str:
    """``kind(arg, ..., name=value, ...)`` with each value as its repr: how a decision and
    a snapshot show themselves in a console or a test failure."""
    parts = [*map(repr, args), *(f"{name}={value!r}" for name, value in named.items())]
    return f"{kind}({', '.join(parts)})"


def _amount(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


@attrs.frozen(repr=False)
class Decision:
    """The explained answer for one feature (``value`` is a bool) or one limit (``value``
    is the limit, ``None`` meaning unlimited)."""

    key: str
    """The feature or limit asked about."""
    value: bool | int | None
    """The answer: a bool for a feature; for a limit its value (``None``: unlimited)."""
    reason: Reason
    """Why, from a small vocabulary a host can switch on."""
    source: Source
    """Which layer decided: an override, an add-on, the plan, the fallback plan, or the
    status policy."""
    detail: str
    """The same in words for people (``plan pro v1``, ``override by staff:ann: pilot``)."""
    status: SubscriptionStatus | None
    """The owner's subscription status when it was decided (``None``: no subscription)."""
    action: Action | None = None
    """The action asked about (``None``: the whole feature)."""
    actions: frozenset[Action] = _EMPTY
    """The actions the feature is granted for."""
    limit: Limit | None = None
    """For a limit, its full definition (unit, kind, enforcement)."""

    @property
    def allowed(self) -> bool:
        """Whether a feature decision grants it."""
        return self.value is True

    def __str__(self) -> str:
        """One line for a console or a log: the answer, then why
        (``sso: allowed by plan pro v1 [plan, trialing]``)."""
        key = self.key if self.action is None else f"{self.key} ({self.action})"
        if isinstance(self.value, bool):
            answer = "allowed" if self.value else "denied"
            link = " by " if self.value and self.source is not Source.NONE else ": "
        else:
            answer = f"limit {_amount(self.value)}"
            link = " from " if self.source is not Source.NONE else ": "
        status = "no subscription" if self.status is None else self.status.value
        return f"{key}: {answer}{link}{self.detail} [{self.reason.value}, {status}]"

    def __repr__(self) -> str:
        action = {} if self.action is None else {"action": self.action.value}
        return _call(
            "Decision",
            self.key,
            self.value,
            **action,
            reason=self.reason.value,
            source=self.source.value,
            status=_value(self.status),
            detail=self.detail,
        )


@attrs.frozen(slots=True, repr=False)
class Snapshot:
    """What one owner may do, as of ``resolved_at``, valid until ``valid_until`` (the
    next instant at which time alone would change an answer; ``None``: never).

    ``revision`` is the owner's terms revision in the store when it was resolved: writes
    that enforce its limits hand it to the database, which refuses them if the terms
    changed since (another process changed the plan, the seats, an override...)."""

    owner: Owner
    """Whose entitlements these are."""
    status: SubscriptionStatus | None
    """The subscription status at ``resolved_at`` (``None``: no subscription)."""
    access: Access
    """What the status grants (full, read-only, none, the fallback plan)."""
    plan_key: str | None
    """The plan resolved to (``None``: none, not even a fallback)."""
    plan_version: int | None
    """The plan version resolved to."""
    resolved_at: datetime
    """The instant it was resolved for; it answers from then until ``valid_until``."""
    valid_until: datetime | None
    """The next instant at which time alone changes an answer (a trial end, an override
    expiry...); ``None``: never."""
    usage_period: Period
    """The period usage is counted in at ``resolved_at`` (the billing period, or the
    calendar month)."""
    revision: int
    """The owner's terms revision in the store when resolved; writes hand it to the
    database, which refuses them if the terms changed since."""
    resolved_ts: float
    """``resolved_at`` as epoch seconds, so the warm path compares floats."""
    expires_ts: float
    """``valid_until`` as epoch seconds (infinity for never)."""
    _full: frozenset[str]
    _granted: Mapping[str, frozenset[Action]]
    _limits: Mapping[str, int | None]
    _features_explained: Mapping[str, Decision]
    _limits_explained: Mapping[str, Decision]
    _denied: Decision
    _access_why: str

    def __repr__(self) -> str:
        plan = "no plan" if self.plan_key is None else f"{self.plan_key} v{self.plan_version}"
        return _call(
            "Snapshot",
            str(self.owner),
            plan=plan,
            status=_value(self.status),
            access=self.access.value,
            revision=self.revision,
            valid_until=_when(self.valid_until),
        )

    def __str__(self) -> str:
        """A few lines for a console: plan, status and access, what is granted, and for
        how long the snapshot answers."""
        plan = "no plan" if self.plan_key is None else f"plan {self.plan_key} v{self.plan_version}"
        status = "no subscription" if self.status is None else self.status.value
        features = [
            name if name in self._full else f"{name} ({', '.join(sorted(actions))})"
            for name, actions in sorted(self._granted.items())
            if actions
        ]
        limits = [f"{name}={_amount(value)}" for name, value in sorted(self._limits.items())]
        return "\n".join(
            (
                f"{self.owner}: {plan}, {status} ({self.access.value} access)",
                f"  features: {', '.join(features) or 'none'}",
                f"  limits: {', '.join(limits) or 'none'}",
                f"  resolved {_when(self.resolved_at)}, valid until {_when(self.valid_until)}",
            )
        )

    def valid_at(self, now: datetime) -> bool:
        """Whether the snapshot still answers for ``now`` (time has changed nothing since
        it was resolved)."""
        return self.resolved_at <= now and (self.valid_until is None or now < self.valid_until)

    def allows(self, feature: str, action: Action | str | None = None) -> bool:
        """``action=None`` asks for the whole feature (every action it has); an unknown
        feature is never allowed. Only a "no" pays for checking the argument types."""
        try:
            if action is None:
                if feature in self._full:
                    return True
            else:
                granted = self._granted.get(feature)
                if granted is not None and action in granted:
                    return True
        except TypeError:
            pass
        check_question(feature, action)
        return False

    def limit(self, name: str, default: int | _Missing | None = _MISSING) -> int | None:
        """The limit's value; ``None`` when unlimited. A limit these terms do not define
        raises `UnknownLimit` (a typo, or a plan without it), unless ``default`` says
        what to answer instead (``default=0`` fails closed)."""
        try:
            return self._limits[name]
        except (KeyError, TypeError):
            if not isinstance(name, str):
                raise InvalidInput("name", "a limit name must be a string", name) from None
            if isinstance(default, _Missing):
                raise UnknownLimit(self.owner, name) from None
            return default

    def defines(self, name: str) -> bool:
        """Whether these terms define limit ``name`` (unlimited counts as defined)."""
        return isinstance(name, str) and name in self._limits

    @property
    def features(self) -> frozenset[str]:
        """Features granted for every action."""
        return self._full

    @property
    def limits(self) -> Mapping[str, int | None]:
        """Every limit by name (``None``: unlimited); read-only, as it may be shared
        with other owners' snapshots."""
        return MappingProxyType(self._limits)

    @property
    def has_plan(self) -> bool:
        """Whether the owner resolved to a plan at all."""
        return self.plan_key is not None

    def limit_definition(self, name: str) -> Limit | None:
        """The full definition of limit ``name`` (``None``: the owner has no such limit)."""
        decision = self._limits_explained.get(name)
        return None if decision is None else decision.limit

    def explain(self, feature: str, action: Action | str | None = None) -> Decision:
        """Why ``allows(feature, action)`` answers as it does."""
        check_question(feature, action)
        base = self._features_explained.get(feature)
        if action is None and feature in self._full and base is not None and base.value is True:
            return base
        act = None if action is None else parse_enum(Action, action, "action")
        if base is None:
            return attrs.evolve(self._denied, key=feature, action=act)
        granted = self._granted.get(feature, _EMPTY)
        allowed = feature in self._full if act is None else act in granted
        if allowed:
            return attrs.evolve(base, value=True, action=act, actions=granted)
        return self._explain_denied(base, act, granted)

    def _explain_denied(
        self, base: Decision, act: Action | None, granted: frozenset[Action]
    ) -> Decision:
        """Why a feature some layer decided is not allowed (for ``act``): turned off, capped
        by a read-only status, or granted for other actions only."""
        if not base.actions:
            return attrs.evolve(base, value=False, action=act)
        if self.access is Access.READ_ONLY and (act is None or act in base.actions):
            reason, source, why = Reason.READ_ONLY, Source.STATUS_POLICY, self._access_why
        else:
            only = ", ".join(sorted(base.actions))
            reason, source, why = Reason.ACTION_RESTRICTED, base.source, f"allows only {only}"
        return attrs.evolve(
            base,
            value=False,
            action=act,
            actions=granted,
            reason=reason,
            source=source,
            detail=f"{base.detail}; {why}",
        )

    def explain_limit(self, name: str) -> Decision:
        """Why ``limit(name)`` answers as it does."""
        if not isinstance(name, str):
            raise InvalidInput("name", "a limit name must be a string", name)
        decision = self._limits_explained.get(name)
        if decision is not None:
            return decision
        return attrs.evolve(self._denied, key=name, value=0)

    def explain_all(self) -> tuple[Decision, ...]:
        """Every decision in the snapshot, features first (what an admin page lists)."""
        return tuple(self._features_explained.values()) + tuple(self._limits_explained.values())


def _until(override: Override) -> str:
    return f" until {override.expires_at:%Y-%m-%d}" if override.expires_at else ""


def _override_feature(
    key: str, override: Override | None, status: SubscriptionStatus | None
) -> Decision | None:
    """An override decides a feature whether it turns it on or off."""
    if override is None:
        return None
    actions = (override.actions or ALL_ACTIONS) if override.enabled else _EMPTY
    return Decision(
        key,
        bool(actions),
        Reason.OVERRIDE if override.enabled else Reason.DISABLED,
        Source.OVERRIDE,
        f"override by {override.actor}: {override.reason}{_until(override)}",
        status,
        actions=actions,
    )


def _addon_feature(
    key: str, addons: tuple[AddOn, ...], status: SubscriptionStatus | None
) -> Decision | None:
    """Add-ons only grant: the union of what the add-ons that enable the feature grant."""
    granting = [a for a in addons if key in a.features and a.features[key].enabled]
    if not granting:
        return None
    actions = frozenset().union(*(a.features[key].granted_actions for a in granting))
    names = ", ".join(a.key for a in granting)
    return Decision(
        key, True, Reason.ADDON, Source.ADDON, f"add-on {names}", status, actions=actions
    )


def _plan_feature(
    key: str, plan: Plan | None, plan_source: Source, status: SubscriptionStatus | None
) -> Decision | None:
    """The plan (or the fallback plan) decides the features it lists, on or off."""
    if plan is None or key not in plan.features:
        return None
    feature = plan.features[key]
    actions = feature.granted_actions
    reason = Reason.FALLBACK if plan_source is Source.FALLBACK else Reason.PLAN
    return Decision(
        key,
        bool(actions),
        reason if feature.enabled else Reason.DISABLED,
        plan_source,
        f"plan {plan.key} v{plan.version}",
        status,
        actions=actions,
    )


def _feature_keys(
    plan: Plan | None, addons: tuple[AddOn, ...], by_key: Mapping[str, Override]
) -> tuple[list[str], set[str]]:
    """Every feature some layer names, sorted, and those an add-on or override touches."""
    touched: set[str] = set(by_key)
    for addon in addons:
        touched.update(addon.features)
    keys = touched | (set(plan.features) if plan else set())
    return sorted(keys), touched


def _feature_decisions(
    plan: Plan | None,
    plan_source: Source,
    addons: tuple[AddOn, ...],
    overrides: list[Override],
    policy: AccessPolicy,
    status: SubscriptionStatus | None,
    shared: Mapping[str, Decision] | None = None,
) -> dict[str, Decision]:
    """Each feature decided by the first layer, in the policy's precedence, that has a
    say. With ``shared`` (the plan's own decisions), keys that no add-on or override
    touches reuse the plan's decision objects."""
    by_key = {o.key: o for o in overrides if o.kind is OverrideKind.FEATURE}
    keys, touched = _feature_keys(plan, addons, by_key)
    layers = {
        Source.OVERRIDE: lambda key: _override_feature(key, by_key.get(key), status),
        Source.ADDON: lambda key: _addon_feature(key, addons, status),
        Source.PLAN: lambda key: _plan_feature(key, plan, plan_source, status),
    }
    ordered = [layers[layer] for layer in policy.precedence]
    out: dict[str, Decision] = {}
    for key in keys:
        if shared is not None and key not in touched:
            decision = shared.get(key)
        else:
            decision = _first_say(key, ordered)
        if decision is not None:
            out[key] = decision
    return out


def _first_say(key: str, layers: list[Callable[[str], Decision | None]]) -> Decision | None:
    """The decision of the first layer that has one about ``key``."""
    for layer in layers:
        decision = layer(key)
        if decision is not None:
            return decision
    return None


def _combine(mode: Combine, current: int | None, extra: int | None) -> int | None:
    if mode is Combine.REPLACE:
        return extra
    if current is None or extra is None:
        return None
    return current + extra if mode is Combine.SUM else max(current, extra)


_LimitAnswer = tuple[int | None, Source, Reason, str]
"""A limit's value so far, with the source, reason and words that explain it."""


def _plan_limit(
    key: str, plan: Plan | None, plan_source: Source, purchased: int | None
) -> tuple[Limit, _LimitAnswer]:
    """The limit's definition and the plan's value for it: the seats bought replace the
    plan's seat limit; a limit the plan does not define is 0 (checks fail closed)."""
    definition = plan.limits.get(key) if plan else None
    answer: _LimitAnswer
    if definition is None or plan is None:
        definition = Limit(0, kind=LimitKind.SEATS if key == SEATS else LimitKind.GAUGE)
        answer = (0, Source.NONE, Reason.UNKNOWN, "not in the plan")
    else:
        reason = Reason.FALLBACK if plan_source is Source.FALLBACK else Reason.PLAN
        answer = (definition.value, plan_source, reason, f"plan {plan.key} v{plan.version}")
    if key == SEATS and purchased is not None:
        answer = (purchased, Source.PLAN, Reason.PURCHASED_SEATS, "purchased seats")
    return definition, answer


def _addon_limit(
    key: str, definition: Limit, answer: _LimitAnswer, addons: tuple[AddOn, ...]
) -> _LimitAnswer:
    """Add-ons combine their amounts with the value so far, as the limit says (sum, max,
    replace)."""
    contributing = [a for a in addons if key in a.limits]
    if not contributing:
        return answer
    value, _, _, detail = answer
    for addon in contributing:
        value = _combine(definition.combine, value, addon.amount(key))
    names = ", ".join(f"{a.key} x{a.quantity}" for a in contributing)
    detail = f"{detail}; add-on {names}" if detail else f"add-on {names}"
    return value, Source.ADDON, Reason.ADDON, detail


def _override_limit(override: Override | None, answer: _LimitAnswer) -> _LimitAnswer:
    """An override sets the value, whatever the layers below said."""
    if override is None:
        return answer
    detail = f"override by {override.actor}: {override.reason}{_until(override)}"
    return override.value, Source.OVERRIDE, Reason.OVERRIDE, detail


def _limit_keys(
    plan: Plan | None,
    addons: tuple[AddOn, ...],
    by_key: Mapping[str, Override],
    purchased: int | None,
) -> tuple[list[str], set[str]]:
    """Every limit some layer names, sorted, and those an add-on or override touches."""
    touched: set[str] = set(by_key)
    for addon in addons:
        touched.update(addon.limits)
    keys = touched | (set(plan.limits) if plan else set())
    if purchased is not None:
        keys.add(SEATS)
    for addon in addons:  # thresholds change a limit's decision, never add a limit
        touched.update(name for name in addon.alerts if name in keys)
    return sorted(keys), touched


def _limit_decisions(
    plan: Plan | None,
    plan_source: Source,
    subscription: Subscription | None,
    addons: tuple[AddOn, ...],
    overrides: list[Override],
    status: SubscriptionStatus | None,
    shared: Mapping[str, Decision] | None = None,
) -> dict[str, Decision]:
    """Each limit built up layer on layer: the plan's value (or the seats bought), the
    add-ons combined with it, an override over all. With ``shared`` (the plan's own
    decisions), keys that no add-on or override touches reuse the plan's decisions."""
    by_key = {o.key: o for o in overrides if o.kind is OverrideKind.LIMIT}
    purchased = _purchased(subscription, plan_source)
    keys, touched = _limit_keys(plan, addons, by_key, purchased)
    out: dict[str, Decision] = {}
    for key in keys:
        if shared is not None and key not in touched and key in shared:
            out[key] = shared[key]
            continue
        definition, answer = _plan_limit(key, plan, plan_source, purchased)
        answer = _override_limit(by_key.get(key), _addon_limit(key, definition, answer, addons))
        value, source, reason, detail = answer
        definition = _alerts_of(key, definition, addons, by_key.get(key))
        out[key] = Decision(key, value, reason, source, detail, status, limit=definition)
    return out


def _alerts_of(
    key: str, definition: Limit, addons: tuple[AddOn, ...], override: Override | None
) -> Limit:
    """The limit's alert thresholds: the plan's and those its add-ons add, unless an
    override of the limit sets its own."""
    if override is not None and override.alerts is not None:
        return attrs.evolve(definition, alerts=override.alerts)
    extra = [p for a in addons for p in a.alerts.get(key, ())]
    if not extra:
        return definition
    return attrs.evolve(definition, alerts=(*definition.alerts, *extra))


def _purchased(subscription: Subscription | None, plan_source: Source) -> int | None:
    return subscription.seats if subscription is not None and plan_source is Source.PLAN else None


def _plan_key(plan: Plan | None) -> Hashable:
    return None if plan is None else (plan.key, plan.version, plan.revision)


def _same_terms(kept: Plan | None, plan: Plan | None) -> bool:
    """Whether a kept entry was resolved from this plan version's terms (stores load a
    fresh object per read; two stores in one process may hold different plans under one
    key and version)."""
    if kept is plan:
        return True
    return (
        kept is not None
        and plan is not None
        and kept.features == plan.features
        and kept.limits == plan.limits
    )


def _plan_features(
    plan: Plan | None,
    plan_source: Source,
    policy: AccessPolicy,
    status: SubscriptionStatus | None,
) -> Mapping[str, Decision]:
    key = (_plan_key(plan), plan_source, policy.precedence, status)
    kept = _PLAN_FEATURES.get(key)
    if kept is not None and _same_terms(kept[0], plan):
        return kept[1]  # type: ignore[no-any-return]
    decisions = _feature_decisions(plan, plan_source, (), [], policy, status)
    return _PLAN_FEATURES.put(key, (plan, decisions))[1]  # type: ignore[no-any-return]


def _plan_limits(
    plan: Plan | None,
    plan_source: Source,
    subscription: Subscription | None,
    status: SubscriptionStatus | None,
) -> Mapping[str, Decision]:
    key = (_plan_key(plan), plan_source, status, _purchased(subscription, plan_source))
    kept = _PLAN_LIMITS.get(key)
    if kept is not None and _same_terms(kept[0], plan):
        return kept[1]  # type: ignore[no-any-return]
    decisions = _limit_decisions(plan, plan_source, subscription, (), [], status)
    return _PLAN_LIMITS.put(key, (plan, decisions))[1]  # type: ignore[no-any-return]


def _grants(
    features: Mapping[str, Decision], cap: frozenset[Action]
) -> tuple[frozenset[str], Mapping[str, frozenset[Action]]]:
    granted: dict[str, frozenset[Action]] = {}
    for k, d in features.items():
        actions = d.actions & cap
        if actions:
            granted[k] = _SMALL.once(actions)
    return frozenset(k for k, acts in granted.items() if acts == ALL_ACTIONS), granted


def _shared_grants(
    features: Mapping[str, Decision], cap: frozenset[Action]
) -> tuple[frozenset[str], Mapping[str, frozenset[Action]]]:
    """The grants of a plan's shared decisions, computed once per map and cap."""
    key = (id(features), cap)
    kept = _GRANTS.get(key)
    if kept is not None and kept[0] is features:
        return kept[1]  # type: ignore[no-any-return]
    return _GRANTS.put(key, (features, _grants(features, cap)))[1]  # type: ignore[no-any-return]


def _limit_values(limits: Mapping[str, Decision]) -> dict[str, int | None]:
    return {k: d.value for k, d in limits.items() if not isinstance(d.value, bool)}


def _shared_limit_values(limits: Mapping[str, Decision]) -> Mapping[str, int | None]:
    key = id(limits)
    kept = _GRANTS.get(key)
    if kept is not None and kept[0] is limits:
        return kept[1]  # type: ignore[no-any-return]
    return _GRANTS.put(key, (limits, _limit_values(limits)))[1]  # type: ignore[no-any-return]


def usage_period_of(subscription: Subscription | None, now: datetime) -> Period:
    """The period metered usage counts in at ``now``: the live subscription's billing
    period (``subscription`` already brought to ``now``), else the calendar month."""
    if (
        subscription is not None
        and subscription.current_period is not None
        and not subscription.is_terminal
    ):
        return subscription.current_period
    return CALENDAR_MONTHS.period_containing(CALENDAR_ANCHOR, now)


def resolve(
    owner: Owner,
    subscription: Subscription | None,
    plan: Plan | None,
    overrides: Iterable[Override],
    now: datetime,
    policy: AccessPolicy,
    fallback: Plan | None = None,
    revision: int = 0,
) -> Snapshot:
    """Resolve ``owner``'s entitlements at ``now``.

    ``plan`` is the plan version the subscription pins; ``fallback`` is the current
    version of ``policy.fallback_plan`` (or ``None``). First, whatever time has made due
    by ``now`` is applied to the subscription (`entitlements.domain.due.as_of`: a trial
    that ended, a period that rolled over...), so the answer never waits for the sweep.
    The status policy then caps every layer: read-only access removes write actions even
    from overrides, and a status that grants nothing grants nothing, whatever the
    overrides say.
    """
    now = utc(now, "now")
    if subscription is not None:
        subscription = as_of(subscription, now)
    status = subscription.status if subscription is not None else None
    layers = _layers(subscription, plan, fallback, overrides, policy, now)
    terms = _terms(layers, subscription, policy, status)
    usage_period = usage_period_of(subscription, now)
    valid_until = _valid_until(layers, usage_period, subscription)
    base = layers.base
    return Snapshot(
        owner=owner,
        status=status,
        access=layers.access,
        plan_key=base.key if base else None,
        plan_version=base.version if base else None,
        resolved_at=now,
        valid_until=valid_until,
        usage_period=usage_period,
        revision=revision,
        resolved_ts=now.timestamp(),
        expires_ts=math.inf if valid_until is None else valid_until.timestamp(),
        full=terms.full,
        granted=terms.granted,
        limits=terms.limit_values,
        features_explained=terms.features,
        limits_explained=terms.limits,
        denied=_SMALL.once(_denied(subscription, layers, status)),
        access_why=_SMALL.once(layers.why),
    )


@attrs.frozen
class _Layers:
    """What decides an owner's answers once the status policy has spoken: the access, why,
    the plan (its own, the fallback or none), its add-ons and the overrides in force."""

    access: Access
    why: str
    until: datetime | None
    base: Plan | None
    plan_source: Source
    addons: tuple[AddOn, ...]
    active: list[Override]


def _layers(
    subscription: Subscription | None,
    plan: Plan | None,
    fallback: Plan | None,
    overrides: Iterable[Override],
    policy: AccessPolicy,
    now: datetime,
) -> _Layers:
    """The status policy caps every layer: a status that falls back swaps the plan for the
    fallback plan (or nothing) and drops the add-ons; one that grants nothing drops the
    overrides too."""
    standing = status_access(subscription, policy, now)
    access, why = standing.access, standing.why
    base, plan_source = plan, Source.PLAN
    addons = subscription.addons if subscription is not None else ()
    active = [o for o in overrides if o.is_active(now)]
    if access is Access.FALLBACK:
        base, plan_source, addons = fallback, Source.FALLBACK, ()
        if fallback is None:
            access = Access.NONE
            why = f"{why.replace('fallback', 'no')} (no fallback plan is configured)"
        else:
            why = f"{why} (plan {fallback.key})"
    if access is Access.NONE:
        base, addons, active = None, (), []
    return _Layers(access, why, standing.until, base, plan_source, addons, active)


@attrs.frozen
class _Terms:
    features: Mapping[str, Decision]
    limits: Mapping[str, Decision]
    full: frozenset[str]
    granted: Mapping[str, frozenset[Action]]
    limit_values: Mapping[str, int | None]


def _terms(
    layers: _Layers,
    subscription: Subscription | None,
    policy: AccessPolicy,
    status: SubscriptionStatus | None,
) -> _Terms:
    """The decisions and the maps the warm path reads; an owner with no add-on or
    override in force shares the plan version's, computed once."""
    base, source = layers.base, layers.plan_source
    plan_features = _plan_features(base, source, policy, status)
    plan_limits = _plan_limits(base, source, subscription, status)
    cap = READ_ONLY if layers.access is Access.READ_ONLY else ALL_ACTIONS
    if not (layers.addons or layers.active):
        full, granted = _shared_grants(plan_features, cap)
        return _Terms(plan_features, plan_limits, full, granted, _shared_limit_values(plan_limits))
    features = _feature_decisions(
        base, source, layers.addons, layers.active, policy, status, plan_features
    )
    limits = _limit_decisions(
        base, source, subscription, layers.addons, layers.active, status, plan_limits
    )
    full, granted = _grants(features, cap)
    return _Terms(features, limits, full, granted, _limit_values(limits))


def _denied(
    subscription: Subscription | None, layers: _Layers, status: SubscriptionStatus | None
) -> Decision:
    """The answer for what nothing grants, and why."""
    if subscription is None and layers.base is None:
        reason, source, why = Reason.NO_SUBSCRIPTION, Source.NONE, _NO_SUBSCRIPTION
    elif layers.access is Access.NONE:
        reason, source, why = Reason.STATUS, Source.STATUS_POLICY, layers.why
    else:
        reason, source, why = Reason.UNKNOWN, Source.NONE, _NOTHING_GRANTS
    return Decision("", False, reason, source, why, status)


_NO_SUBSCRIPTION = "no subscription and no fallback plan"
_NOTHING_GRANTS = "no plan, add-on or override grants it"


def _valid_until(
    layers: _Layers, usage_period: Period, subscription: Subscription | None
) -> datetime | None:
    """The next instant time alone changes an answer: an override ends, the usage period
    ends, a grace ends, or time changes the subscription (a trial end, an expiry...)."""
    changes = [o.expires_at for o in layers.active if o.expires_at is not None]
    changes.append(usage_period.end)
    for t in (layers.until, subscription.next_change_at() if subscription else None):
        if t:
            changes.append(t)
    return min(changes)
