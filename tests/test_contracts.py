"""Contracts and e-signatures: seed 000's flow end to end, tamper evidence, tokens,
transitions, bad input, erasure, certificates and conversion (memory store; the SQL
stores run the contract suite)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from entitlements import (
    ContractNotCompleted,
    ContractNotFound,
    Entitlements,
    IllegalTransition,
    InvalidInput,
    InvalidToken,
    Limit,
    ManualClock,
    MemoryStore,
    NaiveDatetime,
    Owner,
    Plan,
    SubscriptionStatus,
)
from entitlements.domain.contracts.checkpoint import public_key_hex
from entitlements.domain.contracts.contract import ContractStatus, SignerSpec, SignerStatus
from entitlements.domain.contracts.verify import verify_certificate, verify_evidence

ACME = Owner("organization", "acme")
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
BODY = "Master Services Agreement\r\n\r\nThe customer subscribes to Pro for 12 months.\r\nCafe\u0301 clause.\n"
CONSENT = "I agree to use electronic records and signatures."
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def app():
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(
        Plan("pro", "Pro", limits={"seats": Limit(10)}, status="active"), actor="staff"
    )
    ents.subscriptions.start_trial(ACME, "pro", actor="staff:ann")
    return ents, clock


def issue(ents, **kwargs):
    fields = {
        "title": "MSA 2026",
        "body": BODY,
        "signers": [
            SignerSpec("Ada Lovelace", "ada@acme.test", "CEO", 1),
            SignerSpec("Bob Byte", "bob@acme.test", "CFO", 2),
        ],
        "actor": "staff:ann",
        "plan_key": "pro",
        "term": "12 months",
        "amount": Decimal("1200.00"),
        "currency": "EUR",
    }
    return ents.contracts.issue(ACME, **{**fields, **kwargs})


def sign_all(ents, tokens, clock):
    for signer_id, token in tokens.items():
        clock.advance(minutes=5)
        ents.contracts.open(token, ip="203.0.113.7", user_agent="Firefox/140")
        ents.contracts.consent(
            token,
            consent_text=CONSENT,
            consent_version="v3",
            ip="203.0.113.7",
            user_agent="Firefox/140",
        )
        if signer_id == "s1":
            ents.contracts.sign(
                token, typed_name="Ada Lovelace", ip="203.0.113.7", user_agent="Firefox/140"
            )
        else:
            ents.contracts.sign(token, drawing=PNG, ip="198.51.100.2", user_agent="Safari/19")


def test_seed_000_flow_end_to_end(app):
    ents, clock = app
    contract = issue(ents)
    assert contract.status is ContractStatus.CREATED
    assert "\r" not in contract.body
    assert "Café" in contract.body  # NFC
    tokens = ents.contracts.send(ACME, contract.id, actor="staff:ann")
    assert set(tokens) == {"s1", "s2"}
    with pytest.raises(ContractNotCompleted):
        ents.contracts.convert(ACME, contract.id, actor="staff:ann", seats=5)
    sign_all(ents, tokens, clock)
    done = ents.contracts.get(ACME, contract.id)
    assert done.status is ContractStatus.COMPLETED
    assert {s.status for s in done.signers} == {SignerStatus.SIGNED}
    types = [e.type.value for e in ents.contracts.events(ACME, contract.id)]
    assert types == [
        "issued",
        "sent",
        "viewed",
        "consented",
        "signed",
        "viewed",
        "consented",
        "signed",
        "completed",
    ]
    assert ents.contracts.verify(ACME, contract.id).ok
    certificate = ents.contracts.certificate(ACME, contract.id, KEY)
    assert verify_certificate(json.dumps(certificate), public_key_hex(KEY)).ok
    sub = ents.contracts.convert(ACME, contract.id, actor="staff:ann", seats=5, notes="MSA signed")
    assert (sub.status, sub.plan_key, sub.seats) == (SubscriptionStatus.ACTIVE, "pro", 5)
    assert sub.metadata["contract_id"] == contract.id
    actions = [e.action for e in ents.audit.for_owner(ACME)]
    assert actions[-2:] == ["subscription.convert", "contract.convert"]
    drawn = next(
        e for e in ents.contracts.events(ACME, contract.id) if e.data.get("method") == "drawn"
    )
    assert ents.contracts.drawing(ACME, contract.id, drawn.data["image_sha256"]) == (
        "image/png",
        PNG,
    )


def test_sequential_signing_waits_for_earlier_signers(app):
    ents, _ = app
    contract = issue(ents, sequential=True)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    view = ents.contracts.open(tokens["s2"])
    assert not view.may_sign_now
    ents.contracts.consent(tokens["s2"], consent_text=CONSENT, consent_version="v3")
    with pytest.raises(IllegalTransition, match="waiting"):
        ents.contracts.sign(tokens["s2"], typed_name="Bob")
    ents.contracts.open(tokens["s1"])
    ents.contracts.consent(tokens["s1"], consent_text=CONSENT, consent_version="v3")
    ents.contracts.sign(tokens["s1"], typed_name="Ada")
    assert ents.contracts.sign(tokens["s2"], typed_name="Bob").status is ContractStatus.COMPLETED


def test_consent_is_required_before_signing(app):
    ents, _ = app
    contract = issue(ents)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    ents.contracts.open(tokens["s1"])
    with pytest.raises(IllegalTransition, match="viewed"):
        ents.contracts.sign(tokens["s1"], typed_name="Ada")
    consent = ents.contracts.consent(tokens["s1"], consent_text=CONSENT, consent_version="v3")
    assert consent.data["consent_version"] == "v3"
    assert len(consent.data["consent_text_sha256"]) == 64
    assert consent.ip is None


def test_tokens_die_when_used_replaced_declined_voided_or_expired(app):
    ents, clock = app
    contract = issue(ents)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    fresh = ents.contracts.resend(ACME, contract.id, "s1", actor="staff")
    with pytest.raises(InvalidToken):
        ents.contracts.open(tokens["s1"])
    ents.contracts.open(fresh)
    ents.contracts.consent(fresh, consent_text=CONSENT, consent_version="v3")
    ents.contracts.sign(fresh, typed_name="Ada")
    with pytest.raises(InvalidToken):
        ents.contracts.decline(
            fresh, reason="changed my mind"
        )  # a signer who signed cannot decline
    ents.contracts.decline(tokens["s2"], reason="wrong amount")
    assert ents.contracts.get(ACME, contract.id).status is ContractStatus.DECLINED
    with pytest.raises(InvalidToken):
        ents.contracts.open(tokens["s2"])

    second = issue(ents)
    tokens = ents.contracts.send(ACME, second.id, actor="staff", link_valid_for=timedelta(days=1))
    clock.advance(days=2)
    with pytest.raises(InvalidToken):
        ents.contracts.open(tokens["s1"])
    ents.contracts.void(ACME, second.id, actor="staff", reason="terms changed")
    with pytest.raises(InvalidToken):
        ents.contracts.open(tokens["s2"])


def test_contracts_expire_through_the_sweep(app):
    ents, clock = app
    contract = issue(ents, valid_for=timedelta(days=3))
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    clock.advance(days=4)
    report = ents.process_due()
    assert [c.id for c in report.expired_contracts] == [contract.id]
    assert ents.contracts.get(ACME, contract.id).status is ContractStatus.EXPIRED
    with pytest.raises(InvalidToken):
        ents.contracts.open(tokens["s1"])
    assert ents.contracts.verify(ACME, contract.id).ok


@given(
    st.text(min_size=20, max_size=60, alphabet=st.characters(min_codepoint=33, max_codepoint=126))
)
@settings(max_examples=30)
def test_a_random_token_never_opens_a_link(token):
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(Plan("pro", "Pro", status="active"), actor="staff")
    contract = ents.contracts.issue(
        ACME, title="T", body="B", signers=[SignerSpec("A", "a@x.io")], actor="s"
    )
    ents.contracts.send(ACME, contract.id, actor="staff")
    with pytest.raises(InvalidToken):
        ents.contracts.open(token)


def test_illegal_staff_transitions_change_nothing(app):
    ents, clock = app
    contract = issue(ents)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    with pytest.raises(IllegalTransition):
        ents.contracts.send(ACME, contract.id, actor="staff")
    sign_all(ents, tokens, clock)
    before = copy.deepcopy(vars(ents.store.tables))
    with pytest.raises(IllegalTransition):
        ents.contracts.void(ACME, contract.id, actor="staff", reason="too late")
    with pytest.raises(IllegalTransition):
        ents.contracts.resend(ACME, contract.id, "s1", actor="staff")
    assert vars(ents.store.tables) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signers": []}, "signers"),
        ({"amount": Decimal("-1")}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"currency": "euro"}, "currency"),
        ({"body": "  "}, "body"),
        ({"signers": [SignerSpec("A", "a@x.io")], "valid_for": timedelta(days=900)}, "valid_for"),
    ],
)
def test_bad_contracts_are_refused(app, change, field):
    ents, _ = app
    with pytest.raises(InvalidInput) as caught:
        issue(ents, **change)
    assert caught.value.field == field


def test_bad_signers_and_signatures_are_refused(app):
    ents, _ = app
    with pytest.raises(InvalidInput, match="email"):
        SignerSpec("Ada", "not-an-email")
    contract = issue(ents)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    ents.contracts.open(tokens["s1"])
    ents.contracts.consent(tokens["s1"], consent_text=CONSENT, consent_version="v3")
    with pytest.raises(InvalidInput, match="PNG or JPEG"):
        ents.contracts.sign(tokens["s1"], drawing=b"GIF89a....")
    with pytest.raises(InvalidInput, match="KiB"):
        ents.contracts.sign(tokens["s1"], drawing=PNG + b"\x00" * (600 * 1024))
    with pytest.raises(InvalidInput, match="either"):
        ents.contracts.sign(tokens["s1"])
    with pytest.raises(InvalidToken):
        ents.contracts.sign("x" * 43, typed_name="Ada")
    with pytest.raises(NaiveDatetime):
        ents.contracts.sign(tokens["s1"], typed_name="Ada", now=datetime(2026, 3, 2))


# -- tamper evidence -----------------------------------------------------------------------


def _completed():
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(
        Plan("pro", "Pro", limits={"seats": Limit(10)}, status="active"), actor="staff"
    )
    ents.subscriptions.start_trial(ACME, "pro", actor="staff:ann")
    contract = issue(ents)
    sign_all(ents, ents.contracts.send(ACME, contract.id, actor="staff"), clock)
    checkpoint = ents.contracts.checkpoint(ACME, contract.id, KEY)
    return ents, contract, ents.contracts.evidence(ACME, contract.id, checkpoint)


@pytest.fixture
def completed():
    return _completed()


@pytest.fixture(scope="module")
def evidence():
    return _completed()[2]


def _flip(text: str, index: int) -> str:
    position = index % len(text)
    replacement = "x" if text[position] != "x" else "y"
    return text[:position] + replacement + text[position + 1 :]


@given(st.integers(0, 10**6))
@settings(max_examples=60)
def test_any_single_byte_change_to_the_body_is_detected(evidence, index):
    tampered = copy.deepcopy(evidence)
    tampered["contract"]["body"] = _flip(tampered["contract"]["body"], index)
    assert not verify_evidence(tampered).ok


EVENT_FIELDS = [
    "type",
    "at",
    "actor",
    "signer_id",
    "ip",
    "user_agent",
    "content_hash",
    "prev_hash",
    "hash",
]


@given(st.integers(0, 8), st.sampled_from(EVENT_FIELDS), st.integers(0, 10**6))
@settings(max_examples=80)
def test_any_change_to_any_event_field_is_detected(evidence, event_index, field, index):
    tampered = copy.deepcopy(evidence)
    event = tampered["events"][event_index]
    if event[field] is None:
        event[field] = "0" * 64
    else:
        event[field] = _flip(str(event[field]), index)
    assert not verify_evidence(tampered).ok


@given(st.permutations(list(range(9))))
@settings(max_examples=40)
def test_any_reordering_of_events_is_detected(evidence, order):
    if order == list(range(9)):
        return
    tampered = copy.deepcopy(evidence)
    tampered["events"] = [evidence["events"][i] for i in order]
    assert not verify_evidence(tampered).ok


@given(st.integers(0, 8))
def test_removing_any_event_is_detected(evidence, index):
    tampered = copy.deepcopy(evidence)
    del tampered["events"][index]
    result = verify_evidence(tampered)
    assert not result.ok
    assert result.first_broken


def test_a_cut_tail_is_caught_by_the_checkpoint(completed):
    _, _, evidence = completed
    tampered = copy.deepcopy(evidence)
    tampered["events"] = tampered["events"][:-2]
    without_checkpoint = dict(tampered, checkpoint=None)
    assert verify_evidence(without_checkpoint).ok, "a plain chain cannot see its tail cut"
    result = verify_evidence(tampered)
    assert "events were removed" in result.first_broken


def test_erasing_personal_data_keeps_the_chain_verifiable(completed):
    ents, contract, evidence = completed
    assert any(v["value"] == "ada@acme.test" for v in evidence["personal_data"].values())
    erased = ents.contracts.erase_personal_data(
        ACME, contract.id, actor="staff:dpo", reason="GDPR art. 17"
    )
    assert erased >= 6
    after = ents.contracts.evidence(ACME, contract.id)
    assert all(v["value"] is None for v in after["personal_data"].values())
    assert ents.contracts.verify(ACME, contract.id).ok
    assert [e.hash for e in ents.contracts.events(ACME, contract.id)] == [
        e["hash"] for e in evidence["events"]
    ]
    tampered = copy.deepcopy(evidence)
    commitment = next(iter(tampered["personal_data"]))
    tampered["personal_data"][commitment]["value"] = "someone else"
    assert "personal data" in verify_evidence(tampered).first_broken


def test_certificates_detect_changes_and_other_keys(completed):
    ents, contract, _ = completed
    certificate = ents.contracts.certificate(ACME, contract.id, KEY)
    public = public_key_hex(KEY)
    assert verify_certificate(certificate, public).ok
    changed = copy.deepcopy(certificate)
    changed["evidence"]["contract"]["terms"]["amount"] = "1.00"
    assert not verify_certificate(changed, public).ok
    other = public_key_hex(Ed25519PrivateKey.generate())
    assert "another key" in verify_certificate(certificate, other).first_broken


def test_a_contract_not_completed_has_no_certificate(app):
    ents, _ = app
    contract = issue(ents)
    with pytest.raises(ContractNotCompleted):
        ents.contracts.certificate(ACME, contract.id, KEY)


def test_contracts_of_other_owners_are_not_found(app):
    ents, _ = app
    contract = issue(ents)
    with pytest.raises(ContractNotFound):
        ents.contracts.get(Owner("organization", "globex"), contract.id)


@given(st.integers(0, 8), st.text(min_size=1, max_size=5))
@settings(max_examples=30)
def test_any_change_to_event_data_is_detected(evidence, event_index, extra):
    tampered = copy.deepcopy(evidence)
    tampered["events"][event_index]["data"]["note"] = extra
    assert not verify_evidence(tampered).ok
