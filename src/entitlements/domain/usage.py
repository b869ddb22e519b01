"""Usage against limits: seats, gauges and metered counters, and the decision whether N
more units are allowed.

Every limit kind is kept as a `Counter` (``used`` and ``reserved``) for one period:
metered limits start a new counter each billing period (old ones stay as history);
gauges and seats have one counter for all time (period `FOREVER`). A decision is a pure
function of the snapshot's limit, the counter and the amount, so the same rule holds on
the request path and inside the unit of work that records.

Charging (``consume``, batches, reservations, gauges) goes through one kernel: a
`Charge` made by `charge` carries the hard-limit ceiling the store counts under (`within`
is that rule), says whether the terms refuse it whatever the counter holds, and
`charged` turns what the store did — counted, or found the idempotency key recorded —
into the caller's decision: key reuse refused, over-limit facts set.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import attrs

from entitlements.domain.access import Access
from entitlements.domain.alerts import Thresholds
from entitlements.domain.checks import check_id, check_key
from entitlements.domain.instant import (
    as_utc,
    aware,
    optional_instant,
)
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Enforcement, Limit, LimitKind
from entitlements.domain.resolution import Reason, Snapshot
from entitlements.errors import IdempotencyKeyReused, InvalidInput

__all__ = [
    "FOREVER",
    "MAX_AMOUNT",
    "Charge",
    "Consumption",
    "Counter",
    "CounterAddition",
    "MetricTerms",
    "OverQuota",
    "OverQuotaPolicy",
    "Reservation",
    "ReservationStatus",
    "SeatAssignment",
    "UsageDecision",
    "UsageRecord",
    "alert_terms",
    "charge",
    "charged",
    "check_amount",
    "decide",
    "fallback_guard",
    "metric_terms",
    "slot_setters",
    "usage_period_start",
    "within",
]

MAX_AMOUNT = 10**12
FOREVER = datetime(1970, 1, 1, tzinfo=UTC)
"""The period start of counters that never roll over (gauges, seats)."""


def check_amount(value: object, field: str = "amount", *, allow_zero: bool = False) -> int:
    """Amounts are whole numbers of units: not bools, floats, Decimals or NaN; positive
    (or zero where a gauge may be emptied); and not absurdly large."""
    if isinstance(value, bool | float | Decimal) or not isinstance(value, int):
        if isinstance(value, float) and math.isnan(value):
            raise InvalidInput(field, "must be a whole number of units, not NaN", value)
        raise InvalidInput(field, f"must be a whole number of units, got {value!r}", value)
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(
            field, f"must be {'zero or more' if allow_zero else 'positive'}, got {value}", value
        )
    if value > MAX_AMOUNT:
        raise InvalidInput(field, f"must be at most {MAX_AMOUNT:,}, got {value:,}", value)
    return value


MAX_KEY = 128


def _short_id(value: object, field: str, refusal: str) -> str:
    """An id of at most `MAX_KEY` characters (a member, an idempotency key), refused with
    ``refusal`` when it is not a non-empty string of that length, then held to
    `check_id`'s rules."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY:
        raise InvalidInput(field, refusal, value)
    return check_id(value, field, max_length=MAX_KEY)


def check_member(value: object) -> str:
    refusal = f"must name the member (a non-empty id of at most {MAX_KEY} characters)"
    return _short_id(value, "member", refusal)


def check_idempotency_key(value: object) -> str | None:
    if value is None:
        return None
    refusal = f"an idempotency key is a non-empty string of at most {MAX_KEY} characters"
    return _short_id(value, "key", refusal)


def _pool(value: object) -> str:
    return check_key(value, "pool")


