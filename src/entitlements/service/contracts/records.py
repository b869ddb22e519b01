"""What every contract use case writes and reads: the contract's hash-chained events,
personal data kept apart as commitments, the evidence document, and closing a contract
whose signing window ended. Functions over the caller's unit of work: staff, signers,
evidence and conversion (and the sweep) share them, none calls another use case.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.checks import check_id, check_optional_id
from entitlements.domain.contracts.checkpoint import Checkpoint
from entitlements.domain.contracts.contract import Contract, PersonalData, Signer
from entitlements.domain.contracts.events import ContractEvent, EventType, linked
from entitlements.domain.contracts.record import evidence_document, referenced_commitments
from entitlements.domain.owner import Owner
from entitlements.errors import ContractNotFound
from entitlements.service.runtime import Transaction

__all__ = [
    "SIGNER",
    "append_event",
    "authorized",
    "check_context",
    "check_owner",
    "contract_id_of",
    "evidence_of",
    "expire_if_due",
    "personal",
    "signer_event",
    "target",
    "without_tokens",
]

SIGNER = "signer"


def contract_id_of(value: object) -> str:
    return check_id(value, "contract_id", max_length=64)


def target(contract_id: str) -> str:
    return f"contract:{contract_id}"


def check_context(ip: str | None, user_agent: str | None) -> None:
    """Where a request came from, as the host passes it (seed 000: every transition is
    recorded with IP and user agent)."""
    for field, value in (("ip", ip), ("user_agent", user_agent)):
        check_optional_id(value, field, max_length=1000, padded=True)


def check_owner(contract: Contract, owner: Owner) -> None:
    """`ContractNotFound` for another owner's contract: its existence is not told."""
    if contract.owner != owner:
        raise ContractNotFound(contract.id)


def authorized(
    tx: Transaction, who: Actor, owner: Owner, contract_id: object, action: str
) -> Contract:
    """The owner's contract, once ``who`` may act on it as ``contract.<action>`` (the one
    decision the call asks for)."""
    contract = tx.uow.contracts.get(contract_id_of(contract_id))
    check_owner(contract, owner)
    tx.authorize(who, f"contract.{action}", owner, contract)
    return contract


def personal(tx: Transaction, value: str) -> str:
    """Keep ``value`` apart, salted; the chain holds only its commitment (erasable)."""
    data = PersonalData.of(value, secrets.token_bytes(32))
    tx.uow.contracts.put_personal_data(data)
    return data.commitment


def append_event(
    tx: Transaction,
    contract: Contract,
    type: EventType,
    actor: str,
    *,
    signer_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> ContractEvent:
    """Append the next event to the contract's hash chain (request context as
    commitments)."""
    unlinked = ContractEvent(
        contract_id=contract.id,
        seq=0,
        type=type,
        at=tx.now,
        actor=actor,
        signer_id=signer_id,
        ip=None if ip is None else personal(tx, ip),
        user_agent=None if user_agent is None else personal(tx, user_agent),
        data=dict(data or {}),
        content_hash=contract.content_hash,
        prev_hash="",
    )
    event = linked(tx.uow.contracts.last_event(contract.id), unlinked)
    tx.uow.contracts.append_event(event)
    return event


def signer_event(
    tx: Transaction,
    contract: Contract,
    signer: Signer,
    type: EventType,
    ip: str | None,
    user_agent: str | None,
    data: Mapping[str, Any] | None = None,
) -> ContractEvent:
    """A signer's step: chained, and audited as done by the signer."""
    check_context(ip, user_agent)
    event = append_event(
        tx,
        contract,
        type,
        f"{SIGNER}:{signer.id}",
        signer_id=signer.id,
        ip=ip,
        user_agent=user_agent,
        data=data,
    )
    tx.record(
        Actor(f"{SIGNER}-{signer.id}", "member"),
        f"contract.{type.value}",
        target(contract.id),
        owner=contract.owner,
    )
    return event


def evidence_of(uow: Any, contract: Contract, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """The evidence document of the contract as stored (`verify_evidence` checks it)."""
    events = list(uow.contracts.events(contract.id))
    wanted = referenced_commitments(contract, events)
    return evidence_document(
        contract, events, uow.contracts.personal_data(sorted(wanted)), checkpoint
    )


def without_tokens(contract: Contract) -> tuple[Signer, ...]:
    """The signers with their links withdrawn (a closed contract takes no signature)."""
    return tuple(attrs.evolve(s, token_hash=None, token_expires_at=None) for s in contract.signers)


def expire_if_due(tx: Transaction, contract_id: str) -> Contract | None:
    """Close one contract if it is still open and its window ended by ``tx.now``."""
    contract = tx.uow.contracts.get(contract_id)
    if contract.is_closed or contract.expires_at > tx.now:
        return None
    stored = tx.uow.contracts.update(
        attrs.evolve(contract, status=contract.check("expire"), signers=without_tokens(contract))
    )
    append_event(tx, stored, EventType.EXPIRED, "system:sweep")
    tx.record(
        Actor.system("sweep"),
        "contract.expire",
        target(contract_id),
        owner=contract.owner,
        reason=f"not completed by {contract.expires_at.isoformat()}",
    )
    return stored
