"""Signed checkpoints: a plain hash chain cannot show that its tail was cut off, so the
host signs (contract id, event count, head hash) with its Ed25519 key; whoever keeps a
checkpoint can later prove the chain still holds at least that many events, unchanged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from entitlements.domain.contracts.canonical import canonical_json
from entitlements.domain.contracts.events import ContractEvent, timestamp
from entitlements.domain.instant import as_utc, aware
from entitlements.errors import InvalidInput

__all__ = [
    "Checkpoint",
    "check_signing_key",
    "public_key_hex",
    "sign_checkpoint",
    "signature_valid",
]


def check_signing_key(value: object, field: str = "key") -> Ed25519PrivateKey:
    """The host's signing key: an Ed25519 private key (a public key, a PEM string or
    ``None`` cannot sign, and would otherwise fail deep inside the signing)."""
    if not isinstance(value, Ed25519PrivateKey):
        raise InvalidInput(
            field,
            "must be an Ed25519 private key (cryptography's Ed25519PrivateKey)",
            type(value).__name__,
        )
    return value


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signature_valid(public_key_hex_value: str, signature_hex: str, payload: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex_value))
        key.verify(bytes.fromhex(signature_hex), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


@attrs.frozen
class Checkpoint:
    """A signed statement of a chain's length and last hash at one time: truncating the
    chain after it can be detected."""

    contract_id: str
    """The contract whose chain it covers."""
    count: int
    """How many events the chain had."""
    head_hash: str
    """The hash of the last of them."""
    issued_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was signed."""
    public_key: str = ""
    """The Ed25519 public key (hex) that verifies it."""
    signature: str = ""
    """The Ed25519 signature (hex) over ``payload``."""

    def payload(self) -> dict[str, Any]:
        """The document that is signed."""
        return {
            "contract_id": self.contract_id,
            "count": self.count,
            "head_hash": self.head_hash,
            "issued_at": timestamp(self.issued_at),
            "public_key": self.public_key,
        }

    def document(self) -> dict[str, Any]:
        """The payload with its signature, as the evidence file holds it."""
        return {**self.payload(), "signature": self.signature}

    def valid(self) -> bool:
        """Whether the signature verifies with ``public_key``."""
        return signature_valid(self.public_key, self.signature, canonical_json(self.payload()))


def sign_checkpoint(
    contract_id: str, events: list[ContractEvent], key: Ed25519PrivateKey, at: datetime
) -> Checkpoint:
    unsigned = Checkpoint(
        contract_id, len(events), events[-1].hash if events else "", at, public_key_hex(key)
    )
    return attrs.evolve(unsigned, signature=key.sign(canonical_json(unsigned.payload())).hex())
