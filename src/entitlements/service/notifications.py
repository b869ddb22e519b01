"""``ents.notifications``: the outbox of what the host should hear about, and its delivery.

Notifications are written by `append`, inside the unit of work of the change that causes
them (a consumption that crosses a threshold, a plan change, a trial converting), so they
exist exactly when the change does; the sweep writes the ones time brings (a trial ending
in N days, a contract left unsigned). One row per fact: writing the same fact twice —
two processes, a sweep run twice — stores it once.

`Notifications.deliver` hands them to the host's handler: claimed with a lease (so two
deliverers never hold one notification at once), each owner's in the order written,
marked delivered when the handler returns, backed off when it raises and parked as failed
after `MAX_ATTEMPTS`. A deliverer killed mid-batch leaves its claim to lapse and the rest
is handed over again, with the same ids: delivery is at least once, and a handler makes
its effect idempotent with the notification's id.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import attrs

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.alerts import Notice, Thresholds, threshold_notices
from entitlements.domain.checks import check_id, check_optional_id
from entitlements.domain.notification import (
    Delivery,
    Notification,
    NotificationSettings,
    after_failure,
    contract_notices,
    invoice_notices,
    next_contract_notice,
    pause_notices,
    retried,
    subscription_notices,
    trial_notices,
)
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import InvalidInput
from entitlements.ports import UnitOfWork
from entitlements.service.runtime import Runtime, Transaction

__all__ = [
    "Notifications",
    "append",
    "enqueue",
    "notify_subscription",
    "notify_usage",
    "purge",
    "write_due",
]

log = logging.getLogger("entitlements.notifications")

Handler = Callable[[Notification], object]
STAFF = Actor.system("staff")
_PURGE_BATCH = 10_000
_ENDING = frozenset({SubscriptionStatus.TRIALING, SubscriptionStatus.PAUSED})
"""The statuses whose subscriptions can end by themselves soon (a trial, a pause): the
sweep's scan for "ends in N days" reads only them, not every renewal in the window."""


def _notification(tx: Transaction, owner: Owner, notice: Notice) -> Notification:
    """The notice as stored: what it says, plus the id, the owner and the time written."""
    said = attrs.asdict(notice, recurse=False)
    return Notification(id=tx.runtime.new_id(), owner=owner, created_at=tx.now, **said)


def append(tx: Transaction, owner: Owner, notice: Notice) -> Notification | None:
    """Write ``notice`` about ``owner`` in the unit of work of the change that causes it;
    ``None`` when the same fact (its key) was written before."""
    notification = _notification(tx, owner, notice)
    return notification if tx.uow.notifications.add(notification) else None


def enqueue(tx: Transaction, owner: Owner, notice: Notice) -> None:
    """`append` when no answer is wanted: the store may write it with others, later in
    the unit of work (still once per fact)."""
    tx.uow.notifications.append(_notification(tx, owner, notice))


def notify_usage(
    tx: Transaction, owner: Owner, thresholds: Thresholds | None, before: int, after: int
) -> None:
    """A usage change from ``before`` to ``after`` units: a notification for each
    threshold it crosses (nothing at all to do when none are configured)."""
    if thresholds is None or not thresholds.crosses(before, after):
        return
    for notice in threshold_notices(thresholds, before, after, tx.now):
        enqueue(tx, owner, notice)


def notify_subscription(
    tx: Transaction,
    action: str,
    before: Subscription | None,
    after: Subscription,
    fact: str,
    reason: str | None = None,
) -> None:
    """What an audited change of a subscription tells the host (plan changed, trial
    converted or ended, a scheduled change applied or failed)."""
    for notice in subscription_notices(action, before, after, tx.now, fact, reason):
        enqueue(tx, after.owner, notice)


def _worker() -> str:
    """Names the deliverer holding a claim: host, process and a random part."""
    from entitlements.service.ids import new_id

    return f"{socket.gethostname()[:30]}:{os.getpid()}:{new_id()[:8]}"


