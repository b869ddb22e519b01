"""Completion certificates: the evidence document of a completed contract, signed with
the host's Ed25519 key, verifiable offline (`verify.verify_certificate`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entitlements.domain.contracts.canonical import canonical_json
from entitlements.domain.contracts.checkpoint import public_key_hex
from entitlements.domain.contracts.events import timestamp

__all__ = ["CERTIFICATE_FORMAT", "sign_certificate"]

CERTIFICATE_FORMAT = "entitlements-completion-certificate/1"


def sign_certificate(
    evidence: dict[str, Any], key: Ed25519PrivateKey, at: datetime
) -> dict[str, Any]:
    unsigned = {"format": CERTIFICATE_FORMAT, "issued_at": timestamp(at), "evidence": evidence}
    signature = key.sign(canonical_json(unsigned)).hex()
    return {
        **unsigned,
        "signature": {
            "algorithm": "Ed25519",
            "public_key": public_key_hex(key),
            "value": signature,
        },
    }
