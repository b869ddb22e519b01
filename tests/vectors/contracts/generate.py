"""Generate the contract certificate test vectors: one valid completion certificate and
tampered copies, deterministically (fixed key, times, ids, salts and tokens).

    python tests/vectors/contracts/generate.py        # rewrites the files beside this script
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entitlements import Entitlements, ManualClock, MemoryStore, Owner, Plan
from entitlements.domain.contracts.canonical import canonical_json
from entitlements.domain.contracts.checkpoint import public_key_hex
from entitlements.domain.contracts.contract import SignerSpec

HERE = Path(__file__).parent
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ACME = Owner("organization", "acme")


def certificate() -> dict:
    rng = random.Random(2026)
    ids = itertools.count(1)
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    ents = Entitlements(MemoryStore(), clock=clock, ids=lambda: f"id{next(ids):04d}")
    salts = mock.patch(
        "entitlements.service.contracts.records.secrets.token_bytes", side_effect=rng.randbytes
    )
    tokens = mock.patch(
        "entitlements.service.contracts.staff.new_token",
        side_effect=lambda: rng.randbytes(32).hex(),
    )
    with salts, tokens:
        ents.plans.define(Plan("pro", "Pro", status="active"), actor="staff:ann")
        ents.subscriptions.start_trial(ACME, "pro", actor="staff:ann")
        contract = ents.contracts.issue(
            ACME,
            title="Master Services Agreement",
            body="The customer subscribes to Pro.\nCafé clause.\n",
            signers=[
                SignerSpec("Ada Lovelace", "ada@acme.test", "CEO", 1),
                SignerSpec("Bob Byte", "bob@acme.test"),
            ],
            actor="staff:ann",
            plan_key="pro",
            term="12 months",
            amount=Decimal("1200.00"),
            currency="EUR",
        )
        links = ents.contracts.send(ACME, contract.id, actor="staff:ann")
        for signer_id, token in links.items():
            clock.advance(minutes=7)
            ents.contracts.open(token, ip="203.0.113.7", user_agent="Firefox/140")
            ents.contracts.consent(
                token,
                consent_text="I agree to sign electronically.",
                consent_version="v3",
                ip="203.0.113.7",
                user_agent="Firefox/140",
            )
            if signer_id == "s1":
                ents.contracts.sign(
                    token, typed_name="Ada Lovelace", ip="203.0.113.7", user_agent="Firefox/140"
                )
            else:
                ents.contracts.sign(
                    token, drawing=b"\x89PNG\r\n\x1a\n" + bytes(32), ip="198.51.100.2"
                )
        return ents.contracts.certificate(ACME, contract.id, KEY)


def tampered(valid: dict) -> dict[str, dict]:
    cases: dict[str, dict] = {}
    body = copy.deepcopy(valid)
    body["evidence"]["contract"]["body"] = body["evidence"]["contract"]["body"].replace(
        "Pro", "Pre"
    )
    cases["body_changed"] = body
    field = copy.deepcopy(valid)
    field["evidence"]["events"][3]["at"] = field["evidence"]["events"][3]["at"].replace(
        "09:", "08:"
    )
    cases["event_field_changed"] = field
    removed = copy.deepcopy(valid)
    del removed["evidence"]["events"][4]
    cases["event_removed"] = removed
    reordered = copy.deepcopy(valid)
    events = reordered["evidence"]["events"]
    events[2], events[3] = events[3], events[2]
    cases["events_reordered"] = reordered
    truncated = copy.deepcopy(valid)
    truncated["evidence"]["events"] = truncated["evidence"]["events"][:-2]
    cases["tail_truncated"] = truncated
    signature = copy.deepcopy(valid)
    value = signature["signature"]["value"]
    signature["signature"]["value"] = ("0" if value[0] != "0" else "1") + value[1:]
    cases["signature_changed"] = signature
    return cases


def files() -> dict[str, bytes]:
    valid = certificate()
    out = {"public_key.txt": (public_key_hex(KEY) + "\n").encode(), "valid.json": _json(valid)}
    out.update({f"{name}.json": _json(doc) for name, doc in tampered(valid).items()})
    return out


def _json(document: dict) -> bytes:
    assert canonical_json(document)  # every vector is canonicalisable JSON
    return (json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for name, content in files().items():
        (target / name).write_bytes(content)
