"""Contracts and their signers: values, statuses and the transition tables (as data).

Personal data (signers' names and emails, IPs, user agents, typed names) never appears
in a contract or an event in clear: they hold commitments (see `canonical.commit`), and
the clear value with its salt lives in a separate store that erasure empties without
touching a hashed record.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from entitlements.domain.checks import check_id, check_key, check_text, parse_enum
from entitlements.domain.contracts.canonical import (
    canonical_body,
    canonical_json,
    commit,
    content_hash,
    sha256_hex,
)
from entitlements.domain.instant import as_optional_utc, as_utc, aware, optional_aware
from entitlements.domain.owner import Owner
from entitlements.errors import IllegalTransition, InvalidInput

__all__ = [
    "CONTRACT_TRANSITIONS",
    "SIGNER_TRANSITIONS",
    "Contract",
    "ContractStatus",
    "PersonalData",
    "Signer",
    "SignerSpec",
    "SignerStatus",
    "Terms",
    "terms_document",
]

MAX_BODY = 1_000_000
MAX_SIGNERS = 50
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class ContractStatus(enum.StrEnum):
    CREATED = "created"
    SENT = "sent"
    VIEWED = "viewed"
    SIGNED = "signed"
    COMPLETED = "completed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


class SignerStatus(enum.StrEnum):
    CREATED = "created"
    SENT = "sent"
    VIEWED = "viewed"
    CONSENTED = "consented"
    SIGNED = "signed"
    DECLINED = "declined"


CLOSED: frozenset[ContractStatus] = frozenset(
    {
        ContractStatus.COMPLETED,
        ContractStatus.DECLINED,
        ContractStatus.VOIDED,
        ContractStatus.EXPIRED,
    }
)
_OPEN = frozenset(ContractStatus) - CLOSED

CONTRACT_TRANSITIONS: Mapping[str, tuple[frozenset[ContractStatus], ContractStatus | None]] = {
    "send": (frozenset({ContractStatus.CREATED}), ContractStatus.SENT),
    "resend": (_OPEN - {ContractStatus.CREATED}, None),
    "void": (_OPEN, ContractStatus.VOIDED),
    "expire": (_OPEN, ContractStatus.EXPIRED),
}
"""Staff and time events on a contract: allowed from, and the status after (``None``: unchanged)."""

_ACTIVE_SIGNER = frozenset({SignerStatus.SENT, SignerStatus.VIEWED, SignerStatus.CONSENTED})
SIGNER_TRANSITIONS: Mapping[str, tuple[frozenset[SignerStatus], SignerStatus | None]] = {
    "open": (_ACTIVE_SIGNER, None),
    "consent": (frozenset({SignerStatus.VIEWED}), SignerStatus.CONSENTED),
    "sign": (frozenset({SignerStatus.CONSENTED}), SignerStatus.SIGNED),
    "decline": (_ACTIVE_SIGNER, SignerStatus.DECLINED),
}
"""Signer events (through the signing link): allowed from, and the status after. Opening
moves a ``sent`` signer to ``viewed`` and leaves later statuses as they are."""


@attrs.frozen
class PersonalData:
    """A piece of personal data as stored: its commitment (which hashed records use), and
    the clear value with its salt — both ``None`` once erased."""

    commitment: str
    value: str | None = None
    salt: str | None = None

    @classmethod
    def of(cls, value: str, salt: bytes) -> PersonalData:
        return cls(commit(value, salt), value, salt.hex())

    @property
    def erased(self) -> bool:
        return self.value is None

    def erase(self) -> PersonalData:
        return PersonalData(self.commitment)


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput("signer.name", "must be a name of 1 to 200 characters", value)
    return check_id(value, "signer.name", max_length=200).strip()


def _email(value: object) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value) or len(value) > 254:
        raise InvalidInput("signer.email", "must be an email address", value)
    return check_id(value, "signer.email", max_length=254).strip()


def _order(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIGNERS:
        raise InvalidInput("signer.order", f"must be a whole number from 1 to {MAX_SIGNERS}", value)
    return value


def _role(value: object) -> str:
    if not isinstance(value, str) or len(value) > 100:
        raise InvalidInput("signer.role", "must be text of at most 100 characters", value)
    return check_text(value, "signer.role", max_length=100)


@attrs.frozen
class SignerSpec:
    """A signer as staff enter it when issuing."""

    name: str = attrs.field(converter=_name)
    email: str = attrs.field(converter=_email)
    role: str = attrs.field(default="", converter=_role)
    order: int = attrs.field(default=1, converter=_order)


def _signer_status(value: object) -> SignerStatus:
    return parse_enum(SignerStatus, value, "signer.status")


@attrs.frozen
class Signer:
    id: str
    name: str
    """Commitment to the signer's name."""
    email: str
    """Commitment to the signer's email."""
    role: str
    order: int
    status: SignerStatus = attrs.field(default=SignerStatus.CREATED, converter=_signer_status)
    token_hash: str | None = None
    token_expires_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )


def _amount(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float | bool):
        raise InvalidInput("amount", "must be a Decimal or a decimal string, never a float", value)
    try:
        amount = Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise InvalidInput("amount", f"is not a decimal amount: {value!r}", value) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("amount", "must be a finite amount of zero or more", value)
    if amount >= Decimal(10) ** 12:
        raise InvalidInput("amount", "is too large", value)
    return amount


