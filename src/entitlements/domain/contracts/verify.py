"""The offline verifier: checks a contract's evidence document (or a signed completion
certificate) with nothing but the document and, for certificates, the host's public key.

It recomputes the body hash, the terms hash, the content hash, every personal-data
commitment that still has its clear value, every event hash and link, every signature
record's binding, and the checkpoint; the first problem found names the broken link.
Only the standard library, `rfc8785` and `cryptography` are needed, so this module can be
copied next to an archive of certificates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from entitlements.domain.contracts.canonical import (
    canonical_body,
    canonical_json,
    commit,
    content_hash,
    sha256_hex,
)
from entitlements.domain.contracts.checkpoint import signature_valid
from entitlements.domain.contracts.events import GENESIS, event_hash

__all__ = ["Verification", "verify_certificate", "verify_evidence"]


@attrs.frozen
class Verification:
    """The result of checking an evidence file or certificate, offline."""

    problems: tuple[str, ...] = ()
    """Everything found wrong, in the order checked (empty: it verifies)."""

    @property
    def ok(self) -> bool:
        """Whether nothing was found wrong."""
        return not self.problems

    @property
    def first_broken(self) -> str | None:
        """The first problem, to print when it fails."""
        return self.problems[0] if self.problems else None


def _check_contract(contract: Mapping[str, Any], problems: list[str]) -> None:
    body = contract.get("body", "")
    if not isinstance(body, str) or canonical_body(body) != body:
        problems.append("contract body: not in canonical form (NFC, \\n line endings)")
    elif sha256_hex(body.encode("utf-8")) != contract.get("body_hash"):
        problems.append("contract body: does not match body_hash")
    if sha256_hex(canonical_json(contract.get("terms"))) != contract.get("terms_hash"):
        problems.append("contract terms: do not match terms_hash")
    if content_hash(
        str(contract.get("body_hash")), str(contract.get("terms_hash"))
    ) != contract.get("content_hash"):
        problems.append("contract: content_hash does not bind body_hash and terms_hash")


def _check_personal_data(personal: Mapping[str, Any], problems: list[str]) -> None:
    for commitment, entry in personal.items():
        value, salt = entry.get("value"), entry.get("salt")
        if value is None and salt is None:
            continue  # erased on request: the commitment alone stays
        try:
            matches = commit(str(value), bytes.fromhex(str(salt))) == commitment
        except ValueError:
            matches = False
        if not matches:
            problems.append(
                f"personal data {commitment[:12]}: the stored value does not match its commitment"
            )


def _check_events(
    contract: Mapping[str, Any], events: list[Mapping[str, Any]], problems: list[str]
) -> None:
    previous = GENESIS
    consents: dict[str, str] = {}
    for index, event in enumerate(events):
        where = f"event {index} ({event.get('type')})"
        problems.extend(f"{where}: {p}" for p in _chain_problems(contract, event, index, previous))
        if event.get("type") == "consented":
            consents[str(event.get("signer_id"))] = str(event.get("hash"))
        if event.get("type") == "signed":
            consent = consents.get(str(event.get("signer_id")))
            problems.extend(f"{where}: {p}" for p in _signature_problems(contract, event, consent))
        previous = str(event.get("hash"))


def _chain_problems(
    contract: Mapping[str, Any], event: Mapping[str, Any], index: int, previous: str
) -> list[str]:
    """How one event fails its place in the chain: its position, its contract and
    content, the link to the event before it, its own hash."""
    checks = [
        (event.get("seq") == index, f"out of order or missing (seq {event.get('seq')})"),
        (event.get("contract_id") == contract.get("id"), "belongs to another contract"),
        (event.get("content_hash") == contract.get("content_hash"), "refers to other content"),
        (event.get("prev_hash") == previous, "does not follow the event before it"),
        (event_hash(event) == event.get("hash"), "its fields do not match its hash"),
    ]
    return [problem for ok, problem in checks if not ok]


def _signature_problems(
    contract: Mapping[str, Any], event: Mapping[str, Any], consent: str | None
) -> list[str]:
    """How a signature fails to bind: to the content signed, to the signer's consent."""
    data = event.get("data") or {}
    problems = []
    if data.get("content_hash") != contract.get("content_hash"):
        problems.append("the signature is not bound to this content")
    if data.get("consent_event") != consent:
        problems.append("the signature is not bound to the signer's consent")
    return problems


def _check_checkpoint(
    checkpoint: Mapping[str, Any], events: list[Mapping[str, Any]], problems: list[str]
) -> None:
    payload = {k: v for k, v in checkpoint.items() if k != "signature"}
    if not signature_valid(
        str(checkpoint.get("public_key")), str(checkpoint.get("signature")), canonical_json(payload)
    ):
        problems.append("checkpoint: its signature is not valid")
        return
    count = checkpoint.get("count")
    if not isinstance(count, int) or count > len(events):
        problems.append(
            f"checkpoint: it covers {count} events but only {len(events)} remain (events were removed)"
        )
    elif count and events[count - 1].get("hash") != checkpoint.get("head_hash"):
        problems.append(f"checkpoint: event {count - 1} differs from the one the checkpoint signed")


def verify_evidence(document: Mapping[str, Any]) -> Verification:
    """Verify an evidence document (see `record.evidence_document`)."""
    problems: list[str] = []
    contract = document.get("contract") or {}
    events = list(document.get("events") or [])
    _check_contract(contract, problems)
    _check_personal_data(document.get("personal_data") or {}, problems)
    _check_events(contract, events, problems)
    if document.get("checkpoint"):
        _check_checkpoint(document["checkpoint"], events, problems)
    return Verification(tuple(problems))


def verify_certificate(
    certificate: Mapping[str, Any] | str | bytes, public_key_hex: str
) -> Verification:
    """Verify a completion certificate with the host's public key (hex, 32 bytes)."""
    document: Mapping[str, Any] = (
        json.loads(certificate) if isinstance(certificate, str | bytes) else certificate
    )
    signature = document.get("signature") or {}
    problems: list[str] = []
    if signature.get("public_key") != public_key_hex:
        problems.append("certificate: signed with another key")
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    if not signature_valid(public_key_hex, str(signature.get("value")), canonical_json(unsigned)):
        problems.append(
            "certificate: its signature is not valid (the document was changed after signing)"
        )
    if document.get("evidence", {}).get("contract", {}).get("status") != "completed":
        problems.append("certificate: the contract is not completed")
    return Verification(tuple(problems) + verify_evidence(document.get("evidence") or {}).problems)
