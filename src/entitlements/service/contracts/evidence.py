"""The evidence of a contract, for staff, auditors and the signer: the contract and its
events read back, the evidence document and its verification, signed checkpoints and
completion certificates, drawn signatures, and erasure of the personal data (the chain
keeps verifying: it holds commitments only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.checks import check_instance, check_text
from entitlements.domain.contracts.certificate import sign_certificate
from entitlements.domain.contracts.checkpoint import Checkpoint, check_signing_key, sign_checkpoint
from entitlements.domain.contracts.contract import Contract, ContractStatus
from entitlements.domain.contracts.events import ContractEvent
from entitlements.domain.contracts.verify import Verification, verify_evidence
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.page import DEFAULT_LIMIT, Page, check_limit, instant_cursor, page_of
from entitlements.errors import ContractNotCompleted
from entitlements.ports import UnitOfWork
from entitlements.service.contracts.records import (
    authorized,
    check_owner,
    contract_id_of,
    evidence_of,
    target,
)
from entitlements.service.runtime import Runtime

__all__ = ["ContractEvidence"]


def _owned(uow: UnitOfWork, owner: Owner, contract_id: str) -> Contract:
    contract = uow.contracts.get(contract_id_of(contract_id))
    check_owner(contract, owner)
    return contract


def _checkpoint_of(uow: UnitOfWork, contract: Contract, key: object, at: datetime) -> Checkpoint:
    signing_key = check_signing_key(key)
    return sign_checkpoint(contract.id, list(uow.contracts.events(contract.id)), signing_key, at)


class ContractEvidence:
    """Reading a contract back and proving what happened to it."""

    _rt: Runtime

    def get(self, owner: Owner, contract_id: str) -> Contract:
        """One of the owner's contracts; `ContractNotFound` also when the id belongs to
        another owner."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return _owned(uow, owner, contract_id)

    def list(
        self, owner: Owner, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[Contract]:
        """The owner's contracts, open and closed, oldest first, a page at a time: pass
        the page's ``next`` as ``cursor`` for the page after it."""
        owner = as_owner(owner)
        limit = check_limit(limit)
        since = instant_cursor(cursor, "contracts", str)
        with self._rt.read(owner.tenant) as uow:
            found = uow.contracts.page_for_owner(owner, since, limit + 1)
        return page_of([((c.created_at.isoformat(), c.id), c) for c in found], limit, "contracts")

    def events(self, owner: Owner, contract_id: str) -> Sequence[ContractEvent]:
        """The contract's hash-chained events, oldest first."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.contracts.events(_owned(uow, owner, contract_id).id)

    def evidence(
        self, owner: Owner, contract_id: str, checkpoint: Checkpoint | None = None
    ) -> dict[str, Any]:
        """The evidence document (`verify.verify_evidence` checks it, anywhere)."""
        owner = as_owner(owner)
        if checkpoint is not None:
            check_instance(checkpoint, Checkpoint, "checkpoint")
        with self._rt.read(owner.tenant) as uow:
            return evidence_of(uow, _owned(uow, owner, contract_id), checkpoint)

    def verify(
        self, owner: Owner, contract_id: str, checkpoint: Checkpoint | None = None
    ) -> Verification:
        """Recompute every hash from what is stored; with a checkpoint, also detect a
        chain cut short."""
        return verify_evidence(self.evidence(owner, contract_id, checkpoint))

    def checkpoint(
        self, owner: Owner, contract_id: str, key: Ed25519PrivateKey, now: datetime | None = None
    ) -> Checkpoint:
        """Sign (event count, head hash) for a signer or auditor to keep."""
        owner = as_owner(owner)
        at = self._rt.now(now)
        with self._rt.read(owner.tenant) as uow:
            return _checkpoint_of(uow, _owned(uow, owner, contract_id), key, at)

    def certificate(
        self, owner: Owner, contract_id: str, key: Ed25519PrivateKey, now: datetime | None = None
    ) -> dict[str, Any]:
        """The completion certificate: the evidence of a completed contract, with a
        checkpoint, signed with the host's Ed25519 key; JSON-ready. One read: the
        checkpoint and the evidence describe the same chain."""
        owner = as_owner(owner)
        at = self._rt.now(now)
        with self._rt.read(owner.tenant) as uow:
            contract = _owned(uow, owner, contract_id)
            evidence = evidence_of(uow, contract, _checkpoint_of(uow, contract, key, at))
        if evidence["contract"]["status"] != ContractStatus.COMPLETED.value:
            raise ContractNotCompleted(contract_id, evidence["contract"]["status"])
        return sign_certificate(evidence, key, at)

    def drawing(self, owner: Owner, contract_id: str, digest: str) -> tuple[str, bytes]:
        """A drawn signature: (content type, image bytes)."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.contracts.attachment(_owned(uow, owner, contract_id).id, digest)

    def erase_personal_data(
        self,
        owner: Owner,
        contract_id: str,
        *,
        actor: Actor | str,
        reason: str,
        now: datetime | None = None,
    ) -> int:
        """Forget every clear name, email, IP, user agent and typed name of the contract
        (a data-subject request). The chain still verifies: it holds commitments only.
        Returns how many values were erased."""
        owner, who = as_owner(owner), as_actor(actor)
        check_text(reason, "reason", max_length=2000, allow_empty=False)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = authorized(tx, who, owner, contract_id, "erase_personal_data")
            document = evidence_of(tx.uow, contract, None)
            commitments = [
                c for c, v in document["personal_data"].items() if v["value"] is not None
            ]
            tx.uow.contracts.erase_personal_data(commitments)
            tx.record(
                who,
                "contract.erase_personal_data",
                target(contract.id),
                owner=owner,
                reason=reason,
                after={"erased": len(commitments)},
            )
            return len(commitments)