def _currency(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise InvalidInput("currency", "must be an ISO 4217 code such as 'EUR'", value)
    return value


def _term(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput("term", "must be text such as '12 months'", value)
    return check_text(value, "term", max_length=200)


def _plan(value: object) -> str | None:
    return None if value is None else check_key(value, "plan_key")


@attrs.frozen
class Terms:
    plan_key: str | None = attrs.field(default=None, converter=_plan)
    term: str | None = attrs.field(default=None, converter=_term)
    amount: Decimal | None = attrs.field(default=None, converter=_amount)
    currency: str | None = attrs.field(default=None, converter=_currency)

    def __attrs_post_init__(self) -> None:
        if (self.amount is None) != (self.currency is None):
            raise InvalidInput("currency", "an amount needs a currency, and a currency an amount")


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 300:
        raise InvalidInput("title", "must be a title of 1 to 300 characters", value)
    return check_id(value, "title", max_length=300)


def _body(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("body", "the agreement body must not be empty", value)
    if len(value) > MAX_BODY:
        raise InvalidInput("body", f"must be at most {MAX_BODY:,} characters", value)
    return canonical_body(check_text(value, "body", max_length=MAX_BODY))


def _status(value: object) -> ContractStatus:
    return parse_enum(ContractStatus, value, "contract.status")


@attrs.frozen
class Contract:
    id: str
    owner: Owner
    title: str = attrs.field(converter=_title)
    body: str = attrs.field(converter=_body)
    terms: Terms
    signers: tuple[Signer, ...]
    sequential: bool
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    expires_at: datetime = attrs.field(converter=as_utc, validator=aware)
    status: ContractStatus = attrs.field(default=ContractStatus.CREATED, converter=_status)
    body_hash: str = ""
    terms_hash: str = ""
    content_hash: str = ""
    revision: int = 0

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED

    def signer(self, signer_id: str) -> Signer:
        for signer in self.signers:
            if signer.id == signer_id:
                return signer
        raise InvalidInput("signer", f"contract {self.id} has no signer {signer_id}", signer_id)

    def with_hashes(self) -> Contract:
        body_hash = sha256_hex(self.body.encode("utf-8"))
        terms_hash = sha256_hex(canonical_json(terms_document(self)))
        return attrs.evolve(
            self,
            body_hash=body_hash,
            terms_hash=terms_hash,
            content_hash=content_hash(body_hash, terms_hash),
        )

    def check(self, event: str) -> ContractStatus:
        sources, target = CONTRACT_TRANSITIONS[event]
        if self.status not in sources:
            raise IllegalTransition(
                "contract", self.id, self.status.value, event, tuple(sorted(sources))
            )
        return target or self.status

    def may_act(self, signer: Signer) -> bool:
        """With sequential signing, a signer acts only after everyone earlier has signed."""
        if not self.sequential:
            return True
        return all(s.status is SignerStatus.SIGNED for s in self.signers if s.order < signer.order)

    def after_signer(self, signer: Signer, event: str) -> tuple[Contract, Signer]:
        """Apply a signer event; returns the contract (status recomputed) and the signer."""
        sources, target = SIGNER_TRANSITIONS[event]
        if self.is_closed:
            raise IllegalTransition(
                "contract", self.id, self.status.value, event, tuple(sorted(_OPEN))
            )
        if signer.status not in sources:
            raise IllegalTransition(
                "signer", signer.id, signer.status.value, event, tuple(sorted(sources))
            )
        if event == "open":
            target = SignerStatus.VIEWED if signer.status is SignerStatus.SENT else signer.status
        changed = attrs.evolve(signer, status=target or signer.status)
        if changed.status in (SignerStatus.SIGNED, SignerStatus.DECLINED):
            changed = attrs.evolve(changed, token_hash=None, token_expires_at=None)
        signers = tuple(changed if s.id == signer.id else s for s in self.signers)
        return attrs.evolve(self, signers=signers, status=_aggregate(self.status, signers)), changed


def _aggregate(current: ContractStatus, signers: tuple[Signer, ...]) -> ContractStatus:
    statuses = {s.status for s in signers}
    if SignerStatus.DECLINED in statuses:
        return ContractStatus.DECLINED
    if statuses == {SignerStatus.SIGNED}:
        return ContractStatus.COMPLETED
    if SignerStatus.SIGNED in statuses:
        return ContractStatus.SIGNED
    if statuses & {SignerStatus.VIEWED, SignerStatus.CONSENTED}:
        return ContractStatus.VIEWED
    return current


def terms_document(contract: Contract) -> dict[str, Any]:
    """The structured terms as hashed (RFC 8785): no clear personal data."""
    terms = contract.terms
    return {
        "contract_id": contract.id,
        "owner": str(contract.owner),
        "title": contract.title,
        "plan": terms.plan_key,
        "term": terms.term,
        "amount": None if terms.amount is None else str(terms.amount),
        "currency": terms.currency,
        "sequential": contract.sequential,
        "signers": [
            {"id": s.id, "name": s.name, "email": s.email, "role": s.role, "order": s.order}
            for s in contract.signers
        ],
    }
