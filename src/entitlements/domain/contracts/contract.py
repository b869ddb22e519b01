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

from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import (
    check_count,
    check_currency,
    check_id,
    check_key,
    check_optional_label,
    check_text,
    parse_enum,
)
from entitlements.domain.contracts.canonical import (
    canonical_body,
    canonical_json,
    commit,
    content_hash,
    sha256_hex,
)
from entitlements.domain.instant import (
    as_utc,
    aware,
    optional_instant,
)
from entitlements.domain.owner import Owner
from entitlements.errors import IllegalTransition, InvalidInput

__all__ = [
    "AWAITING_SIGNATURE",
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


class ContractStatus(enum.StrEnum):
    """Where a contract is: issued (``created``), ``sent``, ``viewed``, ``signed`` by some,
    ``completed`` by all, or closed unsigned (``declined``, ``voided``, ``expired``)."""

    CREATED = "created"
    SENT = "sent"
    VIEWED = "viewed"
    SIGNED = "signed"
    COMPLETED = "completed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


class SignerStatus(enum.StrEnum):
    """Where one signer is; a signer signs only after consenting to sign electronically."""

    CREATED = "created"
    SENT = "sent"
    VIEWED = "viewed"
    CONSENTED = "consented"
    SIGNED = "signed"
    DECLINED = "declined"


AWAITING_SIGNATURE: frozenset[ContractStatus] = frozenset(
    {ContractStatus.SENT, ContractStatus.VIEWED, ContractStatus.SIGNED}
)
"""Out for signature: sent, and not signed by everyone yet."""
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
    """The salted hash hashed records hold instead of the value; it survives erasure."""
    value: str | None = None
    """The clear value (``None`` once erased)."""
    salt: str | None = None
    """The salt, hex (``None`` once erased, which makes the commitment unguessable)."""

    @classmethod
    def of(cls, value: str, salt: bytes) -> PersonalData:
        """The stored form of ``value`` under a fresh ``salt``."""
        return cls(commit(value, salt), value, salt.hex())

    @property
    def erased(self) -> bool:
        """Whether the clear value is gone."""
        return self.value is None

    def erase(self) -> PersonalData:
        """The same record without the clear value or its salt; hashed records stay valid."""
        return PersonalData(self.commitment)


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput("signer.name", "must be a name of 1 to 200 characters", value)
    return check_id(value, "signer.name", max_length=200, padded=True).strip()


def _email(value: object) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value) or len(value) > 254:
        raise InvalidInput("signer.email", "must be an email address", value)
    return check_id(value, "signer.email", max_length=254, padded=True).strip()


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
    """The signer's name as it will appear on the certificate."""
    email: str = attrs.field(converter=_email)
    """Where the signing link is sent."""
    role: str = attrs.field(default="", converter=_role)
    """What the signer signs as (``customer``, ``legal``), shown to the other parties."""
    order: int = attrs.field(default=1, converter=_order)
    """With sequential signing, signers with a lower order sign first; equal orders sign in
    any order."""


def _signer_status(value: object) -> SignerStatus:
    return parse_enum(SignerStatus, value, "signer.status")


@attrs.frozen
class Signer:
    """One signer of an issued contract; name and email are commitments, the clear values
    live with the personal data."""

    id: str
    """The id the signing link and the events refer to."""
    name: str
    """Commitment to the signer's name."""
    email: str
    """Commitment to the signer's email."""
    role: str
    """What the signer signs as."""
    order: int
    """Signing order with sequential signing."""
    status: SignerStatus = attrs.field(default=SignerStatus.CREATED, converter=_signer_status)
    """Where the signer is."""
    token_hash: str | None = None
    """The hash of the signing link's token; the token itself is never stored."""
    token_expires_at: datetime | None = optional_instant()
    """When the signing link stops working (resending makes a new one)."""


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
    return check_currency(value, "currency")


def _term(value: object) -> str | None:
    return check_optional_label(value, "term", example="text such as '12 months'", max_length=200)


def _plan(value: object) -> str | None:
    return None if value is None else check_key(value, "plan_key")


def _plan_version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput("plan_version", "must be a plan version (1 or more)", value)
    return value


def _seats(value: object) -> int | None:
    return None if value is None else check_count(value, "seats", maximum=10**7)


def _cycle(value: object) -> BillingCycle | None:
    if value is not None and not isinstance(value, BillingCycle):
        raise InvalidInput("cycle", "must be a BillingCycle", value)
    return value


