"""A signer's side of a contract (seed 000), through the signing link — no account: open
it (viewed), consent to sign electronically, sign (typed or drawn) or decline.

A link works while the contract is open and neither the link nor the contract's signing
window has run out; every step is chained and audited as done by the signer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.checks import check_id, check_reason, check_text
from entitlements.domain.contracts.contract import (
    Contract,
    ContractStatus,
    Signer,
    SignerStatus,
    Terms,
)
from entitlements.domain.contracts.events import ContractEvent, EventType
from entitlements.domain.contracts.signature import drawing_type
from entitlements.domain.contracts.tokens import hash_token, token_matches
from entitlements.domain.owner import Owner
from entitlements.errors import IllegalTransition, InvalidInput, InvalidToken
from entitlements.service.contracts.records import (
    SIGNER,
    append_event,
    contract_id_of,
    personal,
    signer_event,
    target,
    without_tokens,
)
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction

__all__ = ["SignerContracts", "SigningView"]

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


class SignerContracts:
    """What a signer does through a signing link."""

    _rt: Runtime

    def open(
        self,
        token: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> SigningView:
        """The signer opened the link (viewed): recorded on every call, so a page calls
        it once per visit and `view` for the page's other loads."""

        def act(tx: Transaction, contract: Contract, signer: Signer) -> SigningView:
            after, changed = contract.after_signer(signer, "open")
            stored = tx.uow.contracts.update(after)
            signer_event(tx, stored, changed, EventType.VIEWED, ip, user_agent)
            return _signing_view(tx, stored, changed)

        return self._as_signer(token, now, act)

    def view(self, token: str, *, now: datetime | None = None) -> SigningView:
        """What the signer's page shows for ``token``, recording nothing; `InvalidToken`
        when the link opens nothing now (like `open`)."""
        return self._as_signer(token, now, _signing_view)

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
            return signer_event(
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
                data["typed_name_commitment"] = personal(tx, typed_name)
            else:
                assert drawing is not None
                assert content_type is not None
                digest = hashlib.sha256(drawing).hexdigest()
                tx.uow.contracts.put_attachment(stored.id, digest, content_type, drawing)
                data.update(method="drawn", image_sha256=digest, image_type=content_type)
            signed = signer_event(tx, stored, changed, EventType.SIGNED, ip, user_agent, data)
            if stored.status is ContractStatus.COMPLETED:
                # completed by this signature: its signer, IP and user agent
                append_event(
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
                    target(stored.id),
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
            stored = tx.uow.contracts.update(attrs.evolve(after, signers=without_tokens(after)))
            data = {} if not reason else {"reason_commitment": personal(tx, reason)}
            signer_event(tx, stored, changed, EventType.DECLINED, ip, user_agent, data)
            tx.record(
                Actor(f"{SIGNER}-{changed.id}", "member"),
                "contract.decline",
                target(stored.id),
                owner=stored.owner,
            )
            return stored

        return self._as_signer(token, now, act)

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
            contract = tx.uow.contracts.get(contract_id_of(contract_id))
            signer = contract.signer(signer_id)
            if not _link_works(contract, signer, token, tx.now):
                raise InvalidToken()
            return act(tx, contract, signer)


def _link_works(contract: Contract, signer: Signer, token: str, now: datetime) -> bool:
    """A signing link works while the contract is open, the token is the signer's
    current one, and neither the link nor the contract's signing window has run out."""
    if contract.is_closed or signer.token_hash is None or signer.token_expires_at is None:
        return False
    in_time = now < signer.token_expires_at and now < contract.expires_at
    return in_time and token_matches(token, signer.token_hash)


def _signing_view(tx: Transaction, contract: Contract, signer: Signer) -> SigningView:
    person = tx.uow.contracts.personal_data([signer.name]).get(signer.name)
    return SigningView(
        contract.id,
        contract.title,
        contract.body,
        contract.content_hash,
        contract.terms,
        signer.id,
        None if person is None else person.value,
        signer.status,
        contract.status,
        contract.may_act(signer),
        owner=contract.owner,
    )
