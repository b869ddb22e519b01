"""Subscriptions and their state machine.

The transition table is data (`TRANSITIONS`): the docs render it, the tests enumerate
it, and `transition` is the only way a subscription's status changes. An event that the
table does not allow from the current status raises `IllegalTransition` and returns
nothing, so the caller's subscription is untouched.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from entitlements.domain.addon import AddOn
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import (
    check_count,
    check_document,
    check_key,
    check_optional_id,
    check_optional_label,
    check_text,
    parse_enum,
)
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.frozen import freeze
from entitlements.domain.instant import (
    Period,
    as_optional_utc,
    as_utc,
    aware,
    optional_aware,
    optional_given,
    utc,
)
from entitlements.domain.owner import Owner
from entitlements.domain.scheduled import Pause, PendingChange, PendingKind
from entitlements.errors import ChangePending, IllegalTransition, InvalidInput, SubscriptionExists

__all__ = [
    "NEW",
    "TERMINAL",
    "TRANSITIONS",
    "Event",
    "Subscription",
    "SubscriptionStatus",
    "Transition",
    "transition",
    "transition_table_markdown",
    "with_changes",
]

MAX_SEATS = 10**7
MAX_NOTES = 10_000
MAX_METADATA_BYTES = 64 * 1024


class SubscriptionStatus(enum.StrEnum):
    """The canonical statuses; `docs/statuses.md` maps every seed's words onto them."""

    PENDING = "pending"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    SUSPENDED = "suspended"
    PAUSED = "paused"
    CANCELED = "canceled"
    EXPIRED = "expired"
    FAILED = "failed"


TERMINAL: frozenset[SubscriptionStatus] = frozenset(
    {SubscriptionStatus.CANCELED, SubscriptionStatus.EXPIRED, SubscriptionStatus.FAILED}
)

NEW = "new"
"""The pseudo-state of an owner with no subscription, or whose last one has ended."""


class Event(enum.StrEnum):
    """The events of the subscription lifecycle; `TRANSITIONS` says from which statuses each
    is allowed and where it leads."""

    START_TRIAL = "start_trial"
    SUBSCRIBE = "subscribe"
    BEGIN_CHECKOUT = "begin_checkout"
    ACTIVATE = "activate"
    FAIL = "fail"
    MARK_PAST_DUE = "mark_past_due"
    SETTLE = "settle"
    SUSPEND = "suspend"
    RESUME = "resume"
    SCHEDULE_CANCEL = "schedule_cancel"
    UNDO_CANCEL = "undo_cancel"
    CANCEL = "cancel"
    END_TRIAL = "end_trial"
    EXPIRE = "expire"
    CHANGE_PLAN = "change_plan"
    CHANGE_SEATS = "change_seats"
    CHANGE_ADDONS = "change_addons"
    RENEW_PERIOD = "renew_period"
    AMEND = "amend"
    SCHEDULE_CHANGE = "schedule_change"
    CANCEL_PENDING_CHANGE = "cancel_pending_change"
    APPLY_PENDING_CHANGE = "apply_pending_change"
    PAUSE = "pause"
    UNPAUSE = "unpause"


SAME = "same"
PREVIOUS = "previous"

_S = SubscriptionStatus
_LIVE = frozenset({_S.TRIALING, _S.ACTIVE, _S.PAST_DUE, _S.SUSPENDED, _S.PAUSED})
_BILLABLE = frozenset({_S.TRIALING, _S.ACTIVE, _S.PAST_DUE})


@attrs.frozen
class Transition:
    """``target`` is a status, ``"same"`` (the status does not change) or ``"previous"``
    (back to the status before suspension). ``"new"`` in ``sources`` means the owner has
    no live subscription."""

    event: Event
    sources: frozenset[str]
    target: str
    description: str


def _t(event: Event, sources: frozenset[Any], target: str, description: str) -> Transition:
    return Transition(event, frozenset(str(s) for s in sources), str(target), description)