@attrs.frozen
class CounterAddition:
    """Units to add to one counter, with the conditions the caller decided them under:
    the store adds them only while the counter still stands where the caller read it.
    What the usage port's `add` and `add_counted_many` take."""

    owner: Owner
    """Whose counter."""
    metric: str
    """The limit name it counts against."""
    period_start: datetime
    """The start of the period the counter counts."""
    used: int = 0
    """Units to add to ``used`` (negative: to take back)."""
    reserved: int = 0
    """Units to add to ``reserved`` (negative: a reservation settled)."""
    ceiling: int | None = None
    """The most the counter may hold when its total grows (``None``: no ceiling)."""
    revision: int | None = None
    """The terms revision the counter must be stamped with (``None``: any, and a missing
    counter is created)."""
    now: datetime | None = None
    """When the total grows: refuse if a held reservation counted in it ran out by then."""
    fallback: tuple[str, int] | None = None
    """A fallback plan's key and version that must still be the latest (see
    ``fallback_guard``)."""
    hold_until: datetime | None = None
    """The expiry of units being reserved (kept as the counter's ``held_until``)."""


@attrs.frozen
class Consumption:
    """One ledger record to store and count, with the conditions the caller decided it
    under (as `CounterAddition`'s): what the usage port's `consume` and the inline fast
    path take."""

    record: UsageRecord
    """The record; its amount is added to the counter of its period."""
    ceiling: int | None
    """The most the counter may hold after it (``None``: no ceiling)."""
    revision: int
    """The terms revision the counter must be stamped with."""
    now: datetime
    """Refuse if a held reservation counted in the counter ran out by then."""
    fallback: tuple[str, int] | None = None
    """A fallback plan's key and version that must still be the latest."""


@attrs.frozen
class Counter:
    """``reserved`` counts held reservations; ``held_until`` is the earliest expiry among
    them (``None``: none held). Past it, some of ``reserved`` has run out and no longer
    counts (`effective` subtracts what a read found expired)."""

    owner: Owner
    """Whose usage it counts."""
    metric: str
    """The limit name it counts against."""
    period_start: datetime = attrs.field(converter=as_utc, validator=aware)
    """The start of the billing period it counts (metered limits start again at zero each
    period)."""
    used: int = 0
    """Units consumed and committed in the period (or the gauge's current amount)."""
    reserved: int = 0
    """Units held by open reservations; they count against the limit until settled or
    expired."""
    held_until: datetime | None = optional_instant()
    """When the first open reservation runs out (``None``: none held), so a read knows when
    ``reserved`` stops being exact."""

    def holds_expired(self, now: datetime) -> bool:
        """Whether some of ``reserved`` has run out by ``now`` and must not count any
        longer."""
        return self.held_until is not None and self.held_until <= now