def _tenants(value: object) -> list[str | None]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise InvalidInput("tenants", "must be a list of tenant names (None: every tenant)", value)
    return [check_optional_id(t, "tenants") for t in value]


def _positive(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10_000:
        raise InvalidInput(field, "must be a whole number from 1 to 10,000", value)
    return value


class Notifications:
    """``ents.notifications``: list, deliver and retry the host's notifications."""

    def __init__(self, runtime: Runtime, settings: NotificationSettings) -> None:
        self._rt = runtime
        self.settings = settings
        """Lead times and retention (`NotificationSettings`)."""

    # -- reading -----------------------------------------------------------------------

    def list(
        self,
        owner: Owner | None = None,
        *,
        tenant: str | None = None,
        failed: bool = False,
        limit: int = 50,
    ) -> Sequence[Notification]:
        """The newest notifications first: of ``owner`` (else of every owner of
        ``tenant``), only the ones parked as failed when ``failed``."""
        limit = _positive(limit, "limit")
        if owner is not None:
            owner = as_owner(owner)
            tenant = owner.tenant
        with self._rt.read(tenant) as uow:
            return uow.notifications.listed(owner, bool(failed), limit)

    def get(self, notification_id: str, *, tenant: str | None = None) -> Notification:
        """One notification by id; `NotFound` if the tenant has none such."""
        notification_id = check_id(notification_id, "notification_id", max_length=64)
        with self._rt.read(tenant) as uow:
            return uow.notifications.get(notification_id)

    # -- delivering --------------------------------------------------------------------

    def deliver(
        self,
        handler: Handler,
        *,
        batch: int = 100,
        lease: timedelta = timedelta(seconds=60),
        tenants: Sequence[str | None] | None = None,
    ) -> int:
        """Hand every notification due now to ``handler``, ``batch`` at a time, and
        return how many it took. Each owner's come in the order written. A handler that
        returns has taken the notification (marked delivered with its batch); one that
        raises has it tried again later — 30 s, 1 min, 2 min... — and parked as failed
        after `MAX_ATTEMPTS` (``retry`` puts it back). ``lease`` bounds how long a batch
        is held: a deliverer killed mid-batch lets go when it runs out, and a batch that
        takes longer hands over no more (keep a handler call well under it). Several
        deliverers may run at once, in any processes."""
        batch = _positive(batch, "batch")
        if not isinstance(lease, timedelta) or lease < timedelta(seconds=1):
            raise InvalidInput("lease", "must be a timedelta of a second or more", lease)
        if not callable(handler):
            raise InvalidInput("handler", "must be callable with a Notification", handler)
        worker = _worker()
        taken = 0
        for tenant in self._rt.store.tenants() if tenants is None else _tenants(tenants):
            done: Sequence[str] = ()
            let_go: Sequence[str] = ()
            while True:
                # one unit of work settles the batch handed over and claims the next
                with self._rt.transaction(tenant) as tx:
                    taken += tx.uow.notifications.delivered(done, worker, tx.now)
                    tx.uow.notifications.release(let_go, worker)
                    until = tx.now + lease
                    claimed = tx.uow.notifications.claim(worker, tx.now, until, batch)
                if not claimed:
                    break
                done, let_go = self._hand_over(tenant, worker, claimed, handler, until)
        return taken

    def _hand_over(
        self,
        tenant: str | None,
        worker: str,
        claimed: Sequence[Notification],
        handler: Handler,
        until: datetime,
    ) -> tuple[Sequence[str], Sequence[str]]:
        """Call the handler for each claimed notification while the claim lasts (with a
        margin); an owner whose notification failed gets no later one in this batch.
        Returns the ids taken and the ids let go untried."""
        deadline = time.monotonic() + (until - self._rt.now()).total_seconds() / 2
        done: list[str] = []
        let_go: list[str] = []
        stopped: set[Owner] = set()
        clock = time.monotonic
        for notification in claimed:
            if (stopped and notification.owner in stopped) or clock() > deadline:
                let_go.append(notification.id)
                continue
            try:
                handler(notification)
            except Exception as error:  # the host's code: any failure is a retry
                stopped.add(notification.owner)
                self._failed(tenant, worker, notification, f"{type(error).__name__}: {error}")
                continue
            done.append(notification.id)
        return done, let_go

    def _failed(
        self, tenant: str | None, worker: str, notification: Notification, error: str
    ) -> None:
        with self._rt.transaction(tenant) as tx:
            after = after_failure(notification, tx.now, error)
            tx.uow.notifications.update(after, worker)
        log.warning(
            "notification %s (%s) failed (attempt %d): %s",
            notification.id,
            notification.kind,
            after.attempts,
            error,
        )

    def retry(
        self, notification_id: str, *, tenant: str | None = None, actor: Actor | str = STAFF
    ) -> Notification:
        """Put a notification parked as failed back in line, its attempts counted afresh
        (staff, once the handler's trouble is fixed); audited."""
        notification_id = check_id(notification_id, "notification_id", max_length=64)
        who = as_actor(actor)
        with self._rt.transaction(tenant) as tx:
            current = tx.uow.notifications.get(notification_id)
            tx.authorize(who, "notification.retry", current.owner)
            if current.delivery is not Delivery.FAILED:
                raise InvalidInput(
                    "notification_id",
                    f"notification {notification_id} is {current.delivery.value}, not failed",
                    notification_id,
                )
            again = retried(current)
            tx.uow.notifications.update(again, None)
            tx.record(
                who,
                "notification.retry",
                f"notification:{current.id}",
                owner=current.owner,
                after={"kind": current.kind.value, "attempts": current.attempts},
            )
            return again


# -- the sweep's part -------------------------------------------------------------------


def write_due(rt: Runtime, settings: NotificationSettings, tenant: str | None, at: datetime) -> int:
    """Write what time brings by ``at`` — trials and pauses ending in N days, invoices
    falling due or overdue, contracts left unsigned, signing links about to stop working
    — once each, whoever runs it and however often; returns how many were new."""
    with rt.read(tenant) as uow:
        ending = [
            (s, notice)
            for s in _may_end(uow, at, settings)
            for notice in (*trial_notices(s, at, settings), *pause_notices(s, at, settings))
        ]
        invoices = list(uow.invoices.open_due(at + settings.invoice_horizon, 10_000))
        contracts = list(uow.contracts.due(at, 10_000))
    written = 0
    with rt.transaction(tenant, at) as tx:
        for subscription, notice in ending:
            written += append(tx, subscription.owner, notice) is not None
        for invoice in invoices:
            for notice in invoice_notices(invoice, at, settings):
                written += append(tx, invoice.owner, notice) is not None
        for contract in contracts:
            for notice in contract_notices(contract, at, settings):
                written += append(tx, contract.owner, notice) is not None
            tx.uow.contracts.schedule(
                contract.id, contract.revision, next_contract_notice(contract, at, settings)
            )
    return written


def _may_end(uow: UnitOfWork, at: datetime, settings: NotificationSettings) -> list[Subscription]:
    """Subscriptions that may end by themselves within the horizon: those stored trialing
    or paused, and whatever time has changed that is not stored yet (an owner the sweep
    found held, or whose catch-up failed) — a pause begun by time still reads active."""
    found = {s.id: s for s in uow.subscriptions.due(at + settings.horizon, 10_000, _ENDING)}
    for late in uow.subscriptions.due(at, 10_000):
        found.setdefault(late.id, late)
    return list(found.values())


def purge(rt: Runtime, settings: NotificationSettings, tenant: str | None, now: datetime) -> int:
    """Forget notifications delivered longer than the retention ago."""
    before = now - settings.retention
    total = 0
    while True:
        with rt.transaction(tenant, now) as tx:
            purged = tx.uow.notifications.purge(before, _PURGE_BATCH)
        total += purged
        if purged < _PURGE_BATCH:
            return total