TRANSITIONS: tuple[Transition, ...] = (
    _t(Event.START_TRIAL, frozenset({NEW}), _S.TRIALING, "put a new owner on a trial"),
    _t(
        Event.SUBSCRIBE,
        frozenset({NEW}),
        _S.ACTIVE,
        "assign a plan directly (free plans, staff billing)",
    ),
    _t(
        Event.BEGIN_CHECKOUT,
        frozenset({NEW}),
        _S.PENDING,
        "a paid plan waits for the payment provider",
    ),
    _t(
        Event.ACTIVATE,
        frozenset({_S.PENDING, _S.TRIALING}),
        _S.ACTIVE,
        "checkout confirmed, or trial converted",
    ),
    _t(Event.FAIL, frozenset({_S.PENDING}), _S.FAILED, "the billing flow failed"),
    _t(
        Event.MARK_PAST_DUE,
        frozenset({_S.ACTIVE}),
        _S.PAST_DUE,
        "payment overdue (seed 004: OnHold)",
    ),
    _t(Event.SETTLE, frozenset({_S.PAST_DUE}), _S.ACTIVE, "overdue payment resolved"),
    _t(Event.SUSPEND, _BILLABLE | {_S.PAUSED}, _S.SUSPENDED, "cap the owner at read-only"),
    _t(Event.RESUME, frozenset({_S.SUSPENDED}), PREVIOUS, "lift a suspension"),
    _t(Event.SCHEDULE_CANCEL, _BILLABLE, SAME, "cancel at the end of the period (or trial)"),
    _t(Event.UNDO_CANCEL, _BILLABLE, SAME, "keep a subscription that was set to cancel"),
    _t(Event.CANCEL, _LIVE | {_S.PENDING}, _S.CANCELED, "end the subscription now"),
    _t(Event.END_TRIAL, frozenset({_S.TRIALING}), _S.EXPIRED, "the trial ended without conversion"),
    _t(Event.EXPIRE, _LIVE, _S.EXPIRED, "the expiry date was reached"),
    _t(Event.CHANGE_PLAN, _LIVE, SAME, "upgrade, downgrade or migrate to a newer plan version"),
    _t(Event.CHANGE_SEATS, _LIVE, SAME, "change the number of purchased seats"),
    _t(Event.CHANGE_ADDONS, _LIVE, SAME, "add or remove add-ons"),
    _t(Event.RENEW_PERIOD, _LIVE, SAME, "start the next billing period"),
    _t(
        Event.AMEND,
        _LIVE | TERMINAL | {_S.PENDING},
        SAME,
        "edit notes, external id, metadata or expiry",
    ),
    _t(
        Event.SCHEDULE_CHANGE,
        _BILLABLE | {_S.PAUSED},
        SAME,
        "record a change (plan, seats, add-ons) or a pause to take effect later",
    ),
    _t(
        Event.CANCEL_PENDING_CHANGE,
        _LIVE,
        SAME,
        "drop the pending change; nothing in force changes",
    ),
    _t(
        Event.APPLY_PENDING_CHANGE,
        _LIVE,
        SAME,
        "a pending change reaches its instant (applied, or failed and dropped)",
    ),
    _t(Event.PAUSE, frozenset({_S.ACTIVE}), _S.PAUSED, "the customer pauses, now or at a date"),
    _t(Event.UNPAUSE, frozenset({_S.PAUSED}), _S.ACTIVE, "a pause ends, when asked or at its date"),
)

RULES: Mapping[Event, Transition] = {t.event: t for t in TRANSITIONS}


def transition_table_markdown() -> str:
    """The transition table as a Markdown table (the docs embed it; a test keeps them equal)."""
    rows = ["| event | from | to | meaning |", "|---|---|---|---|"]
    for t in TRANSITIONS:
        sources = ", ".join(f"`{s}`" for s in sorted(t.sources))
        target = {SAME: "(unchanged)", PREVIOUS: "(status before suspension)"}.get(
            t.target, f"`{t.target}`"
        )
        rows.append(f"| `{t.event.value}` | {sources} | {target} | {t.description} |")
    return "\n".join(rows) + "\n"


CREATION_EVENTS = frozenset(e for e, t in RULES.items() if NEW in t.sources)


def _status(value: object) -> SubscriptionStatus:
    return parse_enum(SubscriptionStatus, value, "status")


def _optional_status(value: object) -> SubscriptionStatus | None:
    return None if value is None else _status(value)


def _plan_key(value: object) -> str:
    return check_key(value, "plan_key")


def _seats(value: object) -> int | None:
    return None if value is None else check_count(value, "seats", maximum=MAX_SEATS)


_NO_METADATA: Mapping[str, Any] = freeze({})


