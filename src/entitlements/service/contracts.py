"""Use cases for contracts (seed 000): staff issue, send, void, verify and convert; signers
open, consent, sign or decline through their link — no account needed.

Every transition appends one event to the contract's hash chain in the same unit of work
as the state change, and is audited. Clear signing tokens are returned exactly once (by
``send``/``resend``) and never stored.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.assignment import check_may_assign
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import (
    check_bool,
    check_id,
    check_optional_id,
    check_reason,
    check_text,
    parse_enum,
)
from entitlements.domain.contracts.certificate import sign_certificate
from entitlements.domain.contracts.checkpoint import Checkpoint, sign_checkpoint
from entitlements.domain.contracts.contract import (
    MAX_SIGNERS,
    Contract,
    ContractStatus,
    PersonalData,
    Signer,
    SignerSpec,
    SignerStatus,
    Terms,
)
from entitlements.domain.contracts.events import ContractEvent, EventType, next_event
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.contracts.record import evidence_document
from entitlements.domain.contracts.signature import drawing_type
from entitlements.domain.contracts.tokens import hash_token, new_token, token_matches
from entitlements.domain.contracts.verify import Verification, verify_evidence
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.subscription import Event, Subscription
from entitlements.domain.usage import OverQuotaPolicy, check_idempotency_key
from entitlements.errors import (
    ContractAlreadyConverted,
    ContractNotCompleted,
    ContractNotFound,
    ContractTermsMismatch,
    EvidenceBroken,
    IllegalTransition,
    InvalidInput,
    InvalidToken,
)
from entitlements.service import lifecycle
from entitlements.service.assignment import PlanAssignment
from entitlements.service.requests import claim_key, settle_key
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction

__all__ = ["Contracts", "SigningView"]

SIGNER = "signer"
R = TypeVar("R")
MAX_CONSENT_TEXT = 20_000


@attrs.frozen
class SigningView:
    """What the public signing page shows a signer."""

    contract_id: str
    """The contract's id."""
    title: str
    """The contract's title."""
    body: str
    """The text to read before signing."""
    content_hash: str
    """What a signature commits to; show it so the signer can quote it."""
    terms: Terms
    """The commercial terms being agreed."""
    signer_id: str
    """The signer the link belongs to."""
    signer_name: str | None
    """The signer's name (``None`` once erased)."""
    signer_status: SignerStatus
    """Where the signer is (a signer must consent before signing)."""
    contract_status: ContractStatus
    """Where the contract is."""
    may_sign_now: bool
    """``False`` while earlier signers of a sequential contract have not signed."""
    owner: Owner | None = None
    """Whose contract this is: lets a signing page find the contract again once the link
    is used up (the page keeps it, MAC'd, in the signer's browser)."""


def _contract_id(value: object) -> str:
    return check_id(value, "contract_id", max_length=64)


def _target(contract_id: str) -> str:
    return f"contract:{contract_id}"


def _context(ip: str | None, user_agent: str | None) -> None:
    """Where a request came from, as the host passes it (seed 000: every transition is
    recorded with IP and user agent)."""
    for field, value in (("ip", ip), ("user_agent", user_agent)):
        check_optional_id(value, field, max_length=1000, padded=True)


