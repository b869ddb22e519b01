"""Conversion (seed 000): a completed contract whose evidence verifies makes the owner's
subscription the paid one it describes, in one unit of work with the lifecycle steps
(`entitlements.service.lifecycle`) — converting the trial, or starting anew when the
trial ended while the contract was out for signature."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.checks import check_bool, parse_enum
from entitlements.domain.contracts.contract import Contract, ContractStatus
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.contracts.verify import verify_evidence
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.subscription import Event, Subscription
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import (
    ContractAlreadyConverted,
    ContractNotCompleted,
    ContractTermsMismatch,
    EvidenceBroken,
    InvalidInput,
)
from entitlements.service import lifecycle
from entitlements.service.assignment import PlanAssignment
from entitlements.service.contracts.records import (
    authorized,
    evidence_of,
    target,
)
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction

__all__ = ["ContractConversion"]


class ContractConversion:
    """From a signed contract to the paid subscription it describes."""

    _rt: Runtime
    _rules: PlanAssignment

    @retries_lost_races
    def convert(
        self,
        owner: Owner,
        contract_id: str,
        *,
        actor: Actor | str,
        seats: int | None = None,
        notes: str | None = None,
        now: datetime | None = None,
        keep_cancellation: bool = False,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
    ) -> Subscription:
        """From a completed contract whose evidence verifies, make the owner's subscription
        the paid one the contract describes — one unit of work, linked to the contract
        and audited. Refused, with nothing changed, otherwise.

        The contract's terms apply exactly: its plan at its pinned version, its seats
        (``seats`` may only repeat them; without pinned seats, ``seats`` sets them and
        leaving it out keeps the trial's), its billing cycle, and its amount and term
        (kept on the subscription's ``contract``). A trial (or pending checkout) is
        converted; an owner whose trial ended while the contract was out for signature
        gets a new subscription from it. A scheduled cancellation is cleared unless
        ``keep_cancellation``; usage over a new limit is refused unless ``if_over_quota``
        allows it. A contract converts once."""
        owner, who = as_owner(owner), as_actor(actor)
        check_bool(keep_cancellation, "keep_cancellation")
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = authorized(tx, who, owner, contract_id, "convert")
            history = tx.uow.subscriptions.history(owner)
            _check_convertible(tx, contract, history)
            chosen = _seats(contract, seats)
            note = (
                notes
                if notes is not None
                else f"converted from contract {contract.id}: {contract.title}"
            )
            current = history[-1] if history else None
            converted: Subscription
            if current is None or current.is_terminal:
                converted = self._from_contract(tx, who, owner, contract, current, chosen, note)
            else:
                converted = self._convert_trial(
                    tx, who, contract, chosen, note, keep_cancellation, policy
                )
            tx.record(
                who,
                "contract.convert",
                target(contract_id),
                owner=owner,
                after={
                    "subscription": converted.id,
                    "plan": converted.plan_key,
                    "plan_version": converted.plan_version,
                    "seats": converted.seats,
                },
            )
            return converted

    def _convert_trial(
        self,
        tx: Transaction,
        who: Actor,
        contract: Contract,
        seats: int | None,
        note: str,
        keep_cancellation: bool,
        policy: OverQuotaPolicy,
    ) -> Subscription:
        """The owner's trial (or pending checkout) converted onto the contract's terms."""
        terms = contract.terms
        asked = lifecycle.Conversion(
            terms.plan_key,
            terms.plan_version,
            {"notes": note} if seats is None else {"notes": note, "seats": seats},
            terms.cycle,
            keep_cancellation,
            ContractLink.of(contract),
        )
        current = lifecycle.load(tx, contract.owner)
        reason = f"contract {contract.id} completed"
        change = lifecycle.convert(tx, self._rules, who, current, asked, policy, reason=reason)
        return change.subscription

    def _from_contract(
        self,
        tx: Transaction,
        who: Actor,
        owner: Owner,
        contract: Contract,
        previous: Subscription | None,
        seats: int | None,
        note: str,
    ) -> Subscription:
        """Conversion is contract-driven: a trial that ended while the contract was out
        for signature (or an owner with none) starts a subscription on its terms."""
        terms = contract.terms
        plan_key = terms.plan_key or (previous.plan_key if previous is not None else None)
        if plan_key is None:
            raise InvalidInput(
                "contract",
                f"contract {contract.id} names no plan and {owner} has no subscription to convert",
            )
        if seats is None and previous is not None:
            seats = previous.seats
        version = terms.plan_version
        if version is None and terms.plan_key is None and previous is not None:
            version = previous.plan_version
        metadata = {} if previous is None else dict(previous.metadata)
        return lifecycle.start(
            tx,
            self._rules,
            who,
            Event.SUBSCRIBE,
            owner,
            tx.uow.plans.get(plan_key, version),
            seats=seats,
            cycle=terms.cycle,
            reason=f"contract {contract.id} completed",
            notes=note,
            metadata={**metadata, "contract_id": contract.id},
            contract=ContractLink.of(contract),
        )


def _check_convertible(
    tx: Transaction, contract: Contract, history: Sequence[Subscription]
) -> None:
    """A contract converts once it is completed, its evidence verifies, and only once."""
    if contract.status is not ContractStatus.COMPLETED:
        raise ContractNotCompleted(contract.id, contract.status.value)
    verification = verify_evidence(evidence_of(tx.uow, contract, None))
    if not verification.ok:
        raise EvidenceBroken(contract.id, verification.problems)
    for earlier in history:
        if earlier.contract is not None and earlier.contract.contract_id == contract.id:
            raise ContractAlreadyConverted(contract.id, earlier.id)


def _seats(contract: Contract, seats: int | None) -> int | None:
    """The contract's pinned seats (``seats`` may only repeat them), else ``seats``."""
    pinned = contract.terms.seats
    if seats is not None and pinned is not None and seats != pinned:
        raise ContractTermsMismatch(contract.id, "seats", pinned, seats)
    return pinned if pinned is not None else seats