def _metadata(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("metadata", "must be a JSON object (a mapping with string keys)", value)
    if not value:
        return _NO_METADATA
    check_document(value, "metadata")
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("metadata", f"must be JSON-serialisable: {exc}", value) from exc
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise InvalidInput("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON", value)
    frozen: Mapping[str, Any] = freeze(json.loads(text))
    return frozen


def _notes(value: object) -> str:
    return check_text(value, "notes", max_length=MAX_NOTES)


def _external_id(value: object) -> str | None:
    return check_optional_id(value, "external_id")


def _plan_manager(value: object) -> str | None:
    return check_optional_label(
        value, "plan_manager", example="the member id of the plan manager", max_length=255
    )


def _contract(value: object) -> ContractLink | None:
    if value is not None and not isinstance(value, ContractLink):
        raise InvalidInput("contract", "must be a ContractLink or None", value)
    return value


def _scheduled(value: object) -> PendingChange | None:
    if value is not None and (
        not isinstance(value, PendingChange) or value.kind is PendingKind.CANCEL
    ):
        raise InvalidInput("scheduled", "must be a PendingChange (a change or a pause) or None")
    return value


def _pause(value: object) -> Pause | None:
    if value is not None and not isinstance(value, Pause):
        raise InvalidInput("pause", "must be a Pause or None", value)
    return value


def _addons(value: Iterable[AddOn]) -> tuple[AddOn, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("addons", "must be AddOn values", value)
    addons = tuple(value)
    keys = [a.key for a in addons if isinstance(a, AddOn)]
    if len(keys) != len(addons):
        raise InvalidInput("addons", "must be AddOn values", value)
    if len(set(keys)) != len(keys):
        raise InvalidInput(
            "addons", "an add-on may appear only once (raise its quantity instead)", value
        )
    return tuple(sorted(addons, key=lambda a: a.key))


@attrs.frozen
class Subscription:
    """Links one owner to one plan version. ``revision`` is managed by the store."""

    id: str
    """Unique per subscription; an owner's ended subscriptions stay in its history."""
    owner: Owner
    """Who holds it."""
    plan_key: str = attrs.field(converter=_plan_key)
    """The plan it is on."""
    plan_version: int
    """The plan version it holds; new versions do not reach it until it is migrated."""
    status: SubscriptionStatus = attrs.field(converter=_status)
    """The stored status; time-driven changes already due are applied on reading (`as_of`),
    so answers never wait for the sweep."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it started."""
    updated_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it last changed."""
    seats: int | None = attrs.field(default=None, converter=_seats)
    """Seats purchased (``None``: the plan's seat limit applies)."""
    trial_ends_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    """When a trial ends without conversion (``None`` unless trialing)."""
    current_period: Period | None = None
    """The billing period now (``None``: no billing cycle); it rolls over by itself when it
    ends."""
    cycle: BillingCycle | None = None
    """The billing cycle periods roll on (``None``: not billed by period)."""
    cycle_anchor: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    """The instant periods are counted from, so a subscription started on the 31st renews on
    each month's last day."""
    cancel_at_period_end: bool = False
    """A cancellation is scheduled for the end of the period (or of the trial)."""
    canceled_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    """When it was canceled."""
    expires_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_given
    )
    """When it ends by itself (a fixed-term contract, an unpaid checkout)."""
    past_due_since: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    """When payment first failed; the past-due grace period counts from it."""
    suspended_from: SubscriptionStatus | None = attrs.field(
        default=None, converter=_optional_status
    )
    """The status to resume to, kept while suspended (a trial suspended still ends on time).
    """
    external_id: str | None = attrs.field(default=None, converter=_external_id)
    """The payment provider's id for it, when one bills it."""
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_metadata)
    """The host's own JSON data (at most 64 KiB); the library only stores it."""
    notes: str = attrs.field(default="", converter=_notes)
    """Free text for staff."""
    addons: tuple[AddOn, ...] = attrs.field(default=(), converter=_addons)
    """Add-ons bought on top of the plan."""
    revision: int = 0
    """Counts writes, so a stale copy cannot overwrite a newer one; managed by the store."""
    plan_manager: str | None = attrs.field(default=None, converter=_plan_manager)
    """Seed 003: the member who subscribed to the paid plan, the only member who may
    change or cancel it. Set by the checkout that started it, never by ``amend``."""
    contract: ContractLink | None = attrs.field(default=None, converter=_contract)
    """The signed contract this subscription was converted from, with its terms."""
    scheduled: PendingChange | None = attrs.field(default=None, converter=_scheduled)
    """The change or pause recorded to take effect later (at most one; a cancellation at
    period end is ``cancel_at_period_end``, and `pending_change` shows either)."""
    pause: Pause | None = attrs.field(default=None, converter=_pause)
    """The pause in force while ``paused`` (or suspended over a pause)."""

    @property
    def pending_change(self) -> PendingChange | None:
        """The one change waiting for its instant: a scheduled change or pause, or a
        cancellation at period end, as the same kind of value."""
        if self.scheduled is not None:
            return self.scheduled
        at = self.cancel_effective_at
        if at is None:
            return None
        return PendingChange(PendingKind.CANCEL, at)

    payment_due_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    """With staff-managed billing: when its oldest open invoice falls due. Still unpaid
    then, the subscription reads ``past_due`` from that instant (`entitlements.domain.due`);
    paying it moves this on to the next open invoice, or clears it."""

    @property
    def is_terminal(self) -> bool:
        """Whether it has ended for good (canceled, expired, failed); a new subscription is
        then needed."""
        return self.status in TERMINAL

    @property
    def cancel_effective_at(self) -> datetime | None:
        """When a scheduled cancellation takes effect: the period end, or the trial end
        for a trial without a billing period."""
        if not self.cancel_at_period_end:
            return None
        if self.status is _S.TRIALING and self.trial_ends_at is not None:
            return self.trial_ends_at
        return None if self.current_period is None else self.current_period.end

    def next_change_at(self) -> datetime | None:
        """The earliest instant at which time alone changes this subscription."""
        from entitlements.domain.due import next_change_at

        return next_change_at(self)


_FIELDS = attrs.fields(Subscription)
_NAMES = tuple(f.name for f in _FIELDS)
_CHECKS: Mapping[str, tuple[Any, Any, attrs.Attribute[Any]]] = {
    f.name: (f.converter, f.validator, f) for f in _FIELDS
}
_set = object.__setattr__


def _copier() -> Callable[[Subscription], Subscription]:
    """A copy of a subscription, field by field, written out once (a loop over the field
    names costs twice as much, and the kernel copies several times per step)."""
    lines = [f"    set_(new, {name!r}, old.{name})" for name in _NAMES]
    source = "def copy(old):\n    new = make(Subscription)\n" + "\n".join(lines)
    scope: dict[str, Any] = {"make": object.__new__, "set_": _set, "Subscription": Subscription}
    exec(source + "\n    return new\n", scope)
    copy: Callable[[Subscription], Subscription] = scope["copy"]
    return copy


_copy = _copier()


def with_changes(subscription: Subscription, **changes: Any) -> Subscription:
    """``attrs.evolve`` for a subscription, converting and validating only the fields
    given: the others were when ``subscription`` was built, and its converters give back
    what they are given once converted. Every change the kernel makes goes through here,
    several per step, so it costs a copy, not a rebuild (the metadata document is not
    serialised again)."""
    unknown = changes.keys() - _CHECKS.keys()
    if unknown:
        raise TypeError(f"Subscription has no field(s) {sorted(unknown)}")
    new = _copy(subscription)
    for name, value in changes.items():
        converter = _CHECKS[name][0]
        _set(new, name, value if converter is None else converter(value))
    for name in changes:
        _, validator, field = _CHECKS[name]
        if validator is not None:
            validator(new, field, getattr(new, name))
    return new


CARRIED = (
    "id",
    "owner",
    "created_at",
    "external_id",
    "metadata",
    "notes",
    "revision",
    "plan_manager",
    "contract",
)
"""What a subscription is rather than the terms it is on: which one, whose, since when, the
host's data and the write count. Time's rules (`entitlements.domain.due`) neither read
nor change them, so two subscriptions alike in every other field change alike."""
TERMS = tuple(name for name in _NAMES if name not in CARRIED)
"""Every other field: the terms time's rules read."""


def as_one_of(state: Subscription, subscription: Subscription) -> Subscription:
    """``state`` (a state time brought a subscription with the same `TERMS` to) as
    ``subscription``'s: its `CARRIED` fields, already converted and checked when
    ``subscription`` was built, copied over."""
    new = _copy(state)
    for name in CARRIED:
        _set(new, name, getattr(subscription, name))
    return new


def check_allowed(subscription: Subscription | None, event: Event) -> Transition:
    """The rule for ``event`` if the table allows it from the subscription's status; for
    the events that start a subscription, an ended one counts as none (``"new"``)."""
    rule = RULES[event]
    if event in CREATION_EVENTS:
        state = (
            NEW if subscription is None or subscription.is_terminal else subscription.status.value
        )
    else:
        state = "(none)" if subscription is None else subscription.status.value
    if state not in rule.sources:
        key = subscription.id if subscription is not None else "(none)"
        shown = subscription.status.value if subscription is not None else NEW
        raise IllegalTransition(
            "subscription", key, shown, event.value, tuple(sorted(rule.sources))
        )
    return rule


def _refused(subscription: Subscription, rule: Transition, why: str) -> IllegalTransition:
    return IllegalTransition(
        "subscription",
        subscription.id,
        f"{subscription.status.value} ({why})",
        rule.event.value,
        tuple(sorted(rule.sources)),
    )


def _cancel_flag(subscription: Subscription, rule: Transition) -> dict[str, Any]:
    """Scheduling a cancellation needs an end to cancel at (the period's, or a trial's)
    and none scheduled already; withdrawing one needs one scheduled."""
    if rule.event is Event.SCHEDULE_CANCEL:
        if subscription.cancel_at_period_end:
            raise _refused(subscription, rule, "cancel already scheduled")
        if subscription.scheduled is not None:
            raise ChangePending(
                subscription.owner,
                subscription.scheduled.describe(),
                "a cancellation at period end",
            )
        if subscription.current_period is None and (
            subscription.status is not _S.TRIALING or subscription.trial_ends_at is None
        ):
            raise InvalidInput(
                "cancel_at_period_end",
                "this subscription has no billing period to end; cancel it now or set expires_at",
            )
        return {"cancel_at_period_end": True}
    if rule.event is Event.UNDO_CANCEL:
        if not subscription.cancel_at_period_end:
            raise _refused(subscription, rule, "no cancel scheduled")
        return {"cancel_at_period_end": False}
    return {}


def _target(subscription: Subscription, rule: Transition) -> SubscriptionStatus:
    if rule.target == SAME:
        return subscription.status
    if rule.target == PREVIOUS:
        return subscription.suspended_from or _S.ACTIVE
    return SubscriptionStatus(rule.target)


def _bookkeeping(
    subscription: Subscription, status: SubscriptionStatus, changes: dict[str, Any], now: datetime
) -> None:
    """What each status carries, set in one place: what a suspension resumes to (set once,
    when it begins: events that keep the status must not overwrite it), since when a
    payment is overdue (through any suspension and resumption in between), when it was
    canceled."""
    if status is _S.SUSPENDED:
        if subscription.status is not _S.SUSPENDED:
            changes["suspended_from"] = subscription.status
    else:
        changes["suspended_from"] = None
    underlying = changes.get("suspended_from", subscription.suspended_from)
    if (underlying if status is _S.SUSPENDED else status) is _S.PAST_DUE:
        changes.setdefault("past_due_since", subscription.past_due_since or now)
    else:
        changes.setdefault("past_due_since", None)
    if status in TERMINAL:
        changes.setdefault(
            "canceled_at", now if status is _S.CANCELED else subscription.canceled_at
        )
        changes["cancel_at_period_end"] = False
        changes["scheduled"] = None
    paused = status is _S.PAUSED or (status is _S.SUSPENDED and underlying is _S.PAUSED)
    if not paused:
        changes["pause"] = None


def transition(
    subscription: Subscription, event: Event, now: datetime, **changes: Any
) -> Subscription:
    """Apply ``event`` at ``now``; ``changes`` are the event's own field updates (the
    new plan for ``change_plan``, the seats for ``change_seats``...).

    The bookkeeping each status carries (when it was canceled, what a suspension resumes
    to, since when a payment is overdue) is set here, in one place.
    """
    now = utc(now, "now")
    if event in CREATION_EVENTS:
        raise IllegalTransition(
            "subscription", subscription.id, subscription.status.value, event.value, (NEW,)
        )
    rule = check_allowed(subscription, event)
    changes.update(_cancel_flag(subscription, rule))
    status = _target(subscription, rule)
    _bookkeeping(subscription, status, changes, now)
    return with_changes(subscription, status=status, updated_at=now, **changes)


def create(
    event: Event,
    *,
    id: str,
    owner: Owner,
    plan_key: str,
    plan_version: int,
    now: datetime,
    current: Subscription | None,
    **fields: Any,
) -> Subscription:
    """Start a subscription for an owner that has none (or whose last one ended)."""
    if event not in CREATION_EVENTS:
        raise InvalidInput("event", f"{event.value} does not create a subscription")
    if current is not None and not current.is_terminal:
        raise SubscriptionExists(owner, current.status.value)
    rule = check_allowed(current, event)
    now = utc(now, "now")
    return Subscription(
        id=id,
        owner=owner,
        plan_key=plan_key,
        plan_version=plan_version,
        status=SubscriptionStatus(rule.target),
        created_at=now,
        updated_at=now,
        **fields,
    )


def trial_end(now: datetime, trial_days: int) -> datetime:
    return utc(now, "now") + timedelta(days=trial_days)