@attrs.frozen
class UsageRecord:
    """One accepted consumption (or committed reservation); the idempotency key makes a
    retried request count once."""

    id: str
    """Unique per record."""
    owner: Owner
    """Whose usage it was."""
    metric: str
    """The limit name it counted against."""
    amount: int
    """How many units."""
    period_start: datetime = attrs.field(converter=as_utc, validator=aware)
    """The billing period it was booked into (the one holding ``at``)."""
    at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was consumed."""
    key: str | None = attrs.field(default=None, converter=check_idempotency_key)
    """The idempotency key the caller gave, so a retry is recognised and counted once."""


class ReservationStatus(enum.StrEnum):
    """Where a reservation is: still ``held``, ``committed`` (fully or partly),
    ``released``, or ``expired`` unused."""

    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@attrs.frozen
class Reservation:
    """Units set aside for a long job: committed (fully or partly) or released, or freed
    by the sweep when ``expires_at`` passes."""

    id: str
    """Pass it to ``commit`` or ``release``."""
    owner: Owner
    """Whose units it holds."""
    metric: str
    """The limit name the units count against."""
    amount: int
    """How many units it holds."""
    period_start: datetime = attrs.field(converter=as_utc, validator=aware)
    """The billing period the units count in."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was made."""
    expires_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When the held units are freed if nobody settled it (a crashed job does not keep them
    forever)."""
    status: ReservationStatus = ReservationStatus.HELD
    """Whether it still holds units."""
    committed: int = 0
    """Units actually used when it was committed (the rest went back)."""
    key: str | None = attrs.field(default=None, converter=check_idempotency_key)
    """The idempotency key the caller gave, so a retried reserve returns the same
    reservation."""
    settled_at: datetime | None = optional_instant()
    """When it was committed, released or expired."""


@attrs.frozen
class SeatAssignment:
    """A named member holding one seat of the owner's seat limit ``pool``."""

    owner: Owner
    """The owner whose seat it takes."""
    member: str = attrs.field(converter=check_member)
    """The host's id for the person holding the seat."""
    assigned_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When the seat was given."""
    pool: str = attrs.field(default="seats", converter=_pool)
    """The seat limit it counts against (``seats`` unless the plan has several pools)."""


class OverQuotaPolicy(enum.StrEnum):
    """What a change that leaves the owner over a new limit does: refuse it, or apply it
    and report (seed 002's over-quota warning)."""

    REFUSE = "refuse"
    ALLOW = "allow"


@attrs.frozen
class OverQuota:
    """A limit that current usage passes after a change (a downgrade, fewer seats)."""

    metric: str
    """The limit name."""
    limit: int
    """The limit after the change."""
    used: int
    """What is in use now."""


class UsageDecision(NamedTuple):
    """May ``requested`` more units of ``metric`` be used? ``limit`` is ``None`` when
    unlimited; ``remaining`` likewise. ``over_limit`` marks a soft limit passed.

    A named tuple rather than an attrs class: it is built on every warm check, and a
    tuple is built several times faster."""

    owner: Owner
    """Whose usage was checked."""
    metric: str
    """The limit name."""
    allowed: bool
    """Whether the units may be used (a soft limit allows and sets ``over_limit``)."""
    requested: int
    """The units asked for."""
    limit: int | None
    """The limit in force (``None``: unlimited)."""
    used: int
    """Units used in the period (for ``consume``: including this request's)."""
    reserved: int
    """Units held by open reservations, which count as used."""
    remaining: int | None
    """What is left under the limit given ``used`` and ``reserved`` (``None``: unlimited):
    before the request in a ``check``, after it in what ``consume`` returns."""
    enforcement: Enforcement
    """Whether the limit refuses (``hard``) or reports (``soft``)."""
    kind: LimitKind
    """How the limit counts (seats, gauge, metered)."""
    reason: Reason
    """Why, in the same vocabulary as `Decision.reason`."""
    detail: str
    """The same in words, fit for the error message a customer sees."""
    period_start: datetime
    """The billing period counted in."""
    over_limit: bool = False
    """A soft limit was passed: allowed, but worth a warning."""
    duplicate: bool = False
    """The idempotency key was seen before: nothing was counted again."""


def usage_period_start(snapshot: Snapshot, limit: Limit | None) -> datetime:
    if limit is None or limit.kind is not LimitKind.METERED:
        return FOREVER
    return snapshot.usage_period.start


def decide(snapshot: Snapshot, metric: str, counter: Counter, requested: int) -> UsageDecision:
    """The decision for ``requested`` more units given what the counter holds."""
    explained = snapshot.explain_limit(metric)
    definition = explained.limit or Limit(0)
    limit = snapshot.limit(metric, 0)
    committed = counter.used + counter.reserved
    fits = within(limit, committed + requested, 0)
    decision = UsageDecision(
        owner=snapshot.owner,
        metric=metric,
        allowed=fits,
        requested=requested,
        limit=limit,
        used=counter.used,
        reserved=counter.reserved,
        remaining=None if limit is None else max(limit - committed, 0),
        enforcement=definition.enforcement,
        kind=definition.kind,
        reason=explained.reason,
        detail=explained.detail,
        period_start=counter.period_start,
    )
    if snapshot.access is Access.READ_ONLY:
        return decision._replace(
            allowed=False,
            reason=Reason.READ_ONLY,
            detail=f"status {snapshot.status} is read-only",
        )
    if explained.reason in (Reason.UNKNOWN, Reason.NO_SUBSCRIPTION, Reason.STATUS):
        return decision._replace(allowed=False)
    if fits:
        return decision
    if definition.enforcement is Enforcement.SOFT:
        return decision._replace(
            allowed=True,
            over_limit=True,
            detail=f"{explained.detail}; soft limit {limit} passed",
        )
    return decision._replace(detail=f"{explained.detail}; hard limit {limit} reached")


# -- the charging kernel ----------------------------------------------------------------

REFUSED_BY_TERMS = (Reason.READ_ONLY, Reason.UNKNOWN, Reason.STATUS, Reason.NO_SUBSCRIPTION)
"""Reasons a charge is refused whatever the counter holds: the terms allow none of it."""


def within(ceiling: int | None, used: int, reserved: int) -> bool:
    """The hard-limit rule every count obeys: what is used and held stays at or under the
    ceiling (``None``: nothing to stay under). The stores apply it where they count — the
    memory store by calling this, the SQL stores in their conditional UPDATE — so two
    writers can never pass a hard limit together."""
    return ceiling is None or used + reserved <= ceiling


def fallback_guard(snapshot: Snapshot) -> tuple[str, int] | None:
    """Owners on the fallback plan follow its latest version: the count checks that the
    version it resolved is still the latest."""
    if snapshot.access is Access.FALLBACK and snapshot.plan_key is not None:
        assert snapshot.plan_version is not None
        return snapshot.plan_key, snapshot.plan_version
    return None


class MetricTerms(NamedTuple):
    """What charging one metric means under one snapshot, worked out once: the warm path
    keeps it beside the snapshot, for as long as the snapshot, and no longer."""

    snapshot: Snapshot
    """The terms it was worked out from."""
    metric: str
    """The limit name charged."""
    period_start: datetime
    """The period a charge counts in."""
    ceiling: int | None
    """The hard limit the store counts under (``None``: soft, unlimited or none)."""
    guard: tuple[str, int] | None
    """The fallback plan version the count checks is still the latest."""
    base: UsageDecision
    """The decision against an empty counter, nothing requested."""
    counts_seats: bool
    """Seats are assigned by name, never charged."""
    plain: bool
    """A charge needs nothing but the store's count: allowed by the terms, and no soft
    limit whose passing must be audited."""
    thresholds: Thresholds | None = None
    """The limit's alert thresholds (``None``: none configured, nothing to notify)."""


def metric_terms(snapshot: Snapshot, metric: str) -> MetricTerms:
    """How ``metric`` is charged under ``snapshot`` (the one home of the ceiling rule: a
    hard limit is the ceiling, any other limit none)."""
    definition = snapshot.limit_definition(metric)
    period = usage_period_start(snapshot, definition)
    base = decide(snapshot, metric, Counter(snapshot.owner, metric, period), 0)
    hard = base.enforcement is Enforcement.HARD
    seats = definition is not None and definition.kind is LimitKind.SEATS
    plain = base.allowed and not base.over_limit and (base.limit is None or hard) and not seats
    ceiling = base.limit if hard else None
    return MetricTerms(
        snapshot,
        metric,
        period,
        ceiling,
        fallback_guard(snapshot),
        base,
        seats,
        plain,
        alert_terms(snapshot, metric, definition),
    )


def alert_terms(snapshot: Snapshot, metric: str, definition: Limit | None) -> Thresholds | None:
    """The thresholds of ``metric`` under ``snapshot``: percentages of the limit in force
    (an override or add-on that changes the value moves them), counted once per billing
    period whatever kind of limit it is (``None``: no thresholds configured)."""
    if definition is None or not definition.alerts:
        return None
    return Thresholds(
        metric,
        snapshot.limit(metric, 0),
        definition.alerts,
        snapshot.usage_period.start,
        hard=definition.enforcement is Enforcement.HARD,
        seats=definition.kind is LimitKind.SEATS,
        unit=definition.unit,
    )


class Charge(NamedTuple):
    """One charge: ``amount`` units of a metric under one snapshot's terms, with the
    caller's idempotency key."""

    terms: MetricTerms
    """How the metric is charged."""
    amount: int
    """The units charged (zero for a gauge set to what is true)."""
    key: str | None = None
    """The idempotency key that makes a retry count once."""

    @property
    def before(self) -> UsageDecision:
        """The decision against an empty counter: what the terms alone say."""
        terms = self.terms
        if self.amount == 0:
            return terms.base
        empty = Counter(terms.snapshot.owner, terms.metric, terms.period_start)
        return decide(terms.snapshot, terms.metric, empty, self.amount)

    @property
    def denied(self) -> bool:
        """Refused whatever the counter holds: by status, or by a hard limit smaller than
        the amount alone."""
        before = self.before
        return not before.allowed and (
            before.reason in REFUSED_BY_TERMS or before.enforcement is Enforcement.HARD
        )

    def against(self, counter: Counter) -> UsageDecision:
        """The decision for this charge given what ``counter`` holds."""
        return decide(self.terms.snapshot, self.terms.metric, counter, self.amount)

    def refuse_seats(self) -> None:
        """Seats are assigned to named members; charging them is refused."""
        if self.terms.counts_seats:
            metric = self.terms.metric
            raise InvalidInput(
                "metric", f"{metric} counts seats: assign them with ents.seats.assign", metric
            )

    def reused_by(
        self, earlier: UsageRecord | Reservation, what: str = ""
    ) -> IdempotencyKeyReused | None:
        """The key recorded ``earlier`` for another metric or amount: a retry must repeat
        the request exactly, so this is refused (``None``: a true retry)."""
        if (earlier.metric, earlier.amount) == (self.terms.metric, self.amount):
            return None
        assert self.key is not None
        return IdempotencyKeyReused(
            self.key,
            f"{what}{earlier.amount} {earlier.metric}",
            f"{what}{self.amount} {self.terms.metric}",
        )


def charge(snapshot: Snapshot, metric: str, amount: int, key: str | None = None) -> Charge:
    """The charge of ``amount`` units of ``metric`` under ``snapshot``."""
    return Charge(metric_terms(snapshot, metric), amount, key)


def charged(charge: Charge, counter: Counter, earlier: UsageRecord | None = None) -> UsageDecision:
    """What a charge came to, given what the store did: counted it (``counter`` is the
    counter after), or found its key recorded ``earlier`` (``counter`` is the one that
    record counted in). A key reused for another charge raises `IdempotencyKeyReused`;
    a retry answers ``duplicate``; a count past the limit (a soft one: a hard one is
    never counted past) answers ``over_limit``."""
    snapshot = charge.terms.snapshot
    if earlier is not None:
        reused = charge.reused_by(earlier)
        if reused is not None:
            raise reused
        decision = decide(snapshot, earlier.metric, counter, earlier.amount)
        return decision._replace(duplicate=True)
    result = decide(snapshot, charge.terms.metric, counter, 0)._replace(requested=charge.amount)
    if not within(result.limit, counter.used, counter.reserved):
        return result._replace(over_limit=True)
    return result


def slot_setters(cls: type, *fields: str) -> tuple[Callable[[Any, Any], None], ...]:
    """Direct writers of the slots ``fields`` of ``cls``, in that order. The counting hot
    paths build `Counter` and `UsageRecord` values from parts checked already (a stored
    counter, a validated request) by writing the slots of ``object.__new__(cls)``: that
    skips the converters and validators, which cost more than the counting itself."""
    return tuple(cls.__dict__[field].__set__ for field in fields)
