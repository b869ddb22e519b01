"""The published test vectors: the verifier accepts the valid certificate and names the
broken link in every tampered one; regenerating gives the same bytes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from entitlements.domain.contracts.verify import verify_certificate

VECTORS = Path(__file__).parent / "vectors" / "contracts"
PUBLIC_KEY = (VECTORS / "public_key.txt").read_text().strip()
EXPECTED = {
    "body_changed": "contract body",
    "event_field_changed": "event 3",
    "event_removed": "event 4",
    "events_reordered": "event 2",
    "tail_truncated": "checkpoint",
    "signature_changed": "certificate: its signature is not valid",
}


def load(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


def test_the_valid_certificate_verifies():
    assert verify_certificate(load("valid"), PUBLIC_KEY).ok


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_tampered_certificate_is_refused_naming_the_broken_link(name):
    result = verify_certificate(load(name), PUBLIC_KEY)
    assert not result.ok
    assert any(EXPECTED[name] in problem for problem in result.problems), result.problems


def test_regenerating_the_vectors_reproduces_them(tmp_path):
    spec = importlib.util.spec_from_file_location("generate_vectors", VECTORS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, content in module.files().items():
        assert (VECTORS / name).read_bytes() == content, (
            f"{name} is out of date: run tests/vectors/contracts/generate.py"
        )
