"""Contract events: immutable, hash-chained, and free of clear personal data.

Each event's ``hash`` is the SHA-256 of the RFC 8785 form of its document (every field but
``hash``), which includes the previous event's hash and the contract's content hash; the
first event's ``prev_hash`` is 64 zeros. Times are written ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
(UTC, always six decimals). IPs, user agents, typed names and decline reasons enter as
commitments.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from entitlements.domain.contracts.canonical import canonical_json, sha256_hex
from entitlements.domain.instant import as_utc, aware

__all__ = [
    "GENESIS",
    "ContractEvent",
    "EventType",
    "event_document",
    "event_hash",
    "linked",
    "timestamp",
]

GENESIS = "0" * 64


class EventType(enum.StrEnum):
    """What happened to a contract or one of its signers."""

    ISSUED = "issued"
    SENT = "sent"
    VIEWED = "viewed"
    CONSENTED = "consented"
    SIGNED = "signed"
    DECLINED = "declined"
    COMPLETED = "completed"
    VOIDED = "voided"
    EXPIRED = "expired"


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attrs.frozen
class ContractEvent:
    """One link of a contract's hash chain: each event commits to the one before, so
    removing or editing any breaks the chain."""

    contract_id: str
    """The contract it belongs to."""
    seq: int
    """Its place in the chain, from 1."""
    type: EventType
    """What happened."""
    at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it happened."""
    actor: str
    """Who did it (staff, the signer, the system)."""
    signer_id: str | None
    """The signer it concerns (``None`` for contract-wide events)."""
    ip: str | None
    """Commitment to the IP address, if one was given."""
    user_agent: str | None
    """Commitment to the user agent, if one was given."""
    data: Mapping[str, Any]
    """Details of the event (the signature's hash, a decline reason...), commitments in
    place of personal data."""
    content_hash: str
    """The contract content the event applies to."""
    prev_hash: str
    """The previous event's hash (zeros for the first)."""
    hash: str = ""
    """This event's hash over its canonical document."""


def event_document(event: ContractEvent, *, with_hash: bool = True) -> dict[str, Any]:
    document: dict[str, Any] = {
        "contract_id": event.contract_id,
        "seq": event.seq,
        "type": event.type.value,
        "at": timestamp(event.at),
        "actor": event.actor,
        "signer_id": event.signer_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "data": dict(event.data),
        "content_hash": event.content_hash,
        "prev_hash": event.prev_hash,
    }
    if with_hash:
        document["hash"] = event.hash
    return document


def event_hash(document: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in document.items() if k != "hash"}))


def linked(previous: ContractEvent | None, event: ContractEvent) -> ContractEvent:
    """``event`` as the link after ``previous`` (``None``: the first): its place in the
    chain, the hash it commits to and its own hash, so every writer chains alike."""
    event = attrs.evolve(
        event,
        seq=0 if previous is None else previous.seq + 1,
        prev_hash=GENESIS if previous is None else previous.hash,
        hash="",
    )
    return attrs.evolve(event, hash=event_hash(event_document(event, with_hash=False)))