@attrs.frozen
class Terms:
    """What is signed besides the body. With a plan, the plan's version, the seats and the
    billing cycle are pinned too: conversion applies exactly these."""

    plan_key: str | None = attrs.field(default=None, converter=_plan)
    """The plan the customer signed for."""
    term: str | None = attrs.field(default=None, converter=_term)
    """The commitment length in words (``12 months``)."""
    amount: Decimal | None = attrs.field(default=None, converter=_amount)
    """The agreed price (with ``currency``)."""
    currency: str | None = attrs.field(default=None, converter=_currency)
    """The ISO 4217 code of ``amount``."""
    plan_version: int | None = attrs.field(default=None, converter=_plan_version)
    """The plan version signed for; conversion uses it, not the plan's latest."""
    seats: int | None = attrs.field(default=None, converter=_seats)
    """The seats signed for; conversion applies exactly these."""
    cycle: BillingCycle | None = attrs.field(default=None, converter=_cycle)
    """The billing cycle signed for."""

    def __attrs_post_init__(self) -> None:
        if (self.amount is None) != (self.currency is None):
            raise InvalidInput("currency", "an amount needs a currency, and a currency an amount")
        if self.plan_key is None and (
            self.plan_version is not None or self.seats is not None or self.cycle is not None
        ):
            raise InvalidInput(
                "plan_key", "a plan version, seats or billing cycle need the plan they are for"
            )


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 300:
        raise InvalidInput("title", "must be a title of 1 to 300 characters", value)
    return check_id(value, "title", max_length=300, padded=True)


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
    """A contract issued to an owner; the hashes fix the exact text and terms every
    signature applies to."""

    id: str
    """The contract id the staff commands and the signing links use."""
    owner: Owner
    """The owner it is for (whose trial it may convert)."""
    title: str = attrs.field(converter=_title)
    """Shown to signers and on the certificate."""
    body: str = attrs.field(converter=_body)
    """The text signed (canonicalised before hashing)."""
    terms: Terms
    """The commercial terms pinned with it."""
    signers: tuple[Signer, ...]
    """Everyone who must sign for it to complete."""
    sequential: bool
    """Whether signers sign in ``order``, each after the earlier ones."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was issued."""
    expires_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it expires unsigned."""
    status: ContractStatus = attrs.field(default=ContractStatus.CREATED, converter=_status)
    """Where it is, recomputed from its signers."""
    body_hash: str = ""
    """SHA-256 of the canonical body."""
    terms_hash: str = ""
    """SHA-256 of the canonical terms document."""
    content_hash: str = ""
    """What every signature and event commits to: the body and the terms together."""
    revision: int = 0
    """Counts writes, so a stale copy cannot overwrite a newer one; managed by the store."""

    @property
    def is_closed(self) -> bool:
        """Whether it can no longer change (completed, declined, voided, expired)."""
        return self.status in CLOSED

    def signer(self, signer_id: str) -> Signer:
        """The signer with ``signer_id`` (`InvalidInput` if there is none)."""
        for signer in self.signers:
            if signer.id == signer_id:
                return signer
        raise InvalidInput("signer", f"contract {self.id} has no signer {signer_id}", signer_id)

    def with_hashes(self) -> Contract:
        """The contract with its hashes computed from its body and terms."""
        body_hash = sha256_hex(self.body.encode("utf-8"))
        terms_hash = sha256_hex(canonical_json(terms_document(self)))
        return attrs.evolve(
            self,
            body_hash=body_hash,
            terms_hash=terms_hash,
            content_hash=content_hash(body_hash, terms_hash),
        )

    def check(self, event: str) -> ContractStatus:
        """The status after a staff or time ``event`` (``send``, ``void``...), refusing one
        the contract's status does not allow."""
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
        # pinned terms enter the document only when set, so contracts issued before they
        # existed keep their hashes
        **{
            k: v
            for k, v in (
                ("plan_version", terms.plan_version),
                ("seats", terms.seats),
                ("cycle", None if terms.cycle is None else _cycle_document(terms.cycle)),
            )
            if v is not None
        },
        "sequential": contract.sequential,
        "signers": [
            {"id": s.id, "name": s.name, "email": s.email, "role": s.role, "order": s.order}
            for s in contract.signers
        ],
    }


def _cycle_document(cycle: BillingCycle) -> dict[str, Any]:
    return {"unit": cycle.unit.value, "every": cycle.every}