class Contracts:
    """``ents.contracts``: issue a contract, collect typed or drawn signatures through
    signing links, verify the evidence, convert the trial."""

    def __init__(self, runtime: Runtime, assignment: PlanAssignment) -> None:
        self._rt = runtime
        self._rules = assignment

    # -- staff -------------------------------------------------------------------------

    def issue(
        self,
        owner: Owner,
        *,
        title: str,
        body: str,
        signers: Sequence[SignerSpec],
        actor: Actor | str,
        plan_key: str | None = None,
        term: str | None = None,
        amount: Decimal | str | None = None,
        currency: str | None = None,
        sequential: bool = False,
        valid_for: timedelta = timedelta(days=30),
        now: datetime | None = None,
        plan_version: int | None = None,
        seats: int | None = None,
        cycle: BillingCycle | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        key: str | None = None,
    ) -> Contract:
        """Snapshot and hash the agreement and its terms. Changing terms later means voiding
        this contract and issuing a new one.

        With ``key``, a repeat of the same request (after a lost acknowledgement) returns
        the contract the first one issued, as it stands now, instead of issuing another;
        the key given with another title, body, terms or signer roles raises
        `IdempotencyKeyReused`. Signers' names and e-mails are left out of that
        comparison: they are kept only where erasure can reach them.

        With a plan, the contract pins what conversion will apply: the plan's version
        (``plan_version``, else its latest now), the seats (``seats``, else the owner's
        current seats) and the billing cycle (``cycle``, else the plan version's). A plan
        that cannot be assigned to the owner (a draft, a retired plan) is refused.
        ``ip`` and ``user_agent`` are the staff member's request, kept as commitments."""
        owner, who = as_owner(owner), as_actor(actor)
        if isinstance(signers, str | bytes) or not isinstance(signers, Sequence):
            raise InvalidInput(
                "signers", "a contract needs a list of signers (SignerSpec)", signers
            )
        check_bool(sequential, "sequential")
        _context(ip, user_agent)
        specs = list(signers)
        if not specs or not all(isinstance(s, SignerSpec) for s in specs):
            raise InvalidInput(
                "signers", "a contract needs one or more signers (SignerSpec)", signers
            )
        if len(specs) > MAX_SIGNERS:
            raise InvalidInput("signers", f"at most {MAX_SIGNERS} signers", len(specs))
        if not isinstance(valid_for, timedelta) or not timedelta(hours=1) <= valid_for <= timedelta(
            days=365
        ):
            raise InvalidInput("valid_for", "must be between one hour and a year", valid_for)
        key = check_idempotency_key(key)
        terms = Terms(plan_key, term, amount, currency, plan_version, seats, cycle)
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "contract.issue", owner)
            asked = {
                "title": title,
                "body": body,
                "signers": [(spec.role, spec.order) for spec in specs],
                "terms": attrs.asdict(terms, recurse=False),
                "sequential": sequential,
                "valid_for": valid_for.total_seconds(),
            }
            earlier = claim_key(tx, owner, key, "contracts.issue", asked)
            if earlier is not None:
                return tx.uow.contracts.get(str(earlier.outcome["contract"]))
            if plan_key is not None:
                terms = self._pinned(tx, owner, terms)
            people: list[PersonalData] = []
            signer_values = []
            for index, spec in enumerate(specs):
                name, email = (
                    PersonalData.of(spec.name, secrets.token_bytes(32)),
                    PersonalData.of(spec.email, secrets.token_bytes(32)),
                )
                people += [name, email]
                signer_values.append(
                    Signer(
                        f"s{index + 1}", name.commitment, email.commitment, spec.role, spec.order
                    )
                )
            contract = Contract(
                id=self._rt.new_id(),
                owner=owner,
                title=title,
                body=body,
                terms=terms,
                signers=tuple(signer_values),
                sequential=sequential,
                created_at=tx.now,
                expires_at=tx.now + valid_for,
            ).with_hashes()
            stored = tx.uow.contracts.add(contract)
            for person in people:
                tx.uow.contracts.put_personal_data(person)
            self._event(
                tx,
                stored,
                EventType.ISSUED,
                str(who),
                ip=ip,
                user_agent=user_agent,
                data={"signers": len(specs)},
            )
            tx.record(
                who,
                "contract.issue",
                _target(stored.id),
                owner=owner,
                after={"title": stored.title, "content_hash": stored.content_hash},
            )
            settle_key(tx, owner, key, {"contract": stored.id})
            return stored

    def send(
        self,
        owner: Owner,
        contract_id: str,
        *,
        actor: Actor | str,
        link_valid_for: timedelta = timedelta(days=7),
        now: datetime | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> dict[str, str]:
        """Give every signer a signing link; returns ``{signer id: token}`` — the only time
        the clear tokens exist. Build the links from them; store nothing."""
        owner, who = as_owner(owner), as_actor(actor)
        _context(ip, user_agent)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = tx.uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            contract.check("send")
            tokens: dict[str, str] = {}
            signers = []
            for signer in contract.signers:
                token = new_token()
                tokens[signer.id] = token
                signers.append(
                    attrs.evolve(
                        signer,
                        status=SignerStatus.SENT,
                        token_hash=hash_token(token),
                        token_expires_at=self._link_expiry(contract, tx.now, link_valid_for),
                    )
                )
            stored = tx.uow.contracts.update(
                attrs.evolve(contract, signers=tuple(signers), status=ContractStatus.SENT)
            )
            self._event(
                tx,
                stored,
                EventType.SENT,
                str(who),
                ip=ip,
                user_agent=user_agent,
                data={"signers": sorted(tokens)},
            )
            tx.record(who, "contract.send", _target(contract_id), owner=owner)
            return tokens

    def resend(
        self,
        owner: Owner,
        contract_id: str,
        signer_id: str,
        *,
        actor: Actor | str,
        link_valid_for: timedelta = timedelta(days=7),
        now: datetime | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> str:
        """A new link for one signer; the old one stops working."""
        owner, who = as_owner(owner), as_actor(actor)
        _context(ip, user_agent)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = tx.uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            contract.check("resend")
            signer = contract.signer(signer_id)
            if signer.status in (SignerStatus.SIGNED, SignerStatus.DECLINED):
                raise IllegalTransition(
                    "signer",
                    signer_id,
                    signer.status.value,
                    "resend",
                    ("consented", "sent", "viewed"),
                )
            token = new_token()
            changed = attrs.evolve(
                signer,
                token_hash=hash_token(token),
                token_expires_at=self._link_expiry(contract, tx.now, link_valid_for),
            )
            stored = tx.uow.contracts.update(
                attrs.evolve(
                    contract,
                    signers=tuple(changed if s.id == signer_id else s for s in contract.signers),
                )
            )
            self._event(
                tx,
                stored,
                EventType.SENT,
                str(who),
                signer_id=signer_id,
                ip=ip,
                user_agent=user_agent,
                data={"resent": True},
            )
            tx.record(
                who,
                "contract.resend",
                _target(contract_id),
                owner=owner,
                reason=f"new link for {signer_id}",
            )
            return token

    def void(
        self,
        owner: Owner,
        contract_id: str,
        *,
        actor: Actor | str,
        reason: str,
        now: datetime | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> Contract:
        """Withdraw an open contract (staff); signing links stop working and a reason is
        recorded."""
        owner, who = as_owner(owner), as_actor(actor)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason", "say why the contract is voided", reason)
        check_reason(reason)
        _context(ip, user_agent)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = tx.uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            status = contract.check("void")
            stored = tx.uow.contracts.update(
                attrs.evolve(contract, status=status, signers=_without_tokens(contract))
            )
            self._event(
                tx,
                stored,
                EventType.VOIDED,
                str(who),
                ip=ip,
                user_agent=user_agent,
                data={"reason": reason},
            )
            tx.record(who, "contract.void", _target(contract_id), owner=owner, reason=reason)
            return stored

    def expire_due(self, tenant: str | None, now: datetime, batch: int = 500) -> list[Contract]:
        """Close contracts whose signing window ended (the sweep does this per contract
        with `_expire_if_due`)."""
        with self._rt.read(tenant) as uow:
            due = [c.id for c in uow.contracts.expired(now, batch)]
        expired = []
        for contract_id in due:
            with self._rt.transaction(tenant, now) as tx:
                stored = self._expire_if_due(tx, contract_id)
                if stored is not None:
                    expired.append(stored)
        return expired

    def _expire_if_due(self, tx: Transaction, contract_id: str) -> Contract | None:
        """Close one contract if it is still open and its window ended by ``tx.now``."""
        contract = tx.uow.contracts.get(contract_id)
        if contract.is_closed or contract.expires_at > tx.now:
            return None
        stored = tx.uow.contracts.update(
            attrs.evolve(
                contract, status=contract.check("expire"), signers=_without_tokens(contract)
            )
        )
        self._event(tx, stored, EventType.EXPIRED, "system:sweep")
        tx.record(
            Actor.system("sweep"),
            "contract.expire",
            _target(contract_id),
            owner=contract.owner,
            reason=f"not completed by {contract.expires_at.isoformat()}",
        )
        return stored

    # -- reading -----------------------------------------------------------------------

    def get(self, owner: Owner, contract_id: str) -> Contract:
        """One of the owner's contracts; `ContractNotFound` also when the id belongs to
        another owner."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            contract = uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            return contract

    def list(self, owner: Owner) -> Sequence[Contract]:
        """The owner's contracts, open and closed, oldest first."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.contracts.for_owner(owner)

    def events(self, owner: Owner, contract_id: str) -> Sequence[ContractEvent]:
        """The contract's hash-chained events, oldest first."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            self._check_owner(uow.contracts.get(_contract_id(contract_id)), owner)
            return uow.contracts.events(contract_id)

    def evidence(
        self, owner: Owner, contract_id: str, checkpoint: Checkpoint | None = None
    ) -> dict[str, Any]:
        """The evidence document (`verify.verify_evidence` checks it, anywhere)."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            contract = uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            return self._evidence(uow, contract, checkpoint)

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
            self._check_owner(uow.contracts.get(_contract_id(contract_id)), owner)
            return sign_checkpoint(contract_id, list(uow.contracts.events(contract_id)), key, at)

    def certificate(
        self, owner: Owner, contract_id: str, key: Ed25519PrivateKey, now: datetime | None = None
    ) -> dict[str, Any]:
        """The completion certificate: the evidence of a completed contract, with a
        checkpoint, signed with the host's Ed25519 key; JSON-ready."""
        checkpoint = self.checkpoint(owner, contract_id, key, now)
        evidence = self.evidence(owner, contract_id, checkpoint)
        if evidence["contract"]["status"] != ContractStatus.COMPLETED.value:
            raise ContractNotCompleted(contract_id, evidence["contract"]["status"])
        return sign_certificate(evidence, key, self._rt.now(now))

    def drawing(self, owner: Owner, contract_id: str, digest: str) -> tuple[str, bytes]:
        """A drawn signature: (content type, image bytes)."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            self._check_owner(uow.contracts.get(_contract_id(contract_id)), owner)
            return uow.contracts.attachment(contract_id, digest)

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
            contract = tx.uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            document = self._evidence(tx.uow, contract, None)
            commitments = [
                c for c, v in document["personal_data"].items() if v["value"] is not None
            ]
            tx.uow.contracts.erase_personal_data(commitments)
            tx.record(
                who,
                "contract.erase_personal_data",
                _target(contract_id),
                owner=owner,
                reason=reason,
                after={"erased": len(commitments)},
            )
            return len(commitments)

    # -- the public signing flow -------------------------------------------------------

    def open(
        self,
        token: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> SigningView:
        """The signer opened the link (viewed)."""

        def act(tx: Transaction, contract: Contract, signer: Signer) -> SigningView:
            after, changed = contract.after_signer(signer, "open")
            stored = tx.uow.contracts.update(after)
            self._signer_event(tx, stored, changed, EventType.VIEWED, ip, user_agent)
            names = tx.uow.contracts.personal_data([changed.name])
            person = names.get(changed.name)
            return SigningView(
                stored.id,
                stored.title,
                stored.body,
                stored.content_hash,
                stored.terms,
                changed.id,
                None if person is None else person.value,
                changed.status,
                stored.status,
                stored.may_act(changed),
                owner=stored.owner,
            )

        return self._as_signer(token, now, act)

    def consent(
        self,
        token: str,
        *,
        consent_text: str,
        consent_version: str,
        ip: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> ContractEvent:
        """ESIGN/UETA-style consent to do business electronically; required before signing.
        Records the version and hash of the text shown, with time, IP and user agent."""
        if (
            not isinstance(consent_text, str)
            or not consent_text.strip()
            or len(consent_text) > MAX_CONSENT_TEXT
        ):
            raise InvalidInput("consent_text", "the consent text shown to the signer is required")
        if (
            not isinstance(consent_version, str)
            or not consent_version.strip()
            or len(consent_version) > 100
        ):
            raise InvalidInput("consent_version", "name the version of the consent text")
        check_text(consent_text, "consent_text", max_length=MAX_CONSENT_TEXT)
        check_id(consent_version, "consent_version", max_length=100, padded=True)

        def act(tx: Transaction, contract: Contract, signer: Signer) -> ContractEvent:
            after, changed = contract.after_signer(signer, "consent")
            stored = tx.uow.contracts.update(after)
            digest = hashlib.sha256(consent_text.encode("utf-8")).hexdigest()
            return self._signer_event(
                tx,
                stored,
                changed,
                EventType.CONSENTED,
                ip,
                user_agent,
                {"consent_version": consent_version, "consent_text_sha256": digest},
            )

        return self._as_signer(token, now, act)

    def sign(
        self,
        token: str,
        *,
        typed_name: str | None = None,
        drawing: bytes | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> Contract:
        """Sign, typed (a name) or drawn (PNG/JPEG bytes). When the last signer signs the
        contract is completed."""
        if (typed_name is None) == (drawing is None):
            raise InvalidInput("signature", "sign with either a typed name or a drawing")
        if typed_name is not None and (
            not isinstance(typed_name, str) or not typed_name.strip() or len(typed_name) > 200
        ):
            raise InvalidInput("typed_name", "must be the signer's name, 1 to 200 characters")
        if typed_name is not None:
            check_text(typed_name, "typed_name", max_length=200)
        content_type = drawing_type(drawing) if drawing is not None else None

        def act(tx: Transaction, contract: Contract, signer: Signer) -> Contract:
            if not contract.may_act(signer):
                raise IllegalTransition(
                    "signer",
                    signer.id,
                    f"{signer.status.value} (waiting for earlier signers)",
                    "sign",
                    (),
                )
            events = tx.uow.contracts.events(contract.id)
            consent = next(
                (
                    e
                    for e in reversed(events)
                    if e.type is EventType.CONSENTED and e.signer_id == signer.id
                ),
                None,
            )
            after, changed = contract.after_signer(signer, "sign")
            stored = tx.uow.contracts.update(after)
            data: dict[str, Any] = {
                "content_hash": stored.content_hash,
                "consent_event": None if consent is None else consent.hash,
                "signed_at": tx.now.isoformat(),
            }
            if typed_name is not None:
                data["method"] = "typed"
                data["typed_name_commitment"] = self._personal(tx, typed_name)
            else:
                assert drawing is not None
                assert content_type is not None
                digest = hashlib.sha256(drawing).hexdigest()
                tx.uow.contracts.put_attachment(stored.id, digest, content_type, drawing)
                data.update(method="drawn", image_sha256=digest, image_type=content_type)
            signed = self._signer_event(tx, stored, changed, EventType.SIGNED, ip, user_agent, data)
            if stored.status is ContractStatus.COMPLETED:
                # completed by this signature: its signer, IP and user agent
                self._event(
                    tx,
                    stored,
                    EventType.COMPLETED,
                    "system:signing",
                    signer_id=changed.id,
                    ip=ip,
                    user_agent=user_agent,
                    data={"signature_event": signed.hash},
                )
                tx.record(
                    Actor.system("signing"),
                    "contract.complete",
                    _target(stored.id),
                    owner=stored.owner,
                )
            return stored

        return self._as_signer(token, now, act)

    def decline(
        self,
        token: str,
        *,
        reason: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> Contract:
        """The signer holding ``token`` refuses to sign; the contract closes as declined."""
        check_reason(reason)

        def act(tx: Transaction, contract: Contract, signer: Signer) -> Contract:
            after, changed = contract.after_signer(signer, "decline")
            stored = tx.uow.contracts.update(attrs.evolve(after, signers=_without_tokens(after)))
            data = {} if not reason else {"reason_commitment": self._personal(tx, reason)}
            self._signer_event(tx, stored, changed, EventType.DECLINED, ip, user_agent, data)
            tx.record(
                Actor(f"{SIGNER}-{changed.id}", "member"),
                "contract.decline",
                _target(stored.id),
                owner=stored.owner,
            )
            return stored

        return self._as_signer(token, now, act)

    # -- conversion --------------------------------------------------------------------

    @retries_lost_races
    def convert(
        self,
        owner: Owner,
        contract_id: str,
        *,
        actor: Actor | str,
        seats: int | None = None,
        notes: str | None = None,
        now: datetime | None = None,
        keep_cancellation: bool = False,
        if_over_quota: OverQuotaPolicy = OverQuotaPolicy.REFUSE,
    ) -> Subscription:
        """From a completed contract whose evidence verifies, make the owner's subscription
        the paid one the contract describes — one unit of work, linked to the contract
        and audited. Refused, with nothing changed, otherwise.

        The contract's terms apply exactly: its plan at its pinned version, its seats
        (``seats`` may only repeat them; without pinned seats, ``seats`` sets them and
        leaving it out keeps the trial's), its billing cycle, and its amount and term
        (kept on the subscription's ``contract``). A trial (or pending checkout) is
        converted; an owner whose trial ended while the contract was out for signature
        gets a new subscription from it. A scheduled cancellation is cleared unless
        ``keep_cancellation``; usage over a new limit is refused unless ``if_over_quota``
        allows it. A contract converts once."""
        owner, who = as_owner(owner), as_actor(actor)
        check_bool(keep_cancellation, "keep_cancellation")
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = tx.uow.contracts.get(_contract_id(contract_id))
            self._check_owner(contract, owner)
            tx.authorize(who, "contract.convert", owner, contract)
            if contract.status is not ContractStatus.COMPLETED:
                raise ContractNotCompleted(contract_id, contract.status.value)
            verification = verify_evidence(self._evidence(tx.uow, contract, None))
            if not verification.ok:
                raise EvidenceBroken(contract_id, verification.problems)
            history = tx.uow.subscriptions.history(owner)
            for earlier in history:
                if earlier.contract is not None and earlier.contract.contract_id == contract_id:
                    raise ContractAlreadyConverted(contract_id, earlier.id)
            terms = contract.terms
            if seats is not None and terms.seats is not None and seats != terms.seats:
                raise ContractTermsMismatch(contract_id, "seats", terms.seats, seats)
            chosen = terms.seats if terms.seats is not None else seats
            note = (
                notes
                if notes is not None
                else f"converted from contract {contract_id}: {contract.title}"
            )
            current = history[-1] if history else None
            converted: Subscription
            if current is None or current.is_terminal:
                converted = self._from_contract(tx, who, owner, contract, current, chosen, note)
            else:
                asked = lifecycle.Conversion(
                    terms.plan_key,
                    terms.plan_version,
                    {"notes": note} if chosen is None else {"notes": note, "seats": chosen},
                    terms.cycle,
                    keep_cancellation,
                    ContractLink.of(contract),
                )
                converted = lifecycle.convert(
                    tx,
                    self._rules,
                    who,
                    lifecycle.load(tx, owner),
                    asked,
                    policy,
                    reason=f"contract {contract_id} completed",
                ).subscription
            tx.record(
                who,
                "contract.convert",
                _target(contract_id),
                owner=owner,
                after={
                    "subscription": converted.id,
                    "plan": converted.plan_key,
                    "plan_version": converted.plan_version,
                    "seats": converted.seats,
                },
            )
            return converted

    def _from_contract(
        self,
        tx: Transaction,
        who: Actor,
        owner: Owner,
        contract: Contract,
        previous: Subscription | None,
        seats: int | None,
        note: str,
    ) -> Subscription:
        """Conversion is contract-driven: a trial that ended while the contract was out
        for signature (or an owner with none) starts a subscription on its terms."""
        terms = contract.terms
        plan_key = terms.plan_key or (previous.plan_key if previous is not None else None)
        if plan_key is None:
            raise InvalidInput(
                "contract",
                f"contract {contract.id} names no plan and {owner} has no subscription to convert",
            )
        if seats is None and previous is not None:
            seats = previous.seats
        version = terms.plan_version
        if version is None and terms.plan_key is None and previous is not None:
            version = previous.plan_version
        metadata = {} if previous is None else dict(previous.metadata)
        return lifecycle.start(
            tx,
            self._rules,
            who,
            Event.SUBSCRIBE,
            owner,
            tx.uow.plans.get(plan_key, version),
            seats=seats,
            cycle=terms.cycle,
            reason=f"contract {contract.id} completed",
            notes=note,
            metadata={**metadata, "contract_id": contract.id},
            contract=ContractLink.of(contract),
        )

    # -- machinery ---------------------------------------------------------------------

    @retries_lost_races
    def _as_signer(
        self, token: str, now: datetime | None, act: Callable[[Transaction, Contract, Signer], R]
    ) -> R:
        if not isinstance(token, str) or not 20 <= len(token) <= 200 or not token.isascii():
            raise InvalidToken()
        token_hash = hash_token(token)
        with self._rt.read(None) as uow:
            located = uow.contracts.locate(token_hash)
        if located is None:
            raise InvalidToken()
        tenant, contract_id, signer_id = located
        with self._rt.transaction(tenant, now) as tx:
            contract = tx.uow.contracts.get(_contract_id(contract_id))
            signer = contract.signer(signer_id)
            if (
                contract.is_closed
                or signer.token_hash is None
                or not token_matches(token, signer.token_hash)
                or signer.token_expires_at is None
                or tx.now >= signer.token_expires_at
                or tx.now >= contract.expires_at
            ):
                raise InvalidToken()
            return act(tx, contract, signer)

    def _pinned(self, tx: Transaction, owner: Owner, terms: Terms) -> Terms:
        assert terms.plan_key is not None
        plan = tx.uow.plans.get(terms.plan_key, terms.plan_version)
        current = tx.uow.subscriptions.current(owner)
        live = current if current is not None and not current.is_terminal else None
        check_may_assign(plan, owner, live)
        seats = terms.seats
        if seats is None and live is not None:
            seats = live.seats
        cycle = terms.cycle
        if cycle is None and plan.price is not None:
            cycle = plan.price.cycle
        return attrs.evolve(terms, plan_version=plan.version, seats=seats, cycle=cycle)

    def _check_owner(self, contract: Contract, owner: Owner) -> None:
        if contract.owner != owner:
            raise ContractNotFound(contract.id)

    def _link_expiry(self, contract: Contract, now: datetime, valid_for: timedelta) -> datetime:
        if not isinstance(valid_for, timedelta) or valid_for <= timedelta(0):
            raise InvalidInput("link_valid_for", "must be a positive timedelta", valid_for)
        return min(now + valid_for, contract.expires_at)

    def _personal(self, tx: Transaction, value: str) -> str:
        data = PersonalData.of(value, secrets.token_bytes(32))
        tx.uow.contracts.put_personal_data(data)
        return data.commitment

    def _event(
        self,
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
        chain = tx.uow.contracts.events(contract.id)
        event = next_event(
            chain[-1] if chain else None,
            contract.id,
            contract.content_hash,
            type,
            tx.now,
            actor,
            signer_id=signer_id,
            ip=None if ip is None else self._personal(tx, ip),
            user_agent=None if user_agent is None else self._personal(tx, user_agent),
            data=data,
        )
        tx.uow.contracts.append_event(event)
        return event

    def _signer_event(
        self,
        tx: Transaction,
        contract: Contract,
        signer: Signer,
        type: EventType,
        ip: str | None,
        user_agent: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> ContractEvent:
        for field, value in (("ip", ip), ("user_agent", user_agent)):
            check_optional_id(value, field, max_length=1000, padded=True)
        event = self._event(
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
            _target(contract.id),
            owner=contract.owner,
        )
        return event

    def _evidence(
        self, uow: Any, contract: Contract, checkpoint: Checkpoint | None
    ) -> dict[str, Any]:
        events = list(uow.contracts.events(contract.id))
        wanted: set[str] = {s.name for s in contract.signers} | {s.email for s in contract.signers}
        for event in events:
            wanted.update(c for c in (event.ip, event.user_agent) if c)
            wanted.update(
                v for k, v in event.data.items() if k.endswith("_commitment") and isinstance(v, str)
            )
        return evidence_document(
            contract, events, uow.contracts.personal_data(sorted(wanted)), checkpoint
        )


def _without_tokens(contract: Contract) -> tuple[Signer, ...]:
    return tuple(attrs.evolve(s, token_hash=None, token_expires_at=None) for s in contract.signers)
