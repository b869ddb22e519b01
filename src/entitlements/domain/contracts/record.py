"""A contract's evidence as one JSON document: what `verify` checks and what a completion
certificate carries. Clear personal data travels beside the commitments (unless erased),
so a verifier can check that each clear value still matches what was hashed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from entitlements.domain.contracts.checkpoint import Checkpoint
from entitlements.domain.contracts.contract import Contract, PersonalData, terms_document
from entitlements.domain.contracts.events import ContractEvent, event_document, timestamp

__all__ = ["FORMAT", "evidence_document", "referenced_commitments"]

FORMAT = "entitlements-contract-evidence/1"


def referenced_commitments(contract: Contract, events: Iterable[ContractEvent]) -> set[str]:
    """Every personal-data commitment the contract and its events hold: the signers'
    names and e-mails, each request's IP and user agent, and values events committed to
    (a typed name, a decline reason)."""
    found = {s.name for s in contract.signers} | {s.email for s in contract.signers}
    for event in events:
        found.update(c for c in (event.ip, event.user_agent) if c)
        found.update(_committed(event))
    return found


def _committed(event: ContractEvent) -> Iterable[str]:
    return (v for k, v in event.data.items() if k.endswith("_commitment") and isinstance(v, str))


def evidence_document(
    contract: Contract,
    events: Iterable[ContractEvent],
    personal_data: Mapping[str, PersonalData],
    checkpoint: Checkpoint | None = None,
) -> dict[str, Any]:
    event_list = list(events)
    referenced = referenced_commitments(contract, event_list)
    return {
        "format": FORMAT,
        "contract": {
            "id": contract.id,
            "status": contract.status.value,
            "created_at": timestamp(contract.created_at),
            "expires_at": timestamp(contract.expires_at),
            "body": contract.body,
            "body_hash": contract.body_hash,
            "terms": terms_document(contract),
            "terms_hash": contract.terms_hash,
            "content_hash": contract.content_hash,
            "signers": [{"id": s.id, "status": s.status.value} for s in contract.signers],
        },
        "personal_data": {
            c: {"value": personal_data[c].value, "salt": personal_data[c].salt}
            for c in sorted(referenced)
            if c in personal_data
        },
        "events": [event_document(e) for e in event_list],
        "checkpoint": None if checkpoint is None else checkpoint.document(),
    }
