"""Staff's side of a contract (seed 000): issue it with its terms pinned, send the
signing links (and a new one for a signer), void it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.assignment import check_may_assign
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import check_bool, check_optional_id, check_reason
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
from entitlements.domain.contracts.events import EventType
from entitlements.domain.contracts.tokens import hash_token, new_token
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.usage import check_idempotency_key
from entitlements.errors import IllegalTransition, InvalidInput
from entitlements.service.contracts.records import (
    append_event,
    authorized,
    check_context,
    target,
    without_tokens,
)
from entitlements.service.requests import claim_key, settle_key
from entitlements.service.runtime import Runtime, Transaction

__all__ = ["StaffContracts"]


class StaffContracts:
    """What staff do with a contract before it is signed."""

    _rt: Runtime

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
        specs = _signer_specs(signers)
        check_bool(sequential, "sequential")
        check_context(ip, user_agent)
        _check_valid_for(valid_for)
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
                terms = pinned(tx, owner, terms)
            people, signer_values = _signers(specs)
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
            append_event(
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
                target(stored.id),
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
        check_context(ip, user_agent)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = authorized(tx, who, owner, contract_id, "send")
            contract.check("send")
            tokens: dict[str, str] = {}
            signers = []
            for signer in contract.signers:
                tokens[signer.id], sent = _new_link(contract, signer, tx.now, link_valid_for)
                signers.append(attrs.evolve(sent, status=SignerStatus.SENT))
            stored = tx.uow.contracts.update(
                attrs.evolve(contract, signers=tuple(signers), status=ContractStatus.SENT)
            )
            append_event(
                tx,
                stored,
                EventType.SENT,
                str(who),
                ip=ip,
                user_agent=user_agent,
                data={"signers": sorted(tokens)},
            )
            tx.record(who, "contract.send", target(contract_id), owner=owner)
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
        check_context(ip, user_agent)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = authorized(tx, who, owner, contract_id, "resend")
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
            token, changed = _new_link(contract, signer, tx.now, link_valid_for)
            stored = tx.uow.contracts.update(
                attrs.evolve(
                    contract,
                    signers=tuple(changed if s.id == signer_id else s for s in contract.signers),
                )
            )
            append_event(
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
                target(contract_id),
                owner=owner,
                reason=f"new link for {signer_id}",
            )
            return token

    def awaiting_signature(
        self,
        tenant: str | None = None,
        *,
        actor: Actor | str | None = None,
        limit: int = 500,
    ) -> list[Contract]:
        """Contracts in ``tenant`` sent and not yet signed by everyone, whose signing
        window is still open now, nearest deadline first: a back office's "waiting for a
        signature" queue. With ``actor``, contracts of owners the authorizer does not let
        the actor read (``contract.read``) are left out."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be a whole number from 1 to 1000", limit)
        tenant = check_optional_id(tenant, "tenant")
        with self._rt.read(tenant) as uow:
            found = list(uow.contracts.awaiting(self._rt.read_now(tenant), limit))
            if actor is None:
                return found
            who = as_actor(actor)
            return [c for c in found if self._rt.permits(uow, who, "contract.read", c.owner)]

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
        check_context(ip, user_agent)
        with self._rt.transaction(owner.tenant, now) as tx:
            contract = authorized(tx, who, owner, contract_id, "void")
            status = contract.check("void")
            stored = tx.uow.contracts.update(
                attrs.evolve(contract, status=status, signers=without_tokens(contract))
            )
            append_event(
                tx,
                stored,
                EventType.VOIDED,
                str(who),
                ip=ip,
                user_agent=user_agent,
                data={"reason": reason},
            )
            tx.record(who, "contract.void", target(contract_id), owner=owner, reason=reason)
            return stored


def pinned(tx: Transaction, owner: Owner, terms: Terms) -> Terms:
    """The terms a conversion will apply, fixed now: the plan version, the seats and the
    billing cycle (`Contracts.issue`)."""
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


def link_expiry(contract: Contract, now: datetime, valid_for: timedelta) -> datetime:
    """A signing link lasts ``valid_for``, never past the contract's own window."""
    if not isinstance(valid_for, timedelta) or valid_for <= timedelta(0):
        raise InvalidInput("link_valid_for", "must be a positive timedelta", valid_for)
    return min(now + valid_for, contract.expires_at)


def _signer_specs(signers: object) -> list[SignerSpec]:
    """The signers asked for: one or more `SignerSpec`, at most `MAX_SIGNERS`."""
    if isinstance(signers, str | bytes) or not isinstance(signers, Sequence):
        raise InvalidInput("signers", "a contract needs a list of signers (SignerSpec)", signers)
    specs = list(signers)
    if not specs or not all(isinstance(s, SignerSpec) for s in specs):
        raise InvalidInput("signers", "a contract needs one or more signers (SignerSpec)", signers)
    if len(specs) > MAX_SIGNERS:
        raise InvalidInput("signers", f"at most {MAX_SIGNERS} signers", len(specs))
    return specs


def _check_valid_for(valid_for: object) -> None:
    if not isinstance(valid_for, timedelta) or not (
        timedelta(hours=1) <= valid_for <= timedelta(days=365)
    ):
        raise InvalidInput("valid_for", "must be between one hour and a year", valid_for)


def _signers(specs: list[SignerSpec]) -> tuple[list[PersonalData], list[Signer]]:
    """The signers as the contract holds them (commitments to their names and e-mails),
    and the personal data kept apart, where erasure reaches it."""
    people: list[PersonalData] = []
    signers: list[Signer] = []
    for index, spec in enumerate(specs):
        name = PersonalData.of(spec.name, secrets.token_bytes(32))
        email = PersonalData.of(spec.email, secrets.token_bytes(32))
        people += [name, email]
        signers.append(
            Signer(f"s{index + 1}", name.commitment, email.commitment, spec.role, spec.order)
        )
    return people, signers


def _new_link(
    contract: Contract, signer: Signer, now: datetime, valid_for: timedelta
) -> tuple[str, Signer]:
    """A fresh signing token (returned once, clear) and the signer holding its hash."""
    token = new_token()
    expires = link_expiry(contract, now, valid_for)
    return token, attrs.evolve(signer, token_hash=hash_token(token), token_expires_at=expires)
