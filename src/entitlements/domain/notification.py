"""Notifications: what the host should hear about, once — a usage threshold crossed, seats
full, a plan changed, a trial about to end — kept as rows of an outbox written in the
same transaction as the change that causes them, and handed to the host's handler until
it takes them.

The rules live here, pure (thresholds in `entitlements.domain.alerts`): what a change of a
subscription or the passing of time tells the host, what makes two notifications the same
fact (their ``key``: the store keeps one row per key, so a fact written twice — by two
processes, or by a sweep run twice — is one notification), and how a failed delivery is
retried (`after_failure`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from entitlements.domain.alerts import Notice, NotificationKind, check_lead_days
from entitlements.domain.checks import check_id, check_optional_text, parse_enum
from entitlements.domain.contracts.contract import Contract, SignerStatus
from entitlements.domain.due import as_of
from entitlements.domain.frozen import FrozenDict
from entitlements.domain.instant import (
    as_utc,
    aware,
    optional_instant,
)
from entitlements.domain.invoice import Invoice, InvoiceKind, InvoiceStatus
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import InvalidInput

__all__ = [
    "MAX_ATTEMPTS",
    "Delivery",
    "Notice",
    "Notification",
    "NotificationKind",
    "NotificationSettings",
    "after_failure",
    "contract_notices",
    "invoice_finalized",
    "invoice_notices",
    "next_contract_notice",
    "pause_notices",
    "retried",
    "subscription_notices",
    "trial_notices",
]

MAX_ATTEMPTS = 8
"""Deliveries tried before a notification is parked as failed, for staff to retry."""
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=6)


class Delivery(enum.StrEnum):
    """Where a notification is: waiting to be handed over (``pending``, perhaps after a
    failed try), taken (``delivered``), or given up after `MAX_ATTEMPTS` (``failed``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _kind(value: object) -> NotificationKind:
    return parse_enum(NotificationKind, value, "kind")


def _facts(value: object) -> FrozenDict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("facts", "must be a mapping of names to JSON values", value)
    return FrozenDict(value)


def _key(value: object) -> str:
    return check_id(value, "key", max_length=200)


def _error(value: object) -> str | None:
    if isinstance(value, str) and len(value) > 2000:
        value = value[:1997] + "..."
    return check_optional_text(value, "last_error", max_length=2000)


@attrs.frozen
class Notification:
    """One fact for the host to hear about, and where its delivery stands."""

    id: str
    """Stable across every delivery attempt: a handler that sends e-mail can use it as the
    idempotency key of the message."""
    owner: Owner
    """Whom it is about."""
    kind: NotificationKind = attrs.field(converter=_kind)
    """What happened."""
    key: str = attrs.field(converter=_key)
    """What makes it one fact: a second notification with the same key is not written."""
    facts: Mapping[str, Any] = attrs.field(converter=_facts)
    """The details a message needs (metric, threshold, limit, used, dates...), JSON."""
    about: datetime = attrs.field(converter=as_utc, validator=aware)
    """The instant it is about (the usage that crossed, the trial's end)."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was written."""
    attempts: int = 0
    """Deliveries tried that failed."""
    next_attempt_at: datetime | None = optional_instant()
    """Not handed over before this (a failed try backs off); ``None``: at once."""
    claimed_by: str | None = None
    """The deliverer holding it now, if any."""
    claimed_until: datetime | None = optional_instant()
    """When that deliverer's claim runs out (a killed deliverer's claim lapses)."""
    delivered_at: datetime | None = optional_instant()
    """When a handler took it."""
    failed_at: datetime | None = optional_instant()
    """When it was parked after `MAX_ATTEMPTS` failed tries."""
    last_error: str | None = attrs.field(default=None, converter=_error)
    """What the handler raised last."""

    @property
    def delivery(self) -> Delivery:
        """Whether it waits, was taken, or was given up."""
        if self.delivered_at is not None:
            return Delivery.DELIVERED
        if self.failed_at is not None:
            return Delivery.FAILED
        return Delivery.PENDING

    def due(self, now: datetime) -> bool:
        """Whether a deliverer may claim it at ``now``."""
        return (
            self.delivery is Delivery.PENDING
            and (self.next_attempt_at is None or self.next_attempt_at <= now)
            and (self.claimed_until is None or self.claimed_until <= now)
        )


def after_failure(notification: Notification, now: datetime, error: str) -> Notification:
    """A handler raised: try again later, waiting twice as long each time, or park it as
    failed after `MAX_ATTEMPTS` tries. Either way the claim is let go."""
    attempts = notification.attempts + 1
    wait = min(FIRST_BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF)
    return attrs.evolve(
        notification,
        attempts=attempts,
        next_attempt_at=now + wait,
        claimed_by=None,
        claimed_until=None,
        failed_at=now if attempts >= MAX_ATTEMPTS else None,
        last_error=error,
    )


_STARTS_OVER = ("attempts", "next_attempt_at", "claimed_by", "claimed_until", "failed_at")
"""The delivery state a retry clears (a failed notification was never delivered)."""


def retried(notification: Notification) -> Notification:
    """A failed notification back in line from its first attempt, as staff put it once
    the handler's trouble is fixed: what it says, when it was written and its last error
    are kept."""
    kept = attrs.asdict(notification, recurse=False, filter=attrs.filters.exclude(*_STARTS_OVER))
    return Notification(**kept)


# -- changes of a subscription --------------------------------------------------------


_PENDING_OUTCOMES = {
    "subscription.pending_change_applied": NotificationKind.CHANGE_APPLIED,
    "subscription.pending_change_failed": NotificationKind.CHANGE_FAILED,
}


def subscription_notices(
    action: str,
    before: Subscription | None,
    after: Subscription,
    at: datetime,
    fact_id: str,
    reason: str | None = None,
) -> tuple[Notice, ...]:
    """What one audited change of a subscription tells the host: its plan changed, its
    trial converted to paid, its trial ended, a scheduled change took effect or could not
    (``reason`` says why). ``fact_id`` (the audit event's id) tells plan changes and
    scheduled outcomes apart; a trial converts and ends once per subscription. A pending
    change cleared by a change tells nothing more: the change that cleared it has its own
    fact, with the same before and after."""
    if action == "subscription.pending_change_cleared":
        return ()
    found: list[Notice] = []
    facts = {
        "subscription_id": after.id,
        "plan_key": after.plan_key,
        "plan_version": after.plan_version,
        "status": after.status.value,
    }
    outcome = _PENDING_OUTCOMES.get(action)
    if outcome is not None:
        told = {**facts, "reason": reason}
        request = before.scheduled if before is not None else None
        due = at if request is None else request.at
        found.append(Notice(outcome, f"{outcome.value}:{fact_id}", told, due))
    trialing = SubscriptionStatus.TRIALING
    if before is not None and (before.plan_key, before.plan_version) != (
        after.plan_key,
        after.plan_version,
    ):
        changed = {**facts, "from_plan_key": before.plan_key, "from_version": before.plan_version}
        found.append(Notice(NotificationKind.PLAN_CHANGED, f"plan:{fact_id}", changed, at))
    if before is not None and before.status is trialing and after.status is not trialing:
        kind = (
            NotificationKind.TRIAL_CONVERTED
            if after.status is SubscriptionStatus.ACTIVE
            else NotificationKind.TRIAL_ENDED
        )
        about = before.trial_ends_at if kind is NotificationKind.TRIAL_ENDED else None
        found.append(Notice(kind, f"{kind.value}:{after.id}", facts, about or at))
    return tuple(found)


# -- what time brings -----------------------------------------------------------------


def _trial_ending_days(value: object) -> tuple[int, ...]:
    return check_lead_days(value, "trial_ending_days")


def _contract_unsigned_days(value: object) -> tuple[int, ...]:
    return check_lead_days(value, "contract_unsigned_days")


def _link_expiring_days(value: object) -> tuple[int, ...]:
    return check_lead_days(value, "link_expiring_days")


def _invoice_due_days(value: object) -> tuple[int, ...]:
    return check_lead_days(value, "invoice_due_days")


def _pause_ending_days(value: object) -> tuple[int, ...]:
    return check_lead_days(value, "pause_ending_days")


@attrs.frozen
class NotificationSettings:
    """What the host wants to hear ahead of time, and how long delivered notifications
    are kept."""

    trial_ending_days: tuple[int, ...] = attrs.field(default=(3,), converter=_trial_ending_days)
    """Days before a trial ends to hear "your trial ends in N days" (one notification
    each)."""
    contract_unsigned_days: tuple[int, ...] = attrs.field(
        default=(5,), converter=_contract_unsigned_days
    )
    """Days after a contract was issued, still unsigned, to hear of it."""
    link_expiring_days: tuple[int, ...] = attrs.field(default=(1,), converter=_link_expiring_days)
    """Days before a signer's signing link stops working to hear of it."""
    invoice_due_days: tuple[int, ...] = attrs.field(default=(3,), converter=_invoice_due_days)
    """Days before an open invoice falls due to hear "your invoice is due in N days"."""
    pause_ending_days: tuple[int, ...] = attrs.field(default=(3,), converter=_pause_ending_days)
    """Days before a pause ends by itself to hear of it."""
    retention: timedelta = attrs.field(default=timedelta(days=30))
    """How long a delivered notification is kept before the sweep forgets it."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.retention, timedelta) or self.retention <= timedelta(0):
            raise InvalidInput("retention", "must be a positive timedelta", self.retention)

    @property
    def horizon(self) -> timedelta:
        """How far ahead the sweep looks for trials and pauses ending."""
        return timedelta(days=max((*self.trial_ending_days, *self.pause_ending_days), default=0))

    @property
    def invoice_horizon(self) -> timedelta:
        """How far ahead the sweep looks for invoices falling due."""
        return timedelta(days=max(self.invoice_due_days, default=0))


def trial_notices(
    subscription: Subscription, now: datetime, settings: NotificationSettings
) -> tuple[Notice, ...]:
    """ "Your trial ends in N days", for each lead time reached by ``now`` while the trial
    still runs; one per (subscription, trial end, N), so a sweep run twice — or a trial
    extended and ending later — writes each once."""
    end = subscription.trial_ends_at
    if subscription.status is not SubscriptionStatus.TRIALING or end is None or end <= now:
        return ()
    return tuple(
        Notice(
            NotificationKind.TRIAL_ENDING,
            f"trial_ending:{subscription.id}:{end:%Y%m%dT%H%M%S}:{days}",
            {
                "subscription_id": subscription.id,
                "plan_key": subscription.plan_key,
                "days": days,
                "trial_ends_at": end.isoformat(),
            },
            end,
        )
        for days in settings.trial_ending_days
        if end - timedelta(days=days) <= now
    )


def contract_notices(
    contract: Contract, now: datetime, settings: NotificationSettings
) -> tuple[Notice, ...]:
    """A contract still waiting for signatures N days after it was issued, and signing
    links about to stop working (one per link: a resent link is a new one)."""
    found = [
        Notice(
            NotificationKind.CONTRACT_UNSIGNED,
            f"contract_unsigned:{contract.id}:{days}",
            {"contract_id": contract.id, "title": contract.title, "days": days},
            contract.created_at + timedelta(days=days),
        )
        for days in settings.contract_unsigned_days
        if contract.created_at + timedelta(days=days) <= now
    ]
    for signer in contract.signers:
        expires = signer.token_expires_at
        if (
            signer.status in (SignerStatus.SIGNED, SignerStatus.DECLINED)
            or expires is None
            or expires <= now
        ):
            continue
        for days in settings.link_expiring_days:
            if expires - timedelta(days=days) <= now:
                found.append(
                    Notice(
                        NotificationKind.SIGNING_LINK_EXPIRING,
                        f"link_expiring:{contract.id}:{signer.id}:{expires:%Y%m%dT%H%M%S}:{days}",
                        {
                            "contract_id": contract.id,
                            "signer_id": signer.id,
                            "role": signer.role,
                            "days": days,
                            "expires_at": expires.isoformat(),
                        },
                        expires,
                    )
                )
    return tuple(found)


def next_contract_notice(
    contract: Contract, now: datetime, settings: NotificationSettings
) -> datetime | None:
    """The first instant after ``now`` at which `contract_notices` finds a notice it did
    not find at ``now`` (``None``: none while the contract stays as it is): when the
    sweep has to look at the contract again."""
    instants = [
        contract.created_at + timedelta(days=days) for days in settings.contract_unsigned_days
    ]
    for signer in contract.signers:
        expires = signer.token_expires_at
        if signer.status in (SignerStatus.SIGNED, SignerStatus.DECLINED) or expires is None:
            continue
        instants.extend(expires - timedelta(days=days) for days in settings.link_expiring_days)
    return min((at for at in instants if at > now), default=None)


def invoice_finalized(invoice: Invoice) -> Notice:
    """An invoice issued, once per invoice (written with it)."""
    return Notice(
        NotificationKind.INVOICE_FINALIZED,
        f"invoice_finalized:{invoice.id}",
        _invoice_facts(invoice),
        invoice.issued_at,
    )


def _invoice_facts(invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "subscription_id": invoice.subscription_id,
        "currency": invoice.currency,
        "total": str(invoice.total),
        "due_at": invoice.due_at.isoformat(),
    }


def invoice_notices(
    invoice: Invoice, now: datetime, settings: NotificationSettings
) -> tuple[Notice, ...]:
    """An open invoice due in N days (each lead time reached by ``now`` before its due
    date), and overdue once its due date has passed — one per (invoice, N) and one
    overdue per invoice, however often the sweep runs. A paid or voided invoice tells
    nothing more."""
    if invoice.kind is not InvoiceKind.INVOICE or invoice.status is not InvoiceStatus.OPEN:
        return ()
    facts = _invoice_facts(invoice)
    if invoice.overdue(now):
        key = f"invoice_overdue:{invoice.id}"
        return (Notice(NotificationKind.INVOICE_OVERDUE, key, facts, invoice.due_at),)
    return tuple(
        Notice(
            NotificationKind.INVOICE_DUE,
            f"invoice_due:{invoice.id}:{days}",
            {**facts, "days": days},
            invoice.due_at,
        )
        for days in settings.invoice_due_days
        if invoice.due_at - timedelta(days=days) <= now
    )


def pause_notices(
    subscription: Subscription, now: datetime, settings: NotificationSettings
) -> tuple[Notice, ...]:
    """A pause in force (as time has made it by ``now``) that ends by itself in N days,
    for each lead time reached; one per (pause, N) — a pause extended to a later date is
    a new end and is told again."""
    pause = as_of(subscription, now).pause
    if pause is None or pause.until is None or pause.until <= now:
        return ()
    return tuple(
        Notice(
            NotificationKind.PAUSE_ENDING,
            f"pause_ending:{subscription.id}:{pause.since:%Y%m%dT%H%M%S}:"
            f"{pause.until:%Y%m%dT%H%M%S}:{days}",
            {
                "subscription_id": subscription.id,
                "plan_key": subscription.plan_key,
                "days": days,
                "paused_since": pause.since.isoformat(),
                "pause_ends_at": pause.until.isoformat(),
            },
            pause.until,
        )
        for days in settings.pause_ending_days
        if pause.until - timedelta(days=days) <= now
    )
