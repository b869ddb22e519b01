"""The outbox to the payment provider: record a command in the deciding transaction,
send it after commit, retry it from the sweep.

A send reads the command, calls the provider with no transaction of ours open, then
records the answer in a unit of work of its own. A crash or a lost answer between the
call and that record leaves the command pending; the retry repeats the call under the
same idempotency key, and the provider answers without acting twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from entitlements.domain.actor import Actor
from entitlements.domain.billing import Checkout, ProviderLink, ProviderSubscription
from entitlements.domain.invoice import Invoice
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.provider_commands import (
    CommandKind,
    CommandStatus,
    ProviderCommand,
)
from entitlements.errors import NotFound
from entitlements.ports import InvoiceDelivery, PaymentProvider
from entitlements.serialization import to_document
from entitlements.service.runtime import Runtime, Transaction

__all__ = ["ProviderOutbox", "queue"]

OUTBOX = Actor.system("provider-outbox")
log = logging.getLogger("entitlements")


def _target(command: ProviderCommand) -> str:
    return f"provider_command:{command.id}"


def queue(
    tx: Transaction,
    kind: CommandKind,
    owner: Owner,
    payload: Mapping[str, Any],
    *,
    subscription_id: str | None = None,
) -> ProviderCommand:
    """Record a command in ``tx``, due now: the sweep sends what nobody sent after
    commit (a pending change the sweep, or any write, found due goes out this way)."""
    command_id = tx.runtime.new_id()
    command = ProviderCommand(
        id=command_id,
        owner=owner,
        kind=kind,
        payload=dict(payload),
        idempotency_key=f"ent-{command_id}",
        created_at=tx.now,
        subscription_id=subscription_id,
        next_attempt_at=tx.now,
    )
    tx.uow.provider.add_command(command)
    tx.record(
        OUTBOX,
        "billing.provider_command",
        _target(command),
        owner=owner,
        after={"kind": kind.value, "payload": dict(payload)},
    )
    return command


class ProviderOutbox:
    def __init__(self, runtime: Runtime, provider: Callable[[], PaymentProvider | None]) -> None:
        self._rt = runtime
        self._provider = provider

    def record(
        self,
        tx: Transaction,
        kind: CommandKind,
        owner: Owner,
        payload: Mapping[str, Any],
        *,
        subscription_id: str | None = None,
    ) -> ProviderCommand:
        """Record the command in ``tx`` and send it once ``tx`` is durable."""
        command = queue(tx, kind, owner, payload, subscription_id=subscription_id)

        def send() -> None:
            self.send(owner.tenant, command.id)

        tx.on_commit.append(send)
        return command

    def send(self, tenant: str | None, command_id: str) -> ProviderCommand | None:
        """Send one pending command; the provider's failures are recorded on the command
        (and retried by the sweep), never raised. ``None`` if there is no such command
        (the transaction that recorded it rolled back)."""
        with self._rt.read(tenant) as uow:
            try:
                command = uow.provider.command(command_id)
            except NotFound:
                return None
            if command.status is not CommandStatus.PENDING:
                return command
            plan = self._plan(uow, command)
            invoice = self._invoice(uow, command)
        provider = self._provider()
        try:
            if provider is None:
                raise RuntimeError("no payment provider is configured")
            answer = (
                self._deliver(provider, command, invoice)
                if invoice is not None
                else self._call(provider, command, plan)
            )
        except Exception as error:  # the host's provider code: any failure is a retry
            return self._failed(tenant, command, f"{type(error).__name__}: {error}")
        return self._delivered(tenant, command, answer)

    def send_due(
        self, tenant: str | None, now: datetime, batch: int = 500
    ) -> list[ProviderCommand]:
        """The sweep's part: send every pending command whose next attempt is due."""
        with self._rt.read(tenant) as uow:
            due = [c.id for c in uow.provider.due_commands(now, batch)]
        sent = []
        for command_id in due:
            result = self.send(tenant, command_id)
            if result is not None:
                sent.append(result)
        return sent

    # -- machinery ---------------------------------------------------------------------

    def _plan(self, uow: Any, command: ProviderCommand) -> Plan | None:
        key = command.payload.get("plan_key")
        if key is None:
            return None
        plan: Plan = uow.plans.get(key, command.payload.get("plan_version"))
        return plan

    def _invoice(self, uow: Any, command: ProviderCommand) -> Invoice | None:
        if command.kind is not CommandKind.SEND_INVOICE:
            return None
        invoice: Invoice = uow.invoices.get(command.payload["invoice_id"])
        return invoice

    def _deliver(
        self, provider: PaymentProvider, command: ProviderCommand, invoice: Invoice
    ) -> Any:
        if not isinstance(provider, InvoiceDelivery):
            raise RuntimeError("the payment provider does not take invoices (send_invoice)")
        return provider.send_invoice(invoice, idempotency_key=command.idempotency_key)

    def _call(self, provider: PaymentProvider, command: ProviderCommand, plan: Plan | None) -> Any:
        payload, key = command.payload, command.idempotency_key
        if command.kind is CommandKind.START_CHECKOUT:
            assert plan is not None
            return provider.start_checkout(
                command.owner, plan, seats=payload.get("seats"), reference=key
            )
        if command.kind is CommandKind.CHANGE_PLAN:
            assert plan is not None
            return provider.change_plan(
                payload["external_id"], plan, seats=payload.get("seats"), idempotency_key=key
            )
        return provider.cancel(
            payload["external_id"],
            at_period_end=bool(payload["at_period_end"]),
            idempotency_key=key,
        )

    def _failed(self, tenant: str | None, command: ProviderCommand, error: str) -> ProviderCommand:
        log.warning("payment provider command %s (%s) failed: %s", command.id, command.kind, error)
        with self._rt.transaction(tenant) as tx:
            failed = command.attempt_failed(tx.now, error)
            if not tx.uow.provider.update_command(failed, expected=command):
                return tx.uow.provider.command(command.id)  # another sender got there first
            tx.record(
                OUTBOX,
                "billing.provider_command_failed",
                _target(failed),
                owner=failed.owner,
                after={"attempts": failed.attempts, "status": failed.status.value},
                reason=error,
            )
            return failed

    def _delivered(
        self, tenant: str | None, command: ProviderCommand, answer: Any
    ) -> ProviderCommand:
        result: dict[str, Any]
        if isinstance(answer, Checkout):
            result = {"checkout_id": answer.id, "url": answer.url}
        else:
            result = dict(to_document(answer)) if answer is not None else {}
        with self._rt.transaction(tenant) as tx:
            latest = tx.uow.provider.command(command.id)
            if latest.status is CommandStatus.SENT:
                return latest
            done = latest.delivered(tx.now, result)
            # claim the command first: a concurrent sender waits on the row, then finds
            # it delivered and writes nothing
            if not tx.uow.provider.update_command(done, expected=latest):
                return tx.uow.provider.command(command.id)
            if isinstance(answer, Checkout):
                tx.uow.provider.put_link(
                    ProviderLink(
                        answer.id,
                        command.owner,
                        None,
                        answer.id,
                        answer.plan_key,
                        command.payload.get("manager"),
                    )
                )
            elif isinstance(answer, ProviderSubscription) and command.subscription_id:
                self._remember(tx, answer, command.subscription_id)
            tx.record(
                OUTBOX,
                "billing.provider_command_sent",
                _target(done),
                owner=done.owner,
                after={"kind": done.kind.value, "attempts": done.attempts},
            )
            return done

    def _remember(self, tx: Transaction, state: ProviderSubscription, subscription_id: str) -> None:
        existing = tx.uow.provider.link(state.external_id)
        if existing is not None and existing.subscription_id not in (None, subscription_id):
            return  # the link follows another subscription now; events decide
        tx.uow.provider.put_link(
            ProviderLink(
                state.external_id,
                state.owner,
                existing.last_applied_at if existing else None,
                existing.checkout_id if existing else state.checkout_id,
                state.plan_key,
                existing.manager if existing else None,
                subscription_id,
            )
        )
